// A bounded memo for pure functions of a string (an image reference): the hot path sees the same
// few strings over and over. A plain Map, emptied when it reaches its bound, rather than an LRU:
// a hit is one Map lookup with no recency bookkeeping (four images × two steps per review), and a
// cluster running more distinct images than the bound only recomputes what it asks for again.
import { REFERENCE_MAX_LENGTH } from '../reference/parse.js'

/** The bound the mutation steps use: distinct image strings whose analysis is kept (a cluster runs far fewer). */
export const IMAGE_MEMO_SIZE = 10_000

/**
 * `arg` is handed to `fn` on a miss only: it must be determined by the key (an already parsed
 * form of it), so the memo stays a function of the key.
 */
export function memoize<V extends object, A = undefined> (max: number, fn: (key: string, arg?: A) => V): (key: string, arg?: A) => V {
  const memo = new Map<string, V>()
  return (key, arg) => {
    // A key longer than any image reference (a hostile pod's megabyte image) is not kept: the
    // bound counts entries, and ten thousand such keys would be gigabytes.
    if (key.length > REFERENCE_MAX_LENGTH) return fn(key, arg)
    let v = memo.get(key)
    if (v === undefined) {
      if (memo.size >= max) memo.clear()
      memo.set(key, v = fn(key, arg))
    }
    return v
  }
}

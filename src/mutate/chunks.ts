// Work over a huge pod in slices, giving the event loop back between them: a review's CPU is
// synchronous, and the review deadline cannot preempt it, so a pod of thousands of containers
// would otherwise hold up every other review (and /healthz) for its whole run (BENCHMARKS.md,
// "Huge pods"). A pod that fits one slice runs exactly as before: synchronously, no Promise.

/** Items handled between two turns of the event loop. */
export const CHUNK_SIZE = 1000

/** Resolves on the event loop's check phase: I/O callbacks (other reviews) run first. */
export function nextTurn (): Promise<void> {
  return new Promise(resolve => setImmediate(resolve))
}

/**
 * Calls `fn` for every index below `count`: synchronously when `count` fits one chunk, otherwise
 * in chunks with a turn of the event loop between them. `stop` is asked between chunks (the
 * review's deadline): true ends the work early with its reason thrown.
 */
export function forEachChunked (count: number, fn: (i: number) => void, stop?: () => Error | undefined, size = CHUNK_SIZE): void | Promise<void> {
  if (count <= size) {
    for (let i = 0; i < count; i++) fn(i)
    return
  }
  return (async () => {
    for (let start = 0; start < count; start += size) {
      if (start > 0) {
        await nextTurn()
        const reason = stop?.()
        if (reason !== undefined) throw reason
      }
      const end = Math.min(count, start + size)
      for (let i = start; i < end; i++) fn(i)
    }
  })()
}

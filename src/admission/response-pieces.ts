// The parts of a response that grow with the pod — the base64 JSON patch and the pin-images audit
// annotation — built in slices for a huge pod, with turns of the event loop between them, so
// serializing the answer to a pod of thousands of containers does not hold up other reviews
// (BENCHMARKS.md, "Huge pods"). Small ones are built in one go, exactly as one JSON.stringify
// (one Promise, like every step of a review: BENCHMARKS.md, "Contracts and speed devices").
import type { Operation } from 'fast-json-patch'
import { CHUNK_SIZE, forEachChunked } from '../mutate/chunks.js'

/** Operations (or map entries) serialized together: one piece is well under a slice's time. */
const PIECE = 64

/**
 * `Buffer.from(JSON.stringify(patch)).toString('base64')`, in slices of operations for a long
 * patch. Each slice's JSON is base64-encoded at once; the up to two bytes that do not fill a
 * group of three are carried to the next slice, so the pieces join into the one encoding.
 */
export async function encodePatch (patch: readonly Operation[], size = PIECE): Promise<string> {
  if (patch.length <= CHUNK_SIZE) return Buffer.from(JSON.stringify(patch)).toString('base64')
  const pieces: string[] = []
  let carry = Buffer.alloc(0)
  const slices = Math.ceil(patch.length / size)
  await forEachChunked(slices, (s) => {
    const json = JSON.stringify(patch.slice(s * size, (s + 1) * size))
    // "[a,b]" → "[a,b" for the first slice, ",c,d" for the next, "…]" closes the last.
    const text = (s === 0 ? '[' : ',') + json.slice(1, -1) + (s === slices - 1 ? ']' : '')
    const bytes = carry.length === 0 ? Buffer.from(text) : Buffer.concat([carry, Buffer.from(text)])
    const whole = s === slices - 1 ? bytes.length : bytes.length - (bytes.length % 3)
    pieces.push(bytes.toString('base64', 0, whole))
    carry = bytes.subarray(whole)
  }, undefined, 0)
  return pieces.join('')
}

/**
 * `JSON.stringify(map)` of a map without a prototype, in slices of keys for a big one. The keys
 * are distinct (a map), so the slices' members join into the one object.
 */
export async function stringifyMap (map: Readonly<Record<string, string>>, size = PIECE): Promise<string> {
  const keys = Object.keys(map)
  if (keys.length <= CHUNK_SIZE) return JSON.stringify(map)
  const pieces: string[] = []
  await forEachChunked(Math.ceil(keys.length / size), (s) => {
    const part = Object.create(null) as Record<string, string>
    for (const k of keys.slice(s * size, (s + 1) * size)) part[k] = map[k]!
    pieces.push(JSON.stringify(part).slice(1, -1))
  }, undefined, 0)
  return `{${pieces.join(',')}}`
}

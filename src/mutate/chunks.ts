// Work over a huge pod in slices, giving the event loop back between them: a review's CPU is
// synchronous, and the review deadline cannot preempt it, so a pod of thousands of containers
// would otherwise hold up every other review (and /healthz) for its whole run (BENCHMARKS.md,
// "Huge pods"). A pod that fits one chunk runs in one go, with no turn of the event loop.
//
// Slices are cut by time, not by item count: an item's cost ranges from a map lookup to a
// reference parse with an error message, and the machine may be loaded, so a fixed count would
// either yield needlessly or hold the loop for much longer than intended.

/** Up to this many items are handled in one go (no slicing, no turn of the event loop). */
export const CHUNK_SIZE = 1000
/** A slice of a longer run gives the event loop back after about this long. */
export const SLICE_MS = 2
/** Items between two looks at the clock. */
const CLOCK_EVERY = 4

/** Resolves on the event loop's check phase: I/O callbacks (other reviews) run first. */
export function nextTurn (): Promise<void> {
  return new Promise(resolve => setImmediate(resolve))
}

/**
 * Calls `fn` for every index below `count`, in order: in one go when `count` is at most `size`,
 * otherwise in slices of about SLICE_MS with a turn of the event loop between them (the first
 * slice runs before this returns). `stop` is asked between slices (the review's deadline): an
 * Error ends the work early, as the rejection.
 */
export async function forEachChunked (count: number, fn: (i: number) => void, stop?: () => Error | undefined, size = CHUNK_SIZE): Promise<void> {
  if (count <= size) {
    for (let i = 0; i < count; i++) fn(i)
    return
  }
  await (async () => {
    let i = 0
    for (;;) {
      const started = performance.now()
      do {
        const end = Math.min(count, i + CLOCK_EVERY)
        for (; i < end; i++) fn(i)
      } while (i < count && performance.now() - started < SLICE_MS)
      if (i >= count) return
      await nextTurn()
      const reason = stop?.()
      if (reason !== undefined) throw reason
    }
  })()
}

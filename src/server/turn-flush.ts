// Coalesces the answers of one event-loop turn so they are written back to back.
//
// Why: on loopback and in VMs, most of a response's cost is not the write but waking the peer
// that sleeps on it (a cross-CPU interrupt; on Firecracker, a VM exit). Node reads every socket
// that is ready in one poll phase and, with an answer from the caches, would write each response
// as soon as it is computed, one after another, so the API server's side goes back to sleep between
// them and every response pays the wake-up. Holding the answers to the turn's check phase
// (setImmediate) writes them together: one wake-up serves the batch (BENCHMARKS.md, "Contracts
// and speed devices").
// The cost is bounded: a response waits at most for the other reviews read in the same turn, and
// a lone review waits for nothing but the rest of its own turn.

/** Returns a function whose Promise resolves at the end of the current event-loop turn, one Promise per turn. */
export function turnFlush (): () => Promise<void> {
  let pending: Promise<void> | undefined
  const release = (resolve: () => void): void => {
    pending = undefined
    resolve()
  }
  return () => (pending ??= new Promise<void>(resolve => { setImmediate(release, resolve) }))
}

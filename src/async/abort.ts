// Waiting on a promise with an AbortSignal, the one way every layer does it: the waiter stops at
// once, the work itself carries on (it may be shared with other waiters, or fill a cache).
//
// Every wait on one signal shares one abort listener: a review waits on one signal for all of its
// images, and an EventTarget warns past 10 listeners. The per-signal state lives in a WeakMap
// keyed by the signal (it is the signal's own side table, gone with the signal), and the listener
// is removed when the last wait on that signal settles.

/**
 * What an aborted operation rejects with: the signal's reason when it is an Error (as fetch does:
 * an "AbortError" DOMException for controller.abort(), "TimeoutError" for AbortSignal.timeout(),
 * a review's DeadlineError), otherwise a new "AbortError" DOMException.
 */
export function abortReason (signal: AbortSignal): Error {
  const r: unknown = signal.reason
  return r instanceof Error ? r : new DOMException('The operation was aborted', 'AbortError')
}

interface Waiters { readonly rejects: Set<(err: Error) => void>; readonly onAbort: () => void }

const waitersBySignal = new WeakMap<AbortSignal, Waiters>()

/**
 * `p`'s outcome, or a rejection with abortReason(signal) as soon as `signal` aborts (p keeps
 * running; its later rejection is not reported as unhandled). A non-Error rejection of `p` is
 * wrapped in an Error.
 */
export function abortable<T> (p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p
  if (signal.aborted) {
    p.catch(() => undefined)
    return Promise.reject(abortReason(signal))
  }
  let waiters = waitersBySignal.get(signal)
  if (waiters === undefined) {
    const rejects = new Set<(err: Error) => void>()
    const onAbort = (): void => {
      waitersBySignal.delete(signal)
      const reason = abortReason(signal)
      for (const reject of rejects) reject(reason)
    }
    waitersBySignal.set(signal, waiters = { rejects, onAbort })
    signal.addEventListener('abort', onAbort, { once: true })
  }
  const { rejects, onAbort } = waiters
  return new Promise<T>((resolve, reject) => {
    rejects.add(reject)
    const settle = (): void => {
      rejects.delete(reject)
      if (rejects.size === 0 && waitersBySignal.get(signal)?.rejects === rejects) {
        waitersBySignal.delete(signal)
        signal.removeEventListener('abort', onAbort)
      }
    }
    p.then((v) => { settle(); resolve(v) }, (e: unknown) => { settle(); reject(e instanceof Error ? e : new Error(String(e))) })
  })
}

// A review's deadline, made lazily: most reviews are answered from caches without any I/O, and
// need neither a timer nor an AbortController (BENCHMARKS.md, "Contracts and speed devices").
// The clock starts when the review does; the timer only when something first waits.
import type { Deadline } from '../mutate/mutator.js'

class DeadlineError extends Error {
  constructor (ms: number) {
    super(`no answer within ${ms} ms`)
    this.name = 'DeadlineError'
  }
}

export class ReviewDeadline implements Deadline {
  readonly #ms: number
  readonly #started = performance.now()
  #controller: AbortController | undefined
  #timer: NodeJS.Timeout | undefined

  constructor (ms: number) {
    this.#ms = ms
  }

  get ms (): number { return this.#ms }

  remainingMs (): number {
    return Math.max(0, this.#ms - (performance.now() - this.#started))
  }

  /** Aborted (with a DeadlineError) once the review's time is up. Starts the timer on first use. */
  get signal (): AbortSignal {
    if (this.#controller === undefined) {
      const controller = this.#controller = new AbortController()
      const left = Math.max(0, this.#ms - (performance.now() - this.#started))
      this.#timer = setTimeout(() => controller.abort(new DeadlineError(this.#ms)), left)
    }
    return this.#controller.signal
  }

  /**
   * `work`, or a DeadlineError rejection once the deadline passes. Lazy like the signal: a `work`
   * that settles within the event-loop turn it started in (a review answered from caches) makes
   * no timer; otherwise the timer is made at the end of that turn, or earlier if something asks
   * for the signal (BENCHMARKS.md, "Contracts and speed devices").
   */
  race<T> (work: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let signal: AbortSignal | undefined
      const onAbort = (): void => reject(signal!.reason as Error)
      const watch = (): void => {
        signal = this.signal
        if (signal.aborted) onAbort()
        else signal.addEventListener('abort', onAbort, { once: true })
      }
      const pending = this.#controller !== undefined ? (watch(), undefined) : setImmediate(watch)
      const settle = (): void => {
        if (pending !== undefined) clearImmediate(pending)
        signal?.removeEventListener('abort', onAbort)
      }
      work.then(
        (v) => { settle(); resolve(v) },
        (err: unknown) => { settle(); reject(err instanceof Error ? err : new Error(String(err))) }
      )
    })
  }

  /** The review is answered: stop the timer (the signal, if made, stays unaborted). */
  clear (): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
  }
}

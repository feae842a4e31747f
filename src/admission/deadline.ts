// A review's deadline, made lazily: most reviews are answered from caches without any I/O, and a
// timer plus an AbortController per review is a measurable part of that path (bench/pieces.ts).
// The clock starts when the review does; the timer only when something first waits.
import { abortable } from '../async/abort.js'
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

  /** `work`, or a DeadlineError rejection if the deadline passes first (work keeps running). */
  race<T> (work: Promise<T>): Promise<T> {
    return abortable(work, this.signal)
  }

  /** The review is answered: stop the timer (the signal, if made, stays unaborted). */
  clear (): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
  }
}

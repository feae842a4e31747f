// A clock that moves only when the test says so (src/cluster/events.ts Clock): rate bounds, series
// windows and debounce delays are tested without depending on the machine's speed.
import type { Clock } from '../../src/cluster/events.js'

export class ManualClock implements Clock {
  #now: number
  readonly #waiters = new Set<{ at: number, resolve: (v: boolean) => void }>()

  constructor (start = Date.UTC(2026, 0, 1)) {
    this.#now = start
  }

  now (): number { return this.#now }

  sleep (ms: number, signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false)
    if (ms <= 0) return Promise.resolve(true)
    return new Promise((resolve) => {
      const w = {
        at: this.#now + ms,
        resolve: (v: boolean) => { this.#waiters.delete(w); signal.removeEventListener('abort', onAbort); resolve(v) },
      }
      const onAbort = (): void => w.resolve(false)
      signal.addEventListener('abort', onAbort, { once: true })
      this.#waiters.add(w)
    })
  }

  /** Moves time forward; every sleep that is due resolves. */
  advance (ms: number): void {
    this.#now += ms
    for (const w of [...this.#waiters]) if (w.at <= this.#now) w.resolve(true)
  }

  /** Sleeps waiting now (tests wait for the code under test to reach a sleep). */
  get sleepers (): number { return this.#waiters.size }
}

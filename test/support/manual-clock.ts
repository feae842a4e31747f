// A clock tests move by hand, for the two clock contracts of src/: timers (src/credentials/types.ts
// Clock: setTimeout/clearTimeout) and sleeps (src/cluster/events.ts Clock: sleep(ms, signal)).
// Nothing fires until advance(), so rate bounds, refresh times, series windows and debounce delays
// are tested without depending on the machine's speed.
import type { Clock as TimerClock } from '../../src/credentials/types.js'
import type { Clock as SleepClock } from '../../src/cluster/events.js'

export class ManualClock implements TimerClock, SleepClock {
  private t: number
  private seq = 0
  private readonly timers = new Map<number, { at: number; fn: () => void }>()
  readonly #waiters = new Set<{ at: number, resolve: (v: boolean) => void }>()

  constructor (start = Date.UTC(2026, 0, 1)) { this.t = start }

  now = (): number => this.t
  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = ++this.seq
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn })
    return id
  }

  clearTimeout = (h: unknown): void => { this.timers.delete(h as number) }

  sleep (ms: number, signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false)
    if (ms <= 0) return Promise.resolve(true)
    return new Promise((resolve) => {
      const w = {
        at: this.t + ms,
        resolve: (v: boolean) => { this.#waiters.delete(w); signal.removeEventListener('abort', onAbort); resolve(v) },
      }
      const onAbort = (): void => w.resolve(false)
      signal.addEventListener('abort', onAbort, { once: true })
      this.#waiters.add(w)
    })
  }

  /** When the next timer is due (undefined: none pending). */
  nextAt (): number | undefined {
    let min: number | undefined
    for (const { at } of this.timers.values()) if (min === undefined || at < min) min = at
    return min
  }

  /** Sleeps waiting now (tests wait for the code under test to reach a sleep). */
  get sleepers (): number { return this.#waiters.size }

  /** Move time forward by ms, firing every timer due on the way, in order; every sleep that is due resolves. */
  advance (ms: number): void {
    const end = this.t + ms
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined
      for (const e of this.timers) if (e[1].at <= end && (next === undefined || e[1].at < next[1].at)) next = e
      if (next === undefined) break
      this.timers.delete(next[0])
      this.t = Math.max(this.t, next[1].at)
      next[1].fn()
    }
    this.t = end
    for (const w of [...this.#waiters]) if (w.at <= this.t) w.resolve(true)
  }
}

// A clock tests move by hand (src/credentials/types.ts Clock): timers fire only in advance().
import type { Clock } from '../../src/credentials/types.js'

export class ManualClock implements Clock {
  private t: number
  private seq = 0
  private readonly timers = new Map<number, { at: number; fn: () => void }>()

  constructor (start = Date.UTC(2026, 0, 1)) { this.t = start }

  now = (): number => this.t
  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = ++this.seq
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn })
    return id
  }

  clearTimeout = (h: unknown): void => { this.timers.delete(h as number) }

  /** When the next timer is due (undefined: none pending). */
  nextAt (): number | undefined {
    let min: number | undefined
    for (const { at } of this.timers.values()) if (min === undefined || at < min) min = at
    return min
  }

  /** Move time forward by ms, firing every timer due on the way, in order. */
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
  }
}

// A keyed work queue (client-go's workqueue semantics, reduced): a key added several times before
// it is processed is processed once; a key added while it is being processed is processed again
// afterwards; a failed key is retried after a per-key exponential backoff. Keys are processed one
// at a time, so the reconciler never races itself.
import type { Logger } from 'pino'
import { Backoff, type BackoffOptions } from '../async/backoff.js'
import { describeError } from './kube-api.js'

export interface WorkQueueOptions {
  readonly process: (key: string, signal: AbortSignal) => Promise<void>
  readonly logger: Logger
  readonly backoff?: BackoffOptions
}

export class WorkQueue {
  private readonly pending = new Set<string>()
  private readonly dirty = new Set<string>()
  private readonly failures = new Map<string, Backoff>()
  private readonly timers = new Map<string, NodeJS.Timeout>()
  private current: string | undefined
  private running: Promise<void> | undefined
  private controller = new AbortController()
  private active = false
  private idleWaiters: Array<() => void> = []

  constructor (private readonly opts: WorkQueueOptions) {}

  start (): void {
    if (this.active) return
    this.active = true
    this.controller = new AbortController()
    this.kick()
  }

  /** Drop everything pending and wait for the key in progress to finish (its signal is aborted). */
  async stop (): Promise<void> {
    this.active = false
    this.controller.abort()
    this.pending.clear()
    this.dirty.clear()
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
    this.failures.clear()
    await this.running
  }

  add (key: string): void {
    if (!this.active) return
    if (this.current === key) { this.dirty.add(key); return }
    this.pending.add(key)
    this.kick()
  }

  get length (): number { return this.pending.size + (this.current !== undefined ? 1 : 0) }

  /** Resolves when nothing is pending or in progress (retries waiting on a timer do not count). */
  idle (): Promise<void> {
    if (this.length === 0) return Promise.resolve()
    return new Promise(resolve => this.idleWaiters.push(resolve))
  }

  private addAfter (key: string, ms: number): void {
    if (!this.active || this.timers.has(key)) return
    // unref: a retry waiting on its timer never keeps a stopping process alive.
    this.timers.set(key, setTimeout(() => { this.timers.delete(key); this.add(key) }, ms).unref())
  }

  private kick (): void {
    if (this.running !== undefined || !this.active) return
    this.running = this.drain().finally(() => {
      this.running = undefined
      if (this.active && this.pending.size > 0) this.kick()
    })
  }

  private async drain (): Promise<void> {
    while (this.active) {
      const next = this.pending.values().next()
      if (next.done === true) break
      const key = next.value
      this.pending.delete(key)
      this.current = key
      const signal = this.controller.signal
      try {
        await this.opts.process(key, signal)
        this.failures.delete(key)
      } catch (err) {
        if (!signal.aborted) {
          const backoff = this.failures.get(key) ?? new Backoff(this.opts.backoff ?? { initialMs: 500, maxMs: 60_000 })
          this.failures.set(key, backoff)
          const wait = backoff.next()
          this.opts.logger.warn({ key, error: describeError(err), retryInMs: wait }, 'reconcile failed; will retry')
          this.addAfter(key, wait)
        }
      } finally {
        this.current = undefined
        if (this.dirty.delete(key)) this.pending.add(key)
      }
    }
    if (this.pending.size === 0) {
      for (const w of this.idleWaiters) w()
      this.idleWaiters = []
    }
  }
}

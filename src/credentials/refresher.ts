// Keeps one credential source's answer fresh. The rules (issue 17):
//  - refresh at about half the lifetime, with jitter, so replicas and sources do not renew in step
//    and a failed renewal still has the other half to be retried in;
//  - a failed fetch is retried with backoff (src/async/backoff.ts);
//  - the last good answer is kept until it expires, never past it: an expired (or already
//    expired on arrival) answer is never handed out, so it is never written into a copy.
import type { Logger } from 'pino'
import { Backoff, type BackoffOptions } from '../async/backoff.js'
import { systemClock, type Clock, type CredentialFetcher, type FetchedCredentials } from './types.js'

export interface RefresherMetrics {
  /** A fetch failed (or returned an expired answer), by pull-secret name. */
  refreshFailure (secret: string): void
}

/** What src/metrics.ts implements: failures, and seconds until expiry read on scrape. */
export interface CredentialMetrics extends RefresherMetrics {
  trackExpiry (seconds: () => ReadonlyMap<string, number | undefined>): void
}

export interface RefresherOptions {
  /** The pull-secret name this source feeds: labels logs and metrics. */
  readonly name: string
  readonly fetcher: CredentialFetcher
  readonly logger: Logger
  readonly metrics?: RefresherMetrics
  readonly clock?: Clock
  readonly random?: () => number
  readonly backoff?: BackoffOptions
  /** Share of the lifetime after which to refresh, before jitter (0.5). */
  readonly refreshAt?: number
}

export class CredentialRefresher {
  private good: FetchedCredentials | undefined
  /** When the good answer was asked for: its lifetime counts from there. */
  private goodAskedAt = 0
  private refreshTimer: unknown
  private expiryTimer: unknown
  private running = false
  private inFlight: AbortController | undefined
  private readonly backoff: Backoff
  private readonly clock: Clock
  private readonly random: () => number
  private readonly listeners = new Set<() => void>()
  private settled: Promise<void>
  private settle!: () => void
  private lastError: string | undefined

  constructor (private readonly opts: RefresherOptions) {
    this.clock = opts.clock ?? systemClock
    this.random = opts.random ?? Math.random
    this.backoff = new Backoff({ initialMs: 1000, maxMs: 5 * 60_000, ...opts.backoff, random: this.random })
    this.settled = new Promise(resolve => { this.settle = resolve })
  }

  get name (): string { return this.opts.name }
  get description (): string { return this.opts.fetcher.description }

  /** The last good answer while it has not expired. */
  current (): FetchedCredentials | undefined {
    const g = this.good
    return g !== undefined && this.clock.now() < g.expiresAt ? g : undefined
  }

  /** Seconds until the current answer expires; undefined without one. */
  secondsUntilExpiry (): number | undefined {
    const g = this.current()
    return g === undefined ? undefined : (g.expiresAt - this.clock.now()) / 1000
  }

  /**
   * 'expiring' once under a quarter of the lifetime is left: refreshes start at about half, so
   * only failed ones get there. 'expired': nothing valid held (not fetched yet, or expired).
   */
  freshness (): { readonly state: 'expiring'; readonly secondsLeft: number } | { readonly state: 'expired' } | undefined {
    const g = this.current()
    if (g === undefined) return { state: 'expired' }
    const left = g.expiresAt - this.clock.now()
    return left < (g.expiresAt - this.goodAskedAt) / 4 ? { state: 'expiring', secondsLeft: left / 1000 } : undefined
  }

  /** The last failure's message (redacted at the source), until the next success. */
  get error (): string | undefined { return this.lastError }

  /** Called whenever current() changes (new answer, expiry). */
  onChange (fn: () => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  /** Resolves once the first fetch has succeeded or failed. */
  firstAttempt (): Promise<void> { return this.settled }

  start (): void {
    if (this.running) return
    this.running = true
    this.refresh()
  }

  stop (): void {
    this.running = false
    this.clock.clearTimeout(this.refreshTimer)
    this.clock.clearTimeout(this.expiryTimer)
    this.inFlight?.abort()
  }

  /** One fetch now (also what the timers call). */
  refresh (): void {
    if (!this.running || this.inFlight !== undefined) return
    this.clock.clearTimeout(this.refreshTimer)
    const controller = this.inFlight = new AbortController()
    const asked = this.clock.now()
    this.opts.fetcher.fetch(controller.signal).then(
      (answer) => this.succeeded(asked, answer),
      (err: unknown) => this.failed((err as Error).message)
    ).finally(() => {
      this.inFlight = undefined
      this.settle()
    })
  }

  private succeeded (asked: number, answer: FetchedCredentials): void {
    if (!this.running) return
    const now = this.clock.now()
    if (!(answer.expiresAt > now)) {
      this.failed(`${this.opts.fetcher.description}: the answer had already expired`)
      return
    }
    this.good = answer
    this.goodAskedAt = asked
    this.lastError = undefined
    this.backoff.reset()
    const lifetime = answer.expiresAt - asked
    // Half the lifetime, ±10 % of it.
    const share = (this.opts.refreshAt ?? 0.5) + (this.random() - 0.5) * 0.2
    this.schedule(Math.max(0, asked + lifetime * share - now))
    this.clock.clearTimeout(this.expiryTimer)
    this.expiryTimer = this.clock.setTimeout(() => this.expired(), answer.expiresAt - now)
    this.opts.logger.info({ secret: this.opts.name, source: this.description, expiresInSeconds: Math.round((answer.expiresAt - now) / 1000) }, 'registry credentials fetched')
    this.emit()
  }

  private failed (message: string): void {
    if (!this.running) return
    this.lastError = message
    this.opts.metrics?.refreshFailure(this.opts.name)
    const g = this.current()
    let delay = this.backoff.next()
    // A retry never waits past the expiry of what is held: one last try before it goes.
    if (g !== undefined) delay = Math.min(delay, Math.max(0, g.expiresAt - this.clock.now() - 1000))
    this.opts.logger.warn({ secret: this.opts.name, source: this.description, error: message, retryInMs: delay, holdingValidCredentials: g !== undefined }, 'registry credentials refresh failed')
    this.schedule(delay)
  }

  private expired (): void {
    if (this.good === undefined || this.clock.now() < this.good.expiresAt) return
    this.good = undefined
    this.opts.logger.warn({ secret: this.opts.name, source: this.description }, 'registry credentials expired before a refresh succeeded: no longer used nor written')
    this.emit()
  }

  private schedule (ms: number): void {
    if (!this.running) return
    this.clock.clearTimeout(this.refreshTimer)
    this.refreshTimer = this.clock.setTimeout(() => this.refresh(), ms)
  }

  private emit (): void {
    for (const fn of this.listeners) {
      try { fn() } catch (err) { this.opts.logger.error({ err }, 'credential listener failed') }
    }
  }
}

// Findings as events.k8s.io/v1 Events on the pod's controlling owner (issue 18 part 2), so that
// `kubectl describe replicaset` (and `kubectl events`) shows what pullpin found for its pods.
//
// Never on the admission path: the handler only queues the review (a bounded queue; past its
// size, reviews are dropped and counted), and this module turns it into findings and writes in
// the background. Writes are bounded by a token bucket. Repeats are aggregated as client-go's
// tools/events does it (EventSeries, k8s.io/client-go/tools/events/event_broadcaster.go): an
// Event is keyed by regarding object, reason, action and reporting controller; the first
// occurrence creates it, later ones within the series window bump series.count and
// series.lastObservedTime in memory, and the series is PATCHed at most once per flush interval,
// so a 100-pod rollout makes one Event with a count, not 100. A series quiet for the window is
// finished (forgotten; the next occurrence creates a new Event), like client-go's finishSeries.
import type { Logger } from 'pino'
import type { EventsV1Api } from '@kubernetes/client-node'
import type { ReviewedPod } from '../admission/handler.js'
import { findingsOf, type Finding } from '../admission/findings.js'
import { sleep } from '../async/sleep.js'
import { callOptions, describeError, isConflict, isNotFound, microTime, statusOf } from './kube-api.js'

export const REPORTING_CONTROLLER = 'pullpin.io/pullpin'
export const EVENT_ACTION = 'Admit'
/** events.k8s.io/v1 validation: note is at most 1 KiB (NoteLengthLimit). */
export const NOTE_MAX_BYTES = 1024

export interface FindingMetrics {
  write (target: 'event' | 'policyreport', result: 'created' | 'patched' | 'updated' | 'dropped' | 'failed'): void
}

/** Time, injectable so tests run on a manual clock (no test depends on machine speed). */
export interface Clock {
  now (): number
  /** Resolves true once `ms` have passed, false when `signal` aborts first. */
  sleep (ms: number, signal: AbortSignal): Promise<boolean>
}

export const systemClock: Clock = { now: () => Date.now(), sleep }

export interface EventRecorderOptions {
  readonly api: EventsV1Api
  /** This replica (POD_NAME): the Event's reportingInstance. */
  readonly reportingInstance: string
  readonly logger: Logger
  readonly metrics?: FindingMetrics
  /** Reviews waiting to be turned into Events; more are dropped (and counted). */
  readonly queueSize?: number
  /** API writes per second, and the burst the bucket holds. */
  readonly writesPerSecond?: number
  readonly burst?: number
  /** A series not seen for this long is finished (client-go: 6 minutes). */
  readonly seriesWindowMs?: number
  /** A series' count is PATCHed at most this often. */
  readonly flushIntervalMs?: number
  /** At most this many series are remembered; the oldest is finished first. */
  readonly maxSeries?: number
  readonly clock?: Clock
}

interface Regarding { readonly apiVersion: string; readonly kind: string; readonly name: string; readonly uid: string; readonly namespace: string }

interface Series {
  readonly key: string
  readonly regarding: Regarding
  readonly reason: string
  readonly type: 'Normal' | 'Warning'
  readonly note: string
  count: number
  first: number
  last: number
  /** The Event's name once created. */
  name: string | undefined
  /** The count the API server has. */
  written: number
  /** When the series was last written (flush interval). */
  writtenAt: number
  failures: number
}

/** `s` cut to `max` UTF-8 bytes without splitting a character, with an ellipsis when cut. */
export function cutBytes (s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s
  let out = ''
  let bytes = 0
  for (const ch of s) {
    const b = Buffer.byteLength(ch)
    if (bytes + b > max - 3) break
    out += ch
    bytes += b
  }
  return out + '…'
}

/** Finding results as Event types: a pin is Normal, anything else a Warning. */
function eventType (f: Finding): 'Normal' | 'Warning' {
  return f.result === 'pass' ? 'Normal' : 'Warning'
}

export class EventRecorder {
  readonly #opts: EventRecorderOptions
  readonly #clock: Clock
  readonly #queue: ReviewedPod[] = []
  readonly #series = new Map<string, Series>()
  readonly #queueSize: number
  readonly #rate: number
  readonly #burst: number
  readonly #window: number
  readonly #flush: number
  readonly #maxSeries: number
  #tokens: number
  #refilled: number
  #running: Promise<void> | undefined
  #wake: (() => void) | undefined
  #waiting = false
  #seq = 0
  readonly #stop = new AbortController()
  #idle: Array<() => void> = []

  constructor (opts: EventRecorderOptions) {
    this.#opts = opts
    this.#clock = opts.clock ?? systemClock
    this.#queueSize = opts.queueSize ?? 1000
    this.#rate = opts.writesPerSecond ?? 5
    this.#burst = opts.burst ?? 25
    this.#window = opts.seriesWindowMs ?? 6 * 60_000
    this.#flush = opts.flushIntervalMs ?? 30_000
    this.#maxSeries = opts.maxSeries ?? 4096
    this.#tokens = this.#burst
    this.#refilled = this.#clock.now()
  }

  /** From the admission handler: queue and return (no I/O, no findings made here). */
  reviewed (r: ReviewedPod): void {
    if (this.#stop.signal.aborted) return
    if (this.#queue.length >= this.#queueSize) {
      this.#opts.metrics?.write('event', 'dropped')
      return
    }
    this.#queue.push(r)
    this.#start()
  }

  /** Resolves once nothing is queued and no write is due now (tests). */
  idle (): Promise<void> {
    if (this.#running === undefined || (this.#waiting && this.#queue.length === 0)) return Promise.resolve()
    return new Promise(resolve => { this.#idle.push(resolve) })
  }

  /** The series remembered (tests, debugging). */
  series (): ReadonlyArray<Readonly<Series>> {
    return [...this.#series.values()]
  }

  async stop (): Promise<void> {
    this.#stop.abort()
    this.#wake?.()
    await this.#running
  }

  #start (): void {
    if (this.#running !== undefined) { this.#waiting = false; this.#wake?.(); return }
    this.#running = this.#run().catch((err: unknown) => {
      this.#opts.logger.error({ err }, 'event recorder stopped')
    }).finally(() => {
      this.#running = undefined
      for (const f of this.#idle.splice(0)) f()
    })
  }

  /** Queued reviews → series (CPU only). */
  #absorb (): void {
    const now = this.#clock.now()
    for (const r of this.#queue.splice(0)) {
      // One Event per reason per pod: the notes of one reason are joined.
      const byReason = new Map<string, Finding[]>()
      for (const f of findingsOf(r.result, r.mode)) {
        const list = byReason.get(f.reason)
        if (list === undefined) byReason.set(f.reason, [f])
        else list.push(f)
      }
      const regarding: Regarding = { ...r.owner, namespace: r.namespace }
      for (const [reason, findings] of byReason) {
        const key = `${r.namespace}\u0000${r.owner.uid}\u0000${reason}`
        const note = cutBytes(findings.map(f => f.note).join('; '), NOTE_MAX_BYTES)
        const s = this.#series.get(key)
        if (s !== undefined && now - s.last < this.#window) {
          // The note is the first occurrence's: events.k8s.io/v1 makes it immutable, a series only counts.
          s.count++
          s.last = now
          // Most recent last: the Map's order is the order series are finished in.
          this.#series.delete(key)
          this.#series.set(key, s)
          continue
        }
        if (s !== undefined) this.#series.delete(key)
        this.#series.set(key, { key, regarding, reason, type: eventType(findings[0]!), note, count: 1, first: now, last: now, name: undefined, written: 0, writtenAt: 0, failures: 0 })
      }
    }
    // Finished series (quiet for the window and written) are forgotten; past maxSeries the oldest go.
    for (const [key, s] of this.#series) {
      if (this.#series.size > this.#maxSeries || (now - s.last >= this.#window && s.written === s.count)) this.#series.delete(key)
      else if (now - s.last < this.#window) break
    }
  }

  /** The next series to write now, or the time the next one is due. */
  #next (now: number): { due: Series } | { wait: number } | undefined {
    let wait: number | undefined
    for (const s of this.#series.values()) {
      if (s.written === s.count) continue
      const at = s.name === undefined ? 0 : s.writtenAt + this.#flush
      if (at <= now) return { due: s }
      wait = Math.min(wait ?? Infinity, at - now)
    }
    return wait === undefined ? undefined : { wait }
  }

  /** Takes a token when there is one; else how long until there is. */
  #token (): number {
    const now = this.#clock.now()
    this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#refilled) * this.#rate / 1000)
    this.#refilled = now
    if (this.#tokens >= 1) { this.#tokens--; return 0 }
    return Math.ceil((1 - this.#tokens) * 1000 / this.#rate)
  }

  /** Sleeps until `ms` have passed or a review arrives; idle() waiters are told first. */
  async #pause (ms: number): Promise<void> {
    // A review wakes the loop by aborting the sleep (no timer is left behind).
    const woken = new AbortController()
    this.#wake = () => woken.abort()
    this.#waiting = true
    for (const f of this.#idle.splice(0)) f()
    await this.#clock.sleep(ms, AbortSignal.any([this.#stop.signal, woken.signal]))
    this.#waiting = false
    this.#wake = undefined
  }

  async #run (): Promise<void> {
    const signal = this.#stop.signal
    while (!signal.aborted) {
      this.#absorb()
      const next = this.#next(this.#clock.now())
      if (next === undefined) return // nothing to write: the loop ends, reviewed() starts it again
      if ('wait' in next) { await this.#pause(next.wait); continue }
      // The rate bound: without a token, wait for one (or for a review to absorb meanwhile).
      const wait = this.#token()
      if (wait > 0) { await this.#pause(wait); continue }
      await this.#write(next.due)
    }
  }

  async #write (s: Series): Promise<void> {
    const { api, logger, metrics } = this.#opts
    const count = s.count
    const now = this.#clock.now()
    const series = count > 1 ? { count, lastObservedTime: microTime(new Date(s.last)) } : undefined
    try {
      if (s.name !== undefined) {
        try {
          await api.patchNamespacedEvent({ name: s.name, namespace: s.regarding.namespace, body: { series } }, callOptions({ patch: 'merge', signal: this.#stop.signal }))
          metrics?.write('event', 'patched')
        } catch (err) {
          // Gone (the API server's event TTL): the series goes on as a new Event.
          if (!isNotFound(err)) throw err
          s.name = undefined
          await this.#create(s, series, now)
        }
      } else {
        await this.#create(s, series, now)
      }
      s.written = count
      s.writtenAt = now
      s.failures = 0
    } catch (err) {
      metrics?.write('event', 'failed')
      s.failures++
      s.writtenAt = now
      // Refused (422: invalid) or failing again and again: the series is given up, not retried forever.
      if (statusOf(err).code === 422 || s.failures >= 3) s.written = s.count
      logger.warn({ namespace: s.regarding.namespace, regarding: `${s.regarding.kind}/${s.regarding.name}`, reason: s.reason, error: describeError(err) }, 'Event not written')
    }
  }

  async #create (s: Series, series: { count: number; lastObservedTime: string } | undefined, now: number): Promise<void> {
    const { api, reportingInstance, metrics } = this.#opts
    const r = s.regarding
    // client-go's name: the regarding object's name and the time in hex nanoseconds (the clock
    // has milliseconds: a sequence number fills the rest, so names made in one ms differ).
    for (let attempt = 0; ; attempt++) {
      this.#seq = (this.#seq + 1) % 1_000_000
      const name = `${r.name}.${(BigInt(now) * 1_000_000n + BigInt(this.#seq)).toString(16)}`
      try {
        await api.createNamespacedEvent({
          namespace: r.namespace,
          body: {
            apiVersion: 'events.k8s.io/v1',
            kind: 'Event',
            metadata: { name, namespace: r.namespace },
            eventTime: microTime(new Date(s.first)) as never,
            ...(series !== undefined ? { series: series as never } : {}),
            reportingController: REPORTING_CONTROLLER,
            reportingInstance,
            action: EVENT_ACTION,
            reason: s.reason,
            regarding: { apiVersion: r.apiVersion, kind: r.kind, name: r.name, uid: r.uid, namespace: r.namespace },
            note: s.note,
            type: s.type,
          },
        }, callOptions({ signal: this.#stop.signal }))
        s.name = name
        metrics?.write('event', 'created')
        return
      } catch (err) {
        if (!isConflict(err) || attempt >= 2) throw err
      }
    }
  }
}

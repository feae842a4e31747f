// HTTP transport to one registry (and its token realm): a keep-alive connection pool whose DNS
// lookup refuses private addresses at connect time, the registry's extra CA on top of Node's
// roots, a per-registry limit on requests in flight, a timeout per request, and retries with
// backoff on 429/5xx and connection errors that honour Retry-After.
//
// A 429 pauses the whole registry, not just the request that got it: the registry's quota is per
// account or address (Docker Hub's pull limit, GHCR's), so every request to it would meet the same
// answer. Requests arriving during the pause wait for its end (their signal still stops them), or,
// when the registry asked for more than MAX_RETRY_AFTER_MS, fail at once without being sent, so the
// caches serve what they know (stale-if-error) and no quota is spent on answers known in advance.
// Without a Retry-After the pause grows with each 429 in a row (equal-jitter backoff).
//
// Why node:https and not undici (BENCHMARKS.md, "Manifest HEAD transport", bench/head-transport.ts
// against the real test registry over TLS): undici resets the connection after every HEAD
// (client-h1.js sets socket[kReset] for HEAD, nodejs/undici#258), so each manifest HEAD pays a new
// TLS handshake and runs several times slower, and against a remote registry every handshake also
// costs extra round trips. HEAD is pullpin's hot operation (Docker Hub counts manifest GETs as
// pulls, HEADs not), so HEAD must use node:https. For GETs the two are within run-to-run noise on
// a shared machine, which is nothing next to a real registry's round trip, while one pool lets the
// tag-list GETs, digest-fallback GETs and token GETs reuse the sockets the HEADs keep warm (and
// keeps one place for the address guard, CA and limits). So: one transport, node:https with a
// keepAlive Agent, for everything.
import type { IncomingHttpHeaders } from 'node:http'
import { Agent, request as httpsRequest } from 'node:https'
import type { LookupFunction } from 'node:net'
import { rootCertificates } from 'node:tls'
import { isCodedError, ERR_REGISTRY_BAD_RESPONSE, ERR_REGISTRY_TIMEOUT, ERR_REGISTRY_UNAVAILABLE } from '../errors.js'
import { abortReason } from '../async/abort.js'
import { backoffDelay } from '../async/backoff.js'
import { sleep } from '../async/sleep.js'
import { assertLiteralAddressAllowed, guardedLookup } from './address-guard.js'

/** One HTTP exchange, for metrics and logs. Never carries credentials, tokens or headers. */
export interface RegistryEvent {
  /** The concrete registry host[:port] (logs). */
  registry: string
  /** The registry.hosts entry that allowed it (metrics label: bounded by the config). */
  allowlistEntry?: string
  op: 'ping' | 'manifest' | 'blob' | 'tags' | 'token'
  method: string
  status: number | 'error'
  durationMs: number
  /** Error code (e.g. "ECONNREFUSED", "timeout", "PULLPIN_REGISTRY_PRIVATE_ADDRESS") when status is 'error'. */
  error?: string
  /** The registry's own count of requests left in its window, when it sent one (parseRateLimit). */
  rateLimit?: RateLimit
}

/** What a registry says of its request quota (Docker Hub: `ratelimit-remaining: 100;w=21600`). */
export interface RateLimit {
  remaining: number
  limit?: number
  windowSeconds?: number
}

export interface HttpRequest {
  op: RegistryEvent['op']
  method: 'GET' | 'HEAD'
  url: URL
  headers: Record<string, string>
  /** Largest 2xx body accepted; more → ERR_REGISTRY_BAD_RESPONSE. */
  maxBodyBytes: number
}

export interface HttpResponse {
  status: number
  headers: IncomingHttpHeaders
  /** The body (empty for HEAD; at most ERROR_BODY_MAX bytes of a non-2xx body). */
  body: Buffer
  url: URL
}

export interface RequestPolicy {
  timeoutMs: number
  retries: number
}

export interface RegistryTransportOptions {
  /** Registry these connections serve (named in errors and events). */
  registry: string
  /** Extra CA, trusted in addition to Node's bundled roots. */
  caPem?: string
  maxConcurrency: number
  /** Read at every connection (and for literal IPs at every request). */
  allowPrivate: () => boolean
  lookup?: LookupFunction
  userAgent: string
  onEvent?: (e: RegistryEvent) => void
  /** For tests: jitter source (default Math.random). */
  random?: () => number
}

/** Non-2xx bodies are only read for error codes; keep at most this much. */
const ERROR_BODY_MAX = 64 * 1024
const BACKOFF_BASE_MS = 100
const BACKOFF_MAX_MS = 2000
/** A Retry-After longer than this is not waited for: the caller is an admission request. */
const MAX_RETRY_AFTER_MS = 60_000
/** Idle keep-alive sockets are closed after this (the Agent destroys free sockets on timeout). */
const IDLE_SOCKET_MS = 30_000
const RETRYABLE_NETWORK_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH',
  'ENETDOWN', 'EHOSTDOWN', 'EAI_AGAIN'
])

/** 429 and 5xx except "will never work" answers (501 Not Implemented, 505 HTTP Version). */
export function isRetryableStatus (status: number): boolean {
  return status === 429 || (status >= 500 && status <= 599 && status !== 501 && status !== 505)
}

/** RFC 9110 §10.2.3 Retry-After: delay-seconds or an HTTP-date; ms to wait, or undefined. */
export function parseRetryAfter (value: string | string[] | undefined, now: number): number | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim()
  if (v === undefined || v === '') return undefined
  if (/^\d+$/.test(v)) return Number(v) * 1000
  const at = Date.parse(v)
  if (Number.isNaN(at)) return undefined
  return Math.max(0, at - now)
}

/**
 * The quota headers of an answer: `ratelimit-remaining` / `ratelimit-limit` as Docker Hub sends
 * them ("100;w=21600": count, then the window in seconds; docs.docker.com "Docker Hub usage and
 * limits"), or the `x-ratelimit-remaining` / `x-ratelimit-limit` pair GitHub's services send.
 */
export function parseRateLimit (headers: IncomingHttpHeaders): RateLimit | undefined {
  const remaining = quota(headers['ratelimit-remaining']) ?? quota(headers['x-ratelimit-remaining'])
  if (remaining === undefined) return undefined
  const limit = quota(headers['ratelimit-limit']) ?? quota(headers['x-ratelimit-limit'])
  const windowSeconds = remaining.window ?? limit?.window
  return {
    remaining: remaining.count,
    ...(limit === undefined ? {} : { limit: limit.count }),
    ...(windowSeconds === undefined ? {} : { windowSeconds })
  }
}

function quota (value: string | string[] | undefined): { count: number; window?: number } | undefined {
  const v = Array.isArray(value) ? value[0] : value
  const m = v === undefined ? null : /^\s*(\d{1,12})\s*(?:;\s*w\s*=\s*(\d{1,12}))?/.exec(v)
  if (m === null) return undefined
  return { count: Number(m[1]), ...(m[2] === undefined ? {} : { window: Number(m[2]) }) }
}

export class RegistryTransport {
  readonly registry: string
  readonly #agent: Agent
  readonly #limiter: Limiter
  readonly #opts: RegistryTransportOptions
  #closed = false
  #retired = false
  /** send() calls not finished yet (including ones sleeping between retries). */
  #inProgress = 0
  /** No request is sent before this (ms since the epoch): the registry answered 429. */
  #pausedUntil = 0
  /** 429s in a row, for the pause when the registry gives no Retry-After. */
  #throttledInRow = 0

  constructor (opts: RegistryTransportOptions) {
    this.registry = opts.registry
    this.#opts = opts
    const max = Math.max(1, Math.floor(opts.maxConcurrency))
    this.#limiter = new Limiter(max)
    this.#agent = new Agent({
      keepAlive: true,
      maxSockets: max,
      maxFreeSockets: max,
      // Reuse the most recently used socket, so surplus ones go idle and time out.
      scheduling: 'lifo',
      timeout: IDLE_SOCKET_MS,
      // The `ca` option replaces Node's roots: keep them and add the registry's own CA.
      ...(opts.caPem === undefined || opts.caPem === '' ? {} : { ca: [...rootCertificates, opts.caPem] }),
      lookup: guardedLookup({ registry: opts.registry, allowPrivate: opts.allowPrivate, ...(opts.lookup === undefined ? {} : { lookup: opts.lookup }) })
    })
  }

  /**
   * Sends `req`, retrying 429/5xx and connection errors up to `policy.retries` times with
   * exponential backoff and jitter (or the answer's Retry-After). Returns the final response for
   * any other status. Throws ERR_REGISTRY_UNAVAILABLE (retries used up, connection/TLS errors),
   * ERR_REGISTRY_TIMEOUT (one attempt took longer than policy.timeoutMs; not retried: the
   * caller has a deadline), ERR_REGISTRY_PRIVATE_ADDRESS, ERR_REGISTRY_BAD_RESPONSE (body too
   * large), or the signal's reason when it aborts (see abortReason in src/async/abort.ts).
   */
  async send (req: HttpRequest, policy: RequestPolicy, signal?: AbortSignal): Promise<HttpResponse> {
    if (req.url.protocol !== 'https:') throw new Error(`refusing non-https URL ${req.url.origin}`)
    this.#inProgress++
    try {
      return await this.#send(req, policy, signal)
    } finally {
      this.#inProgress--
      if (this.#retired && this.#inProgress === 0) this.#agent.destroy()
    }
  }

  async #send (req: HttpRequest, policy: RequestPolicy, signal: AbortSignal | undefined): Promise<HttpResponse> {
    let attempt = 0
    let staleRetryUsed = false
    for (;;) {
      if (signal?.aborted === true) throw abortReason(signal)
      if (this.#closed) throw new ERR_REGISTRY_UNAVAILABLE(this.registry, 'client closed')
      assertLiteralAddressAllowed(this.registry, req.url.hostname, this.#opts.allowPrivate())
      await this.#waitForPause(signal)
      const release = await this.#limiter.acquire(signal)
      let outcome: HttpResponse | AttemptFailure
      try {
        outcome = await this.#attempt(req, policy.timeoutMs, signal)
      } finally {
        release()
      }

      if (outcome instanceof AttemptFailure) {
        const f = outcome
        if (f.kind === 'abort') throw abortReason(signal as AbortSignal)
        if (f.kind === 'timeout') throw new ERR_REGISTRY_TIMEOUT(this.registry, String(policy.timeoutMs))
        // pullpin's own errors (a refused address from the lookup guard, a body over the limit) as they are.
        if (isCodedError(f.cause) && f.cause.code.startsWith('PULLPIN_')) throw f.cause
        // A keep-alive socket the server closed while it sat idle fails the next request on it
        // before any answer: resend once at once, as the Node docs advise (http "reusedSocket").
        if (f.reusedSocket && !f.gotResponse && !staleRetryUsed && isRetryableNetworkError(f.cause)) {
          staleRetryUsed = true
          continue
        }
        if (!isRetryableNetworkError(f.cause) || attempt >= policy.retries) {
          throw new ERR_REGISTRY_UNAVAILABLE(this.registry, describeNetworkError(f.cause, req.op, attempt + 1), { cause: f.cause })
        }
        await this.#sleep(this.#backoff(attempt), signal)
        attempt++
        continue
      }

      const res = outcome
      const retryAfter = parseRetryAfter(res.headers['retry-after'], Date.now())
      if (res.status === 429) this.#pause(retryAfter)
      else this.#throttledInRow = 0
      if (!isRetryableStatus(res.status)) return res
      const what = `${req.op === 'token' ? 'token realm answered' : 'answered'} HTTP ${res.status}`
      if (attempt >= policy.retries) {
        throw new ERR_REGISTRY_UNAVAILABLE(this.registry, `${what} (${attempt + 1} attempt${attempt === 0 ? '' : 's'})`)
      }
      if (retryAfter !== undefined && retryAfter > MAX_RETRY_AFTER_MS) {
        throw new ERR_REGISTRY_UNAVAILABLE(this.registry, `${what} with Retry-After ${Math.ceil(retryAfter / 1000)} s`)
      }
      // A 429's wait is the registry-wide pause, waited for at the top of the loop.
      if (res.status !== 429) await this.#sleep(retryAfter ?? this.#backoff(attempt), signal)
      attempt++
    }
  }

  /**
   * A configuration change replaced this pool: its connections close once the requests under
   * way are done. A straggler that still sends through it opens a socket that idles out.
   */
  retire (): void {
    this.#retired = true
    if (this.#inProgress === 0) this.#agent.destroy()
  }

  /** Closes every connection; later requests fail with ERR_REGISTRY_UNAVAILABLE. */
  close (): void {
    this.#closed = true
    this.#agent.destroy()
  }

  /** How long requests to this registry still wait because it answered 429 (0: not paused). */
  get pausedMs (): number {
    return Math.max(0, this.#pausedUntil - Date.now())
  }

  #pause (retryAfter: number | undefined): void {
    const ms = retryAfter ?? this.#backoff(this.#throttledInRow)
    this.#throttledInRow++
    this.#pausedUntil = Math.max(this.#pausedUntil, Date.now() + ms)
  }

  async #waitForPause (signal: AbortSignal | undefined): Promise<void> {
    for (let ms = this.pausedMs; ms > 0; ms = this.pausedMs) {
      if (ms > MAX_RETRY_AFTER_MS) {
        throw new ERR_REGISTRY_UNAVAILABLE(this.registry, `rate limited (HTTP 429): no request sent for another ${Math.ceil(ms / 1000)} s`)
      }
      await this.#sleep(ms, signal)
    }
  }

  #backoff (attempt: number): number {
    // Equal jitter (src/async/backoff.ts says why): retries from many webhook replicas spread
    // out but never collapse to zero.
    return backoffDelay(attempt, { initialMs: BACKOFF_BASE_MS, maxMs: BACKOFF_MAX_MS, ...(this.#opts.random === undefined ? {} : { random: this.#opts.random }) })
  }

  /** Waits between attempts; an abort rejects with abortReason. */
  async #sleep (ms: number, signal: AbortSignal | undefined): Promise<void> {
    if (!await sleep(ms, signal)) throw abortReason(signal as AbortSignal)
  }

  #attempt (req: HttpRequest, timeoutMs: number, signal: AbortSignal | undefined): Promise<HttpResponse | AttemptFailure> {
    return new Promise((resolve) => {
      const started = performance.now()
      let settled = false
      let gotResponse = false
      let status: number | undefined
      let rateLimit: RateLimit | undefined
      const emit = (s: number | 'error', error?: string): void => {
        this.#opts.onEvent?.({
          registry: this.registry,
          op: req.op,
          method: req.method,
          status: s,
          durationMs: Math.round((performance.now() - started) * 10) / 10,
          ...(error === undefined ? {} : { error }),
          ...(rateLimit === undefined ? {} : { rateLimit })
        })
      }
      const finish = (v: HttpResponse | AttemptFailure): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        if (v instanceof AttemptFailure) emit('error', v.kind === 'network' ? errorCode(v.cause) : v.kind)
        else emit(v.status)
        resolve(v)
      }

      const r = httpsRequest(req.url, {
        method: req.method,
        agent: this.#agent,
        headers: { 'user-agent': this.#opts.userAgent, ...req.headers }
      })
      const fail = (kind: AttemptFailure['kind'], cause?: unknown): void => {
        finish(new AttemptFailure(kind, cause, r.reusedSocket, gotResponse))
        r.destroy()
      }
      const timer = setTimeout(() => fail('timeout'), timeoutMs)
      const onAbort = (): void => fail('abort')
      signal?.addEventListener('abort', onAbort, { once: true })

      r.on('error', (err) => fail('network', err))
      r.on('response', (res) => {
        gotResponse = true
        status = res.statusCode ?? 0
        rateLimit = parseRateLimit(res.headers)
        const ok = status >= 200 && status < 300
        const limit = req.method === 'HEAD' ? 0 : ok ? req.maxBodyBytes : ERROR_BODY_MAX
        const chunks: Buffer[] = []
        let size = 0
        res.on('data', (chunk: Buffer) => {
          size += chunk.length
          if (size <= limit) { chunks.push(chunk); return }
          if (ok) {
            fail('network', new ERR_REGISTRY_BAD_RESPONSE(this.registry, `response body over ${req.maxBodyBytes} bytes`))
          } else {
            // An error body is only read for its error code: keep what we have.
            finish({ status: status ?? 0, headers: res.headers, body: Buffer.concat(chunks), url: req.url })
            r.destroy()
          }
        })
        res.on('end', () => finish({ status: status ?? 0, headers: res.headers, body: Buffer.concat(chunks), url: req.url }))
        res.on('error', (err) => fail('network', err))
        res.on('aborted', () => fail('network', Object.assign(new Error('response aborted'), { code: 'ECONNRESET' })))
      })
      r.end()
    })
  }
}

class AttemptFailure {
  constructor (
    readonly kind: 'network' | 'timeout' | 'abort',
    readonly cause: unknown,
    readonly reusedSocket: boolean,
    readonly gotResponse: boolean
  ) {}
}

function errorCode (err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code
  if (typeof code === 'string') return code
  return err instanceof Error ? err.message : 'error'
}

function isRetryableNetworkError (err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code
  return typeof code === 'string' && RETRYABLE_NETWORK_CODES.has(code)
}

function describeNetworkError (err: unknown, op: HttpRequest['op'], attempts: number): string {
  const message = err instanceof Error ? err.message : String(err)
  const code = (err as { code?: unknown } | undefined)?.code
  const base = typeof code === 'string' && !message.includes(code) ? `${message} (${code})` : message
  const where = op === 'token' ? 'token realm: ' : ''
  return `${where}${base}${attempts > 1 ? ` after ${attempts} attempts` : ''}`
}

/** FIFO counting semaphore; waiting callers can give up through their signal. */
class Limiter {
  active = 0
  readonly #queue: Array<{ grant: () => void }> = []
  constructor (readonly max: number) {}

  get waiting (): number { return this.#queue.length }

  async acquire (signal: AbortSignal | undefined): Promise<() => void> {
    if (signal?.aborted === true) throw abortReason(signal)
    if (this.active < this.max && this.#queue.length === 0) {
      this.active++
      return this.#releaser()
    }
    await new Promise<void>((resolve, reject) => {
      const waiter = {
        grant: (): void => {
          signal?.removeEventListener('abort', onAbort)
          resolve()
        }
      }
      const onAbort = (): void => {
        const i = this.#queue.indexOf(waiter)
        if (i >= 0) this.#queue.splice(i, 1)
        reject(abortReason(signal as AbortSignal))
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.#queue.push(waiter)
    })
    return this.#releaser()
  }

  #releaser (): () => void {
    let done = false
    return () => {
      if (done) return
      done = true
      const next = this.#queue.shift()
      // The slot passes straight to the next waiter (active stays the same).
      if (next !== undefined) next.grant()
      else this.active--
    }
  }
}

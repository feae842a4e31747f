// Bearer tokens for the Docker registry token protocol (distribution docs/spec/auth/token.md):
// on a `Bearer realm=…,service=…,scope=…` challenge the client GETs
// `realm?service=…&scope=…` (Basic credentials when it has some, nothing otherwise) and reads
// `token` or its OAuth 2.0 alias `access_token`, plus `expires_in` ("When omitted, this defaults
// to 60 seconds").
//
// Tokens are cached per registry + realm + service + scope + credential identity until shortly
// before they expire, so N manifest HEADs on one repository cost one token request; concurrent
// requests for the same key share one fetch. Both are lru-cache's fetch(): a per-entry TTL set
// when the token arrives, one fetch per key in flight, the least recently used token evicted first. The credential identity is a hash of the
// username and password, so a rotated password gets its own token and no secret is kept as a
// map key. Expiry counts from when the token request was sent (our clock, not the server's
// `issued_at`): the token can only be younger than that, so clock skew never extends its use.
//
// The HTTP exchange itself is the caller's `send` (the registry's transport: same connection
// pool, address guard, CA and concurrency limit); the realm has already passed checkRealm.
import { createHash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import { abortable } from '../async/abort.js'
import { ERR_REGISTRY_BAD_RESPONSE, ERR_REGISTRY_UNAUTHORIZED } from '../errors.js'
import type { RegistryCredential } from './keyring.js'

/** docs/spec/auth/token.md: expires_in "When omitted, this defaults to 60 seconds". */
export const DEFAULT_TOKEN_LIFETIME_S = 60
/** Refresh this share of a token's lifetime before it ends (at most MAX_REFRESH_MARGIN_MS). */
const REFRESH_MARGIN_SHARE = 0.2
const MAX_REFRESH_MARGIN_MS = 30_000
/** Largest token response accepted. */
export const MAX_TOKEN_BYTES = 1024 * 1024

export interface TokenRequest {
  registry: string
  /** Already checked with checkRealm. */
  realm: URL
  service?: string
  /** e.g. ["repository:team/app:pull"] */
  scopes: readonly string[]
  /** undefined: anonymous token request. */
  credential?: RegistryCredential
}

export interface TokenHttpResponse { status: number; body: Buffer }
/** Sends GET `url` with `headers` and returns the final answer (retries are the sender's job). */
export type TokenSend = (url: URL, headers: Record<string, string>) => Promise<TokenHttpResponse>

export interface IssuedToken {
  token: string
  /** True when it came from the cache (then a 401 with it should invalidate and fetch anew). */
  cached: boolean
}

interface Entry { readonly token: string }
interface FetchContext { readonly req: TokenRequest; readonly send: TokenSend }

export interface BearerTokenCacheOptions {
  /** ms since the epoch; injectable for tests. Default Date.now. */
  clock?: () => number
  /** Bound on cached tokens; the least recently used goes first. Default 10 000. */
  maxEntries?: number
}

/** Stable, secret-free identity of a credential ("anonymous" for none). */
export function credentialIdentity (credential: RegistryCredential | undefined): string {
  if (credential === undefined) return 'anonymous'
  return createHash('sha256').update(credential.username).update('\0').update(credential.password).digest('hex').slice(0, 24)
}

export function basicAuthorization (credential: RegistryCredential): string {
  return 'Basic ' + Buffer.from(`${credential.username}:${credential.password}`, 'utf8').toString('base64')
}

export class BearerTokenCache {
  readonly #cache: LRUCache<string, Entry, FetchContext>
  readonly #clock: () => number

  constructor (opts: BearerTokenCacheOptions = {}) {
    const clock = this.#clock = opts.clock ?? Date.now
    this.#cache = new LRUCache<string, Entry, FetchContext>({
      max: opts.maxEntries ?? 10_000,
      // The injected clock drives expiry, read at every lookup (no 1 ms debounce of its own).
      perf: { now: clock },
      ttlResolution: 0,
      // A fetch shared by several callers finishes and is stored even when clear() runs meanwhile.
      ignoreFetchAbort: true,
      fetchMethod: (_key, _stale, { context, options }) => this.#fetch(context.req, context.send, options)
    })
  }

  /**
   * A token for `req`, from the cache or fetched (one fetch per key at a time). Throws
   * ERR_REGISTRY_UNAUTHORIZED when the realm refuses the credential (401/403), ERR_REGISTRY_BAD_RESPONSE
   * for an answer without a token, and whatever `send` throws. `signal` only stops this caller
   * from waiting: a shared fetch carries on for the others.
   */
  async token (req: TokenRequest, send: TokenSend, signal?: AbortSignal): Promise<IssuedToken> {
    const status: LRUCache.Status<string, Entry, FetchContext> = {}
    const entry = await abortable(this.#cache.fetch(cacheKey(req), { context: { req, send }, status }), signal)
    if (entry === undefined) throw new ERR_REGISTRY_BAD_RESPONSE(req.registry, 'no token')
    return { token: entry.token, cached: status.fetch === 'hit' }
  }

  /** Drops `token` for `req` if it is still the cached one (the registry refused it). */
  invalidate (req: TokenRequest, token: string): void {
    const key = cacheKey(req)
    if (this.#cache.peek(key)?.token === token) this.#cache.delete(key)
  }

  get size (): number { return this.#cache.size }

  clear (): void { this.#cache.clear() }

  async #fetch (req: TokenRequest, send: TokenSend, options: LRUCache.FetcherFetchOptions<string, Entry, FetchContext>): Promise<Entry> {
    const { url, headers } = tokenRequest(req)

    const started = this.#clock()
    const res = await send(url, headers)
    const scopes = req.scopes.join(' ')
    if (res.status === 401 || res.status === 403) {
      throw new ERR_REGISTRY_UNAUTHORIZED(req.registry, `${res.status} at its token realm`,
        `${scopes || 'a token'} (${req.credential === undefined ? 'anonymous' : `credentials from ${req.credential.source}`})`)
    }
    if (res.status !== 200) {
      throw new ERR_REGISTRY_BAD_RESPONSE(req.registry, `token realm ${url.origin}${url.pathname} answered HTTP ${res.status}`)
    }
    const { token, lifetimeS } = parseTokenResponse(req.registry, res.body)
    const lifetimeMs = lifetimeS * 1000
    const refreshAt = started + lifetimeMs - Math.min(MAX_REFRESH_MARGIN_MS, lifetimeMs * REFRESH_MARGIN_SHARE)
    // The TTL counts from when the answer is stored; the lifetime from when the request was sent.
    // (A TTL of 0 would mean "never expires": at least 1 ms.)
    options.ttl = Math.max(1, refreshAt - this.#clock())
    return { token }
  }
}

/**
 * The GET that asks the realm for a token (token.md "Requesting a Token"): service and scope
 * parameters, Basic credentials when there are any. Exported for `pullpin doctor`, which asks
 * once, uncached, to show the realm's own answer.
 */
export function tokenRequest (req: TokenRequest): { url: URL, headers: Record<string, string> } {
  const url = new URL(req.realm.href)
  if (req.service !== undefined && req.service !== '') url.searchParams.set('service', req.service)
  // token.md: "This query parameter should be specified multiple times if there is more than one scope entry".
  for (const scope of req.scopes) url.searchParams.append('scope', scope)
  const headers: Record<string, string> = { accept: 'application/json' }
  if (req.credential !== undefined) headers.authorization = basicAuthorization(req.credential)
  return { url, headers }
}

/** `token` (or `access_token`) and the lifetime in seconds (`expires_in`, default 60). */
export function parseTokenResponse (registry: string, body: Buffer): { token: string; lifetimeS: number } {
  if (body.length > MAX_TOKEN_BYTES) throw new ERR_REGISTRY_BAD_RESPONSE(registry, 'token response too large')
  let json: unknown
  try {
    json = JSON.parse(body.toString('utf8'))
  } catch {
    throw new ERR_REGISTRY_BAD_RESPONSE(registry, 'token response is not JSON')
  }
  if (typeof json !== 'object' || json === null) throw new ERR_REGISTRY_BAD_RESPONSE(registry, 'token response is not a JSON object')
  const o = json as Record<string, unknown>
  const token = typeof o.token === 'string' && o.token !== ''
    ? o.token
    : typeof o.access_token === 'string' && o.access_token !== ''
      ? o.access_token
      : undefined
  if (token === undefined) throw new ERR_REGISTRY_BAD_RESPONSE(registry, 'token response has neither "token" nor "access_token"')
  // The token goes into an HTTP header: refuse anything that could split or corrupt it.
  if (!/^[\x21-\x7e]+$/.test(token)) throw new ERR_REGISTRY_BAD_RESPONSE(registry, 'token contains characters not allowed in a header')
  const e = o.expires_in
  const lifetimeS = typeof e === 'number' && Number.isFinite(e) && e > 0 ? e : DEFAULT_TOKEN_LIFETIME_S
  return { token, lifetimeS }
}

function cacheKey (req: TokenRequest): string {
  return JSON.stringify([req.registry, req.realm.href, req.service ?? '', [...req.scopes].sort().join(' '), credentialIdentity(req.credential)])
}

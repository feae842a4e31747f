// pullpin's OCI registry client: the two read operations the tag cache needs, over the layers
// endpoint (where, which URLs) → auth session (challenge, token) → transport (connections, limits,
// retries), as go-containerregistry's `remote` sits on its `transport`.
//
//  - headManifest: HEAD /v2/<name>/manifests/<reference> (OCI distribution-spec "Pulling
//    manifests"; HEAD because Docker Hub counts manifest GETs as pulls). The Accept header
//    lists the index types first, so a multi-arch tag answers with its index and pullpin pins
//    the index digest, never one platform's. Without Docker-Content-Digest the manifest is
//    fetched and hashed; a GET whose header disagrees with its bytes is ERR_DIGEST_MISMATCH.
//  - listTags: GET /v2/<name>/tags/list?n=1000, following RFC 8288 `Link: <…>; rel="next"`
//    ("Listing Tags"), same origin only.
//
// Auth is src/registry/auth-session.ts (401 challenge, Basic, Bearer tokens per scope,
// credential order and rotation): every request here goes out through the registry's
// AuthSession, which answers with the first response that is neither 401 nor 403.
//
// Aborting: a signal that aborts makes the operation reject promptly with the signal's reason
// when that is an Error (controller.abort() → DOMException "AbortError", AbortSignal.timeout()
// → DOMException "TimeoutError"), otherwise with an "AbortError" DOMException. The per-request
// timeout (RegistryHostOptions.timeoutMs) is ERR_REGISTRY_TIMEOUT.
import { createHash } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import type { LookupFunction } from 'node:net'
import { LRUCache } from 'lru-cache'
import { ERR_DIGEST_MISMATCH, ERR_REGISTRY_BAD_RESPONSE, ERR_REGISTRY_NOT_ALLOWED, ERR_REGISTRY_NOT_FOUND } from '../errors.js'
import { isValidDigest } from '../reference/parse.js'
import { RegistryAuth, type AuthSession } from './auth-session.js'
import { manifestUrl, nextPageUrl, resolveEndpoint, tagsListUrl, type RegistryEndpoint } from './endpoint.js'
import type { RegistryCredential } from './keyring.js'
import { RegistryTransport, type HttpRequest, type HttpResponse, type RegistryEvent, type RequestPolicy } from './transport.js'

export type { RegistryEvent } from './transport.js'

export interface RepositoryRef {
  /** "docker.io", "ghcr.io", "127.0.0.1:5443", as in ImageReference.registry */
  readonly registry: string
  readonly repository: string
}

export interface ManifestInfo {
  /** "sha256:…" (the algorithm the registry uses) */
  digest: string
  /** Content-Type of the manifest, parameters removed ('' if the registry sent none) */
  mediaType: string
  size?: number
}

export interface RegistryHostOptions {
  /** Extra CA for this registry (custom/private CA), added to Node's default roots. */
  caPem?: string
  /** Per HTTP request. */
  timeoutMs: number
  /** On 429/5xx/connection errors: exponential backoff with jitter, honouring Retry-After. */
  retries: number
  /** Per-registry limit on requests in flight. */
  maxConcurrency: number
  /** Extra hosts allowed as Bearer realm ("host" any port, "host:port" that port). auth.docker.io is always allowed for docker.io. */
  tokenRealmHosts: readonly string[]
}

export interface RegistryClientOptions {
  /**
   * pinning.registries globs; anything else → ERR_REGISTRY_NOT_ALLOWED, no connection made. Asked
   * with the repository too, since an entry may have a path ("registry.example.com/team").
   */
  isAllowed (registry: string, repository: string): boolean
  /**
   * The pinning.registries entry (glob) that allowed `registry`, put in every event as
   * `allowlistEntry`: metrics are labelled by it, so a wildcard entry is one series however many
   * hosts pods name under it (default: the registry itself).
   */
  allowlistEntry? (registry: string): string
  /** pinning.allowPrivateRegistries */
  isPrivateAllowed (registry: string): boolean
  hostOptions (registry: string): RegistryHostOptions
  /** Called per request so rotation applies; `image` = `${registry}/${repository}`. */
  credentials (image: string): RegistryCredential[]
  /** node:dns-style lookup, injectable for tests (default dns.lookup). */
  lookup?: LookupFunction
  /** Metrics/log hook; never receives secrets. */
  onEvent?: (e: RegistryEvent) => void
  userAgent?: string
  /** ms since the epoch, for token expiry; injectable for tests (default Date.now). */
  clock?: () => number
  /** `n` of tags/list requests (default 1000); smaller values are for tests of paging. */
  tagsPageSize?: number
  /** Registries that keep connection pools and auth state (LRU; default MAX_REGISTRY_HOSTS). */
  maxHosts?: number
}

/**
 * Registries whose state (keep-alive pool, limiter, learned auth scheme) is kept. With a wildcard
 * on pinning.registries (`*.pkg.dev`, an ECR pattern) pod authors choose the hosts, so the state is
 * an LRU: the least recently used registry's pool is closed and its state made anew on next use.
 */
export const MAX_REGISTRY_HOSTS = 128

/** OCI image-spec and Docker media types a manifest HEAD/GET accepts, indexes first. */
export const MANIFEST_MEDIA_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json'
] as const
const MANIFEST_ACCEPT = MANIFEST_MEDIA_TYPES.join(', ')

/** distribution-spec: "Clients and registries SHOULD expect to support manifest uploads of at least 4 MiB". */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024
const MAX_TAGS_PAGE_BYTES = 16 * 1024 * 1024
const TAGS_PAGE_SIZE = 1000
const MAX_TAG_PAGES = 1000
const DEFAULT_USER_AGENT = 'pullpin'
const NOT_FOUND_CODES = new Set(['MANIFEST_UNKNOWN', 'NAME_UNKNOWN'])
const HASHES: Readonly<Record<string, string>> = { sha256: 'sha256', sha384: 'sha384', sha512: 'sha512' }

interface HostState {
  endpoint: RegistryEndpoint
  transport: RegistryTransport
  caPem: string | undefined
  maxConcurrency: number
  /** The pinning.registries entry that allowed this registry (metrics label). */
  allowlistEntry: string
  /** Authentication over this host's transport (the scheme it learned survives a new pool). */
  auth: AuthSession
}

export class RegistryClient {
  readonly #opts: RegistryClientOptions
  readonly #hosts: LRUCache<string, HostState>
  readonly #auth: RegistryAuth

  constructor (opts: RegistryClientOptions) {
    this.#opts = opts
    this.#hosts = new LRUCache<string, HostState>({
      max: Math.max(1, Math.floor(opts.maxHosts ?? MAX_REGISTRY_HOSTS)),
      // Evicted or replaced (new CA or limit): the pool closes once the requests it has are done.
      dispose: (state) => state.transport.retire()
    })
    this.#auth = new RegistryAuth({
      credentials: (image) => opts.credentials(image),
      tokenRealmHosts: (registry) => opts.hostOptions(registry).tokenRealmHosts,
      ...(opts.clock === undefined ? {} : { clock: opts.clock })
    })
  }

  /** HEAD /v2/<name>/manifests/<reference>; reference = tag or digest. */
  async headManifest (ref: RepositoryRef, reference: string, signal?: AbortSignal): Promise<ManifestInfo> {
    const host = this.#host(ref)
    const url = manifestUrl(host.endpoint, ref.repository, reference)
    const what = `${ref.repository}${reference.includes(':') ? '@' : ':'}${reference}`
    const res = await this.#send(host, ref, { op: 'manifest', method: 'HEAD', url, headers: { accept: MANIFEST_ACCEPT }, maxBodyBytes: 0 }, signal)
    if (res.status !== 200) throw this.#statusError(ref.registry, res, what)
    const digest = headerValue(res.headers, 'docker-content-digest')
    if (digest === undefined) return this.#getManifest(host, ref, url, reference, what, signal)
    if (!isValidDigest(digest)) throw new ERR_REGISTRY_BAD_RESPONSE(ref.registry, `malformed Docker-Content-Digest for ${what}`)
    checkRequestedDigest(ref.registry, reference, digest, `the registry reported ${digest}`)
    const size = Number(headerValue(res.headers, 'content-length'))
    return { digest, mediaType: mediaTypeOf(res.headers), ...(Number.isSafeInteger(size) && size >= 0 ? { size } : {}) }
  }

  /** GET /v2/<name>/tags/list following Link paging (n=1000). Tags in the registry's order, each once. */
  async listTags (ref: RepositoryRef, signal?: AbortSignal): Promise<string[]> {
    const host = this.#host(ref)
    const tags = new Set<string>()
    const visited = new Set<string>()
    let url: URL | undefined = tagsListUrl(host.endpoint, ref.repository, this.#opts.tagsPageSize ?? TAGS_PAGE_SIZE)
    while (url !== undefined) {
      if (visited.has(url.href)) throw new ERR_REGISTRY_BAD_RESPONSE(ref.registry, `tag list paging loops back to ${url.pathname}${url.search}`)
      if (visited.size >= MAX_TAG_PAGES) throw new ERR_REGISTRY_BAD_RESPONSE(ref.registry, `tag list of ${ref.repository} has more than ${MAX_TAG_PAGES} pages`)
      visited.add(url.href)
      const res = await this.#send(host, ref, { op: 'tags', method: 'GET', url, headers: { accept: 'application/json' }, maxBodyBytes: MAX_TAGS_PAGE_BYTES }, signal)
      if (res.status !== 200) throw this.#statusError(ref.registry, res, ref.repository)
      for (const tag of parseTagsPage(ref.registry, res.body)) tags.add(tag)
      url = nextPageUrl(ref.registry, res.headers.link, url)
    }
    return [...tags]
  }

  /** Registries with state right now (at most maxHosts). */
  get hostCount (): number { return this.#hosts.size }

  /** Closes every connection and forgets cached tokens. */
  close (): Promise<void> {
    for (const h of this.#hosts.values()) h.transport.close()
    this.#hosts.clear()
    this.#auth.clear()
    return Promise.resolve()
  }

  // ---- hosts ----

  #host (ref: RepositoryRef): HostState {
    const { registry } = ref
    // Before anything else, and at every call: a configuration reload applies at once.
    if (!this.#opts.isAllowed(registry, ref.repository)) throw new ERR_REGISTRY_NOT_ALLOWED(registry)
    const options = this.#opts.hostOptions(registry)
    const existing = this.#hosts.get(registry)
    const maxConcurrency = Math.max(1, Math.floor(options.maxConcurrency))
    if (existing !== undefined && existing.caPem === options.caPem && existing.maxConcurrency === maxConcurrency) return existing
    // New CA or limit: new pool (the LRU's dispose retires the old one when it is replaced).
    const allowlistEntry = this.#opts.allowlistEntry?.(registry) ?? registry
    const onEvent = this.#opts.onEvent
    const transport = new RegistryTransport({
      registry,
      ...(options.caPem === undefined ? {} : { caPem: options.caPem }),
      maxConcurrency,
      allowPrivate: () => this.#opts.isPrivateAllowed(registry),
      ...(this.#opts.lookup === undefined ? {} : { lookup: this.#opts.lookup }),
      userAgent: this.#opts.userAgent ?? DEFAULT_USER_AGENT,
      ...(onEvent === undefined ? {} : { onEvent: (e: RegistryEvent) => onEvent({ ...e, allowlistEntry }) })
    })
    const endpoint = resolveEndpoint(registry)
    const state: HostState = {
      endpoint,
      transport,
      caPem: options.caPem,
      maxConcurrency,
      allowlistEntry,
      auth: this.#auth.session(endpoint, transport, existing?.auth)
    }
    this.#hosts.set(registry, state)
    return state
  }

  #policy (registry: string): RequestPolicy {
    const o = this.#opts.hostOptions(registry)
    return { timeoutMs: o.timeoutMs, retries: Math.max(0, Math.floor(o.retries)) }
  }

  /** `req` through the registry's auth session, with this registry's timeout and retries. */
  #send (host: HostState, ref: RepositoryRef, req: HttpRequest, signal: AbortSignal | undefined): Promise<HttpResponse> {
    return host.auth.send(ref, req, this.#policy(ref.registry), signal)
  }

  // ---- manifests ----

  /** GET fallback for registries whose HEAD carries no Docker-Content-Digest: hash the exact bytes. */
  async #getManifest (host: HostState, ref: RepositoryRef, url: URL, reference: string, what: string, signal: AbortSignal | undefined): Promise<ManifestInfo> {
    const res = await this.#send(host, ref, { op: 'manifest', method: 'GET', url, headers: { accept: MANIFEST_ACCEPT }, maxBodyBytes: MAX_MANIFEST_BYTES }, signal)
    if (res.status !== 200) throw this.#statusError(ref.registry, res, what)
    const header = headerValue(res.headers, 'docker-content-digest')
    let digest: string
    if (header !== undefined) {
      if (!isValidDigest(header)) throw new ERR_REGISTRY_BAD_RESPONSE(ref.registry, `malformed Docker-Content-Digest for ${what}`)
      const actual = digestOf(header.slice(0, header.indexOf(':')), res.body)
      if (actual !== header) throw new ERR_DIGEST_MISMATCH(ref.registry, header, `the ${res.body.length} bytes of ${what} hash to ${actual}`)
      digest = header
    } else {
      digest = digestOf('sha256', res.body)
    }
    if (isValidDigest(reference)) {
      const actual = digestOf(reference.slice(0, reference.indexOf(':')), res.body)
      if (actual !== reference) throw new ERR_DIGEST_MISMATCH(ref.registry, reference, `the registry served bytes hashing to ${actual}`)
    }
    return { digest, mediaType: mediaTypeOf(res.headers) || mediaTypeInBody(res.body), size: res.body.length }
  }

  #statusError (registry: string, res: HttpResponse, what: string): Error {
    const codes = errorCodes(res.body)
    if (res.status === 404 || codes.some((c) => NOT_FOUND_CODES.has(c))) return new ERR_REGISTRY_NOT_FOUND(what, registry)
    const path = `${res.url.pathname}`
    const detail = codes.length > 0 ? ` (${codes.join(', ')})` : ''
    if (res.status >= 300 && res.status < 400) {
      return new ERR_REGISTRY_BAD_RESPONSE(registry, `unexpected redirect (HTTP ${res.status}) for ${path}; redirects are not followed`)
    }
    return new ERR_REGISTRY_BAD_RESPONSE(registry, `HTTP ${res.status} for ${path}${detail}`)
  }
}

// ---- helpers ----

function headerValue (headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name]
  const s = (Array.isArray(v) ? v[0] : v)?.trim()
  return s === undefined || s === '' ? undefined : s
}

function mediaTypeOf (headers: IncomingHttpHeaders): string {
  return (headerValue(headers, 'content-type') ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
}

function mediaTypeInBody (body: Buffer): string {
  try {
    const m = (JSON.parse(body.toString('utf8')) as { mediaType?: unknown }).mediaType
    return typeof m === 'string' ? m : ''
  } catch {
    return ''
  }
}

function digestOf (algorithm: string, bytes: Buffer): string {
  const hash = HASHES[algorithm]
  if (hash === undefined) return `${algorithm}:unsupported`
  return `${algorithm}:${createHash(hash).update(bytes).digest('hex')}`
}

/** For a digest reference, the registry must answer about that very digest. */
function checkRequestedDigest (registry: string, reference: string, digest: string, detail: string): void {
  if (!isValidDigest(reference)) return
  const sameAlgorithm = reference.slice(0, reference.indexOf(':')) === digest.slice(0, digest.indexOf(':'))
  if (sameAlgorithm && reference !== digest) throw new ERR_DIGEST_MISMATCH(registry, reference, detail)
}

/** distribution-spec error body: {"errors":[{"code":"…","message":"…"}]}. */
function errorCodes (body: Buffer): string[] {
  if (body.length === 0) return []
  try {
    const errors = (JSON.parse(body.toString('utf8')) as { errors?: unknown }).errors
    if (!Array.isArray(errors)) return []
    return errors.map((e) => (e as { code?: unknown } | null)?.code).filter((c): c is string => typeof c === 'string' && /^[A-Z_]{1,64}$/.test(c))
  } catch {
    return []
  }
}

function parseTagsPage (registry: string, body: Buffer): string[] {
  let json: unknown
  try {
    json = JSON.parse(body.toString('utf8'))
  } catch {
    throw new ERR_REGISTRY_BAD_RESPONSE(registry, 'tag list is not JSON')
  }
  if (typeof json !== 'object' || json === null) throw new ERR_REGISTRY_BAD_RESPONSE(registry, 'tag list is not a JSON object')
  const tags = (json as { tags?: unknown }).tags
  // distribution answers "tags": null for a repository whose tags were all deleted.
  if (tags === null || tags === undefined) return []
  if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) {
    throw new ERR_REGISTRY_BAD_RESPONSE(registry, '"tags" is not a list of strings')
  }
  return tags
}

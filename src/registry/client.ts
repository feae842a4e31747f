// pullpin's OCI registry client: the two read operations the tag cache needs, over the layers
// endpoint (where, which URLs) → auth session (challenge, token) → transport (connections, limits,
// retries), as go-containerregistry's `remote` sits on its `transport`.
//
//  - headManifest: HEAD /v2/<name>/manifests/<reference> (OCI distribution-spec "Pulling
//    manifests"; HEAD because Docker Hub counts manifest GETs as pulls). The Accept header
//    lists the index types first, so a multi-arch tag answers with its index and pullpin pins
//    the index digest, never one platform's. Without Docker-Content-Digest the manifest is
//    fetched and hashed; a GET whose header disagrees with its bytes is ERR_DIGEST_MISMATCH.
//  - getManifest: GET of the same URL, the document parsed to what pullpin reads (annotations,
//    the config descriptor of an image, the platform entries of an index), bytes verified.
//  - getConfig: GET /v2/<name>/blobs/<digest> ("Pulling blobs") for an image's config, bytes
//    verified against the digest. Registries answer blob GETs with a redirect to storage
//    (GHCR, Docker Hub, ECR: a signed URL on another host), which is followed without
//    credentials and through the same address guard.
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
import { blobUrl, manifestUrl, nextPageUrl, resolveEndpoint, tagsListUrl, type RegistryEndpoint } from './endpoint.js'
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

export interface Platform {
  readonly os: string
  readonly architecture: string
  readonly variant?: string
}

/** An OCI descriptor (image-spec descriptor.md), reduced to what pullpin reads. */
export interface Descriptor {
  readonly digest: string
  readonly mediaType: string
  readonly size?: number
  /** Entries of an index: the platform the manifest is for. */
  readonly platform?: Platform
  readonly annotations: Readonly<Record<string, string>>
}

/** A manifest or index as pullpin reads it; immutable for its digest. */
export interface ManifestDocument extends ManifestInfo {
  readonly kind: 'index' | 'image'
  /** The manifest's or index's own annotations (image-spec annotations.md). */
  readonly annotations: Readonly<Record<string, string>>
  /** Image manifests: the config blob. */
  readonly config?: Descriptor
  /** Indexes: the platform manifests ([] for an image manifest). */
  readonly manifests: readonly Descriptor[]
}

/** An image's config blob (image-spec config.md), reduced to what pullpin reads. */
export interface ImageConfig {
  readonly os?: string
  readonly architecture?: string
  readonly variant?: string
  /** config.Labels */
  readonly labels: Readonly<Record<string, string>>
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
   * registry.hosts globs; anything else → ERR_REGISTRY_NOT_ALLOWED, no connection made. Asked
   * with the repository too, since an entry may have a path ("registry.example.com/team").
   */
  isAllowed (registry: string, repository: string): boolean
  /**
   * The registry.hosts entry (glob) that allowed `registry`, put in every event as
   * `allowlistEntry`: metrics are labelled by it, so a wildcard entry is one series however many
   * hosts pods name under it (default: the registry itself).
   */
  allowlistEntry? (registry: string): string
  /** registry.allowPrivate */
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
 * on registry.hosts (`*.pkg.dev`, an ECR pattern) pod authors choose the hosts, so the state is
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
/** Config blobs carry the build history too; beyond this one is not read. */
const MAX_CONFIG_BYTES = 8 * 1024 * 1024
/** Blob redirects followed (storage → signed URL is one hop; a few more tolerate CDNs). */
const MAX_BLOB_REDIRECTS = 3
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308])
const INDEX_MEDIA_TYPES = new Set<string>([MANIFEST_MEDIA_TYPES[0], MANIFEST_MEDIA_TYPES[1]])
const IMAGE_MEDIA_TYPES = new Set<string>([MANIFEST_MEDIA_TYPES[2], MANIFEST_MEDIA_TYPES[3]])
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
  /** The registry.hosts entry that allowed this registry (metrics label). */
  allowlistEntry: string
  /** Authentication over this host's transport (the scheme it learned survives a new pool). */
  auth: AuthSession
}

export class RegistryClient {
  readonly #opts: RegistryClientOptions
  readonly #hosts: LRUCache<string, HostState>
  readonly #auth: RegistryAuth
  /** Transports to the storage hosts blob GETs are redirected to, per (registry, origin). */
  readonly #storage: LRUCache<string, RegistryTransport>

  constructor (opts: RegistryClientOptions) {
    this.#opts = opts
    this.#hosts = new LRUCache<string, HostState>({
      max: Math.max(1, Math.floor(opts.maxHosts ?? MAX_REGISTRY_HOSTS)),
      // Evicted or replaced (new CA or limit): the pool closes once the requests it has are done.
      dispose: (state) => state.transport.retire()
    })
    this.#storage = new LRUCache<string, RegistryTransport>({
      max: Math.max(1, Math.floor(opts.maxHosts ?? MAX_REGISTRY_HOSTS)),
      dispose: (transport) => transport.retire()
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

  /** GET /v2/<name>/manifests/<reference>, parsed; the bytes are checked against a digest reference and the registry's digest header. */
  async getManifest (ref: RepositoryRef, reference: string, signal?: AbortSignal): Promise<ManifestDocument> {
    const host = this.#host(ref)
    const url = manifestUrl(host.endpoint, ref.repository, reference)
    const what = `${ref.repository}${reference.includes(':') ? '@' : ':'}${reference}`
    const { info, body } = await this.#fetchManifest(host, ref, url, reference, what, signal)
    return parseManifest(ref.registry, what, info, body)
  }

  /** GET /v2/<name>/blobs/<digest> of an image config, following storage redirects; the bytes must hash to `digest`. */
  async getConfig (ref: RepositoryRef, digest: string, signal?: AbortSignal): Promise<ImageConfig> {
    const host = this.#host(ref)
    let url = blobUrl(host.endpoint, ref.repository, digest)
    const what = `${ref.repository}@${digest}`
    let res = await this.#send(host, ref, { op: 'blob', method: 'GET', url, headers: {}, maxBodyBytes: MAX_CONFIG_BYTES }, signal)
    for (let hops = 0; REDIRECT_STATUSES.has(res.status); hops++) {
      if (hops >= MAX_BLOB_REDIRECTS) throw new ERR_REGISTRY_BAD_RESPONSE(ref.registry, `more than ${MAX_BLOB_REDIRECTS} redirects for ${what}`)
      url = redirectTarget(ref.registry, res, url)
      // The signed URL carries its own authorisation: the registry's credentials never leave for
      // another host (as Docker and containerd do).
      res = url.origin === host.endpoint.origin
        ? await this.#send(host, ref, { op: 'blob', method: 'GET', url, headers: {}, maxBodyBytes: MAX_CONFIG_BYTES }, signal)
        : await this.#storageTransport(ref.registry, url).send({ op: 'blob', method: 'GET', url, headers: {}, maxBodyBytes: MAX_CONFIG_BYTES }, this.#policy(ref.registry), signal)
    }
    if (res.status !== 200) throw this.#statusError(ref.registry, res, what)
    const actual = digestOf(digest.slice(0, digest.indexOf(':')), res.body)
    if (actual !== digest) throw new ERR_DIGEST_MISMATCH(ref.registry, digest, `the ${res.body.length} bytes of ${what} hash to ${actual}`)
    return parseConfig(ref.registry, what, res.body)
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
    for (const t of this.#storage.values()) t.close()
    this.#storage.clear()
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

  /** A pool to a blob storage host, with the registry's CA, limit and address rule. */
  #storageTransport (registry: string, url: URL): RegistryTransport {
    const key = `${registry} ${url.origin}`
    const existing = this.#storage.get(key)
    if (existing !== undefined) return existing
    const options = this.#opts.hostOptions(registry)
    const onEvent = this.#opts.onEvent
    const allowlistEntry = this.#opts.allowlistEntry?.(registry) ?? registry
    const transport = new RegistryTransport({
      registry: url.host,
      ...(options.caPem === undefined ? {} : { caPem: options.caPem }),
      maxConcurrency: Math.max(1, Math.floor(options.maxConcurrency)),
      allowPrivate: () => this.#opts.isPrivateAllowed(registry),
      ...(this.#opts.lookup === undefined ? {} : { lookup: this.#opts.lookup }),
      userAgent: this.#opts.userAgent ?? DEFAULT_USER_AGENT,
      ...(onEvent === undefined ? {} : { onEvent: (e: RegistryEvent) => onEvent({ ...e, allowlistEntry }) })
    })
    this.#storage.set(key, transport)
    return transport
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
    return (await this.#fetchManifest(host, ref, url, reference, what, signal)).info
  }

  async #fetchManifest (host: HostState, ref: RepositoryRef, url: URL, reference: string, what: string, signal: AbortSignal | undefined): Promise<{ info: ManifestInfo, body: Buffer }> {
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
      digest = reference
    }
    return { info: { digest, mediaType: mediaTypeOf(res.headers) || mediaTypeInBody(res.body), size: res.body.length }, body: res.body }
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

/** The Location of a redirect, resolved against the request; https only (the transport refuses anything else). */
function redirectTarget (registry: string, res: HttpResponse, from: URL): URL {
  const location = headerValue(res.headers, 'location')
  if (location === undefined) throw new ERR_REGISTRY_BAD_RESPONSE(registry, `HTTP ${res.status} without Location for ${from.pathname}`)
  let url: URL
  try {
    url = new URL(location, from)
  } catch {
    throw new ERR_REGISTRY_BAD_RESPONSE(registry, `unusable redirect Location for ${from.pathname}`)
  }
  if (url.protocol !== 'https:') throw new ERR_REGISTRY_BAD_RESPONSE(registry, `redirect to a non-https URL (${url.protocol}) for ${from.pathname}`)
  if (url.username !== '' || url.password !== '') throw new ERR_REGISTRY_BAD_RESPONSE(registry, `redirect to a URL with credentials for ${from.pathname}`)
  return url
}

function parseJsonObject (registry: string, what: string, body: Buffer): Record<string, unknown> {
  let json: unknown
  try {
    json = JSON.parse(body.toString('utf8'))
  } catch {
    throw new ERR_REGISTRY_BAD_RESPONSE(registry, `${what} is not JSON`)
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ERR_REGISTRY_BAD_RESPONSE(registry, `${what} is not a JSON object`)
  return json as Record<string, unknown>
}

/** String-valued entries only: annotations and labels are string maps (image-spec annotations.md). */
function stringMap (value: unknown): Readonly<Record<string, string>> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return EMPTY
  // A null-prototype copy: keys such as "__proto__" stay plain data.
  const out: Record<string, string> = Object.create(null) as Record<string, string>
  let any = false
  for (const [k, v] of Object.entries(value)) {
    if (typeof v === 'string') { out[k] = v; any = true }
  }
  return any ? out : EMPTY
}

const EMPTY: Readonly<Record<string, string>> = Object.freeze(Object.create(null) as Record<string, string>)

function optionalString (value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}

function parseDescriptor (registry: string, what: string, value: unknown): Descriptor {
  if (typeof value !== 'object' || value === null) throw new ERR_REGISTRY_BAD_RESPONSE(registry, `${what} has a descriptor that is not an object`)
  const d = value as Record<string, unknown>
  const digest = d.digest
  if (typeof digest !== 'string' || !isValidDigest(digest)) throw new ERR_REGISTRY_BAD_RESPONSE(registry, `${what} has a descriptor without a valid digest`)
  const size = d.size
  const p = d.platform
  let platform: Platform | undefined
  if (typeof p === 'object' && p !== null) {
    const os = optionalString((p as Record<string, unknown>).os)
    const architecture = optionalString((p as Record<string, unknown>).architecture)
    const variant = optionalString((p as Record<string, unknown>).variant)
    if (os !== undefined && architecture !== undefined) platform = { os, architecture, ...(variant === undefined ? {} : { variant }) }
  }
  return {
    digest,
    mediaType: optionalString(d.mediaType) ?? '',
    ...(typeof size === 'number' && Number.isSafeInteger(size) && size >= 0 ? { size } : {}),
    ...(platform === undefined ? {} : { platform }),
    annotations: stringMap(d.annotations)
  }
}

/** image-spec manifest.md and image-index.md (and their Docker v2 counterparts). */
function parseManifest (registry: string, what: string, info: ManifestInfo, body: Buffer): ManifestDocument {
  const doc = parseJsonObject(registry, `manifest ${what}`, body)
  const mediaType = info.mediaType !== '' ? info.mediaType : optionalString(doc.mediaType) ?? ''
  const isIndex = INDEX_MEDIA_TYPES.has(mediaType) || (mediaType === '' && Array.isArray(doc.manifests))
  const isImage = IMAGE_MEDIA_TYPES.has(mediaType) || (mediaType === '' && typeof doc.config === 'object' && doc.config !== null)
  if (!isIndex && !isImage) {
    throw new ERR_REGISTRY_BAD_RESPONSE(registry, `manifest ${what} has media type ${mediaType === '' ? '(none)' : mediaType}, not an OCI or Docker v2 image or index`)
  }
  const base = { digest: info.digest, mediaType, ...(info.size === undefined ? {} : { size: info.size }), annotations: stringMap(doc.annotations) }
  if (isIndex) {
    const entries = Array.isArray(doc.manifests) ? doc.manifests : []
    return { ...base, kind: 'index', manifests: entries.map((e) => parseDescriptor(registry, `index ${what}`, e)) }
  }
  return { ...base, kind: 'image', config: parseDescriptor(registry, `manifest ${what}`, doc.config), manifests: [] }
}

/** image-spec config.md: os, architecture, variant and config.Labels. */
function parseConfig (registry: string, what: string, body: Buffer): ImageConfig {
  const doc = parseJsonObject(registry, `config ${what}`, body)
  const os = optionalString(doc.os)
  const architecture = optionalString(doc.architecture)
  const variant = optionalString(doc.variant)
  const config = doc.config
  const labels = typeof config === 'object' && config !== null ? stringMap((config as Record<string, unknown>).Labels) : EMPTY
  return {
    ...(os === undefined ? {} : { os }),
    ...(architecture === undefined ? {} : { architecture }),
    ...(variant === undefined ? {} : { variant }),
    labels
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

// Where a registry is reached and which URLs pullpin may follow there: the endpoint of a
// registry name, the distribution API URLs (OCI distribution-spec "Pulling manifests" and
// "Content discovery / Listing tags"), RFC 8288 `Link: <…>; rel="next"` paging, and the rule for
// which token realms may receive a registry's credentials.
//
// Only https: the distribution spec allows plain http, but pullpin sends pull credentials, and
// a webhook that talks http to whatever host a Pod spec names is an easy credential leak.
import { isIP } from 'node:net'
import { ERR_REFERENCE_INVALID, ERR_REGISTRY_BAD_RESPONSE, ERR_REGISTRY_REALM_REFUSED } from '../errors.js'
import { isValidDigest, isValidTag } from '../reference/parse.js'
import { HeaderScanner } from './challenge.js'
import { unbracket } from './address-guard.js'

/** Docker Hub's name in image references, and the hosts that serve it. */
export const DOCKER_HUB = 'docker.io'
// docker/cli and containerd resolve "docker.io" (and the legacy "index.docker.io") to this API host.
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io'
// Docker Hub's 401 names https://auth.docker.io/token as its realm; that host is always allowed
// for Docker Hub, on top of the configured tokenRealmHosts.
const BUILTIN_REALM_HOSTS: Readonly<Record<string, readonly string[]>> = {
  [DOCKER_HUB]: ['auth.docker.io']
}

export interface RegistryEndpoint {
  /** The registry as named in image references ("docker.io", "127.0.0.1:5443"). */
  registry: string
  /** "https://registry-1.docker.io", "https://127.0.0.1:5443" */
  origin: string
  /** URL.hostname of the origin, brackets removed for IPv6 ("registry-1.docker.io", "::1"). */
  hostname: string
  /** Host names that count as the registry's own for token realms. */
  ownHostnames: readonly string[]
  /** Realm hosts allowed for this registry without configuration (Docker Hub's auth.docker.io). */
  builtinRealmHosts: readonly string[]
}

// distribution/reference regexp.go: path components of a repository name.
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*'
const REPOSITORY_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`)
const REPOSITORY_MAX = 255

// host[:port] as in distribution/reference (domain name, IPv4, or bracketed IPv6), lowercase.
const REGISTRY_RE = /^(?:\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*)(?::(\d{1,5}))?$/

/** Throws ERR_REFERENCE_INVALID unless `registry` is a bare host[:port]. */
export function resolveEndpoint (registry: string): RegistryEndpoint {
  const lower = registry.toLowerCase()
  const m = REGISTRY_RE.exec(lower)
  let url: URL | undefined
  if (m !== null && Number(m[1] ?? 443) <= 65535) {
    try {
      url = new URL(`https://${lower}/`)
    } catch {
      url = undefined
    }
  }
  if (url === undefined) throw new ERR_REFERENCE_INVALID(registry, 'registry must be host[:port]')
  const isHub = lower === DOCKER_HUB || lower === 'index.docker.io' || lower === DOCKER_HUB_API_HOST
  const origin = isHub ? `https://${DOCKER_HUB_API_HOST}` : url.origin
  const hostname = isHub ? DOCKER_HUB_API_HOST : unbracket(url.hostname)
  const ownHostnames = isHub ? [DOCKER_HUB, 'index.docker.io', DOCKER_HUB_API_HOST] : [hostname]
  return { registry, origin, hostname, ownHostnames, builtinRealmHosts: BUILTIN_REALM_HOSTS[isHub ? DOCKER_HUB : ''] ?? [] }
}

/** Throws ERR_REFERENCE_INVALID unless `repository` is a valid repository path. */
export function assertRepository (registry: string, repository: string): void {
  if (repository.length > REPOSITORY_MAX || !REPOSITORY_RE.test(repository)) {
    throw new ERR_REFERENCE_INVALID(`${registry}/${repository}`, 'invalid repository name')
  }
}

/** `/v2/<name>/manifests/<reference>`; reference is a tag or a digest (validated: it goes in a path). */
export function manifestUrl (ep: RegistryEndpoint, repository: string, reference: string): URL {
  assertRepository(ep.registry, repository)
  if (!isValidTag(reference) && !isValidDigest(reference)) {
    throw new ERR_REFERENCE_INVALID(`${ep.registry}/${repository}:${reference}`, 'reference must be a tag or a digest')
  }
  return new URL(`${ep.origin}/v2/${repository}/manifests/${reference}`)
}

/** `/v2/<name>/blobs/<digest>` (distribution-spec: "Pulling blobs"). */
export function blobUrl (ep: RegistryEndpoint, repository: string, digest: string): URL {
  assertRepository(ep.registry, repository)
  if (!isValidDigest(digest)) throw new ERR_REFERENCE_INVALID(`${ep.registry}/${repository}@${digest}`, 'a blob is named by its digest')
  return new URL(`${ep.origin}/v2/${repository}/blobs/${digest}`)
}

/** `/v2/<name>/tags/list?n=<pageSize>` (distribution-spec: "Listing Tags", the `n` parameter). */
export function tagsListUrl (ep: RegistryEndpoint, repository: string, pageSize: number): URL {
  assertRepository(ep.registry, repository)
  return new URL(`${ep.origin}/v2/${repository}/tags/list?n=${pageSize}`)
}

export interface LinkValue {
  /** The target as written between < and >. */
  target: string
  /** Parameters by lowercased name. */
  params: Readonly<Record<string, string>>
}

/**
 * RFC 8288 §3: `Link = #link-value`, `link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param )`,
 * `link-param = token BWS [ "=" BWS ( token / quoted-string ) ]`. The target may hold "," and ";".
 */
export function parseLinkHeader (header: string | readonly string[] | undefined): LinkValue[] {
  if (header === undefined) return []
  const s = new HeaderScanner(typeof header === 'string' ? header : header.join(', '))
  const out: LinkValue[] = []
  for (;;) {
    s.skipListSeparators()
    if (s.done) break
    if (s.peek() !== '<') { s.skipElement(); continue }
    const close = s.text.indexOf('>', s.pos)
    if (close < 0) break
    const target = s.text.slice(s.pos + 1, close).trim()
    s.pos = close + 1
    const params: Record<string, string> = Object.create(null) as Record<string, string>
    for (;;) {
      s.skipSpace()
      if (s.peek() !== ';') break
      s.pos++
      s.skipSpace()
      const name = s.token().toLowerCase()
      if (name === '') break
      s.skipSpace()
      let value = ''
      if (s.peek() === '=') {
        s.pos++
        s.skipSpace()
        value = s.value() ?? ''
      }
      // RFC 8288 §3.3: a rel parameter that occurs more than once is ignored after the first.
      if (!(name in params)) params[name] = value
    }
    out.push({ target, params })
    s.skipElement()
  }
  return out
}

/**
 * The next page of a paged listing: the target of the link whose rel includes "next" (rel holds
 * space-separated, case-insensitive relation types), resolved against the URL of the request
 * that returned it. A next page on another origin is refused with ERR_REGISTRY_BAD_RESPONSE:
 * it would receive the registry's Authorization header.
 */
export function nextPageUrl (registry: string, header: string | readonly string[] | undefined, requestUrl: URL): URL | undefined {
  const next = parseLinkHeader(header).find((l) => (l.params.rel ?? '').toLowerCase().split(/\s+/).includes('next'))
  if (next === undefined) return undefined
  let url: URL
  try {
    url = new URL(next.target, requestUrl)
  } catch {
    throw new ERR_REGISTRY_BAD_RESPONSE(registry, 'unparsable Link rel="next" target')
  }
  if (url.origin !== requestUrl.origin) {
    throw new ERR_REGISTRY_BAD_RESPONSE(registry, `Link rel="next" points to another origin (${url.origin}); refusing to send credentials there`)
  }
  return url
}

/**
 * Checks a Bearer realm before anything is sent to it. It must be an https URL without userinfo,
 * on the registry's own host name or on one of `extraHosts` (case-insensitive; "host" matches any
 * port, "host:port" only that port). Returns the parsed realm; throws ERR_REGISTRY_REALM_REFUSED.
 */
export function checkRealm (ep: RegistryEndpoint, realm: string, extraHosts: readonly string[]): URL {
  let url: URL
  try {
    url = new URL(realm)
  } catch {
    throw new ERR_REGISTRY_REALM_REFUSED(JSON.stringify(realm.slice(0, 200)), ep.registry, 'not a URL')
  }
  // Shown without query or userinfo: the registry chose this string, keep the message plain.
  const shown = `${url.protocol}//${url.host}${url.pathname}`
  if (url.protocol !== 'https:') {
    throw new ERR_REGISTRY_REALM_REFUSED(shown, ep.registry, 'only https realms receive credentials')
  }
  if (url.username !== '' || url.password !== '') {
    throw new ERR_REGISTRY_REALM_REFUSED(shown, ep.registry, 'realm URL carries userinfo')
  }
  const hostname = unbracket(url.hostname).toLowerCase()
  const host = url.host.toLowerCase()
  const allowed = [...ep.ownHostnames, ...ep.builtinRealmHosts, ...extraHosts].map((h) => h.toLowerCase())
  const ok = allowed.some((a) => {
    if (a === host) return true
    // "host" without a port (or a bare IPv6 address) matches the host name on any port.
    const hasPort = /:\d+$/.test(a) && (a.startsWith('[') || isIP(a) !== 6)
    return !hasPort && unbracket(a) === hostname
  })
  if (!ok) {
    throw new ERR_REGISTRY_REALM_REFUSED(shown, ep.registry,
      `realm host ${url.hostname} is neither the registry's host nor listed in its tokenRealmHosts`)
  }
  return url
}

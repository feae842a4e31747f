// `pullpin doctor IMAGE`: the registry-auth troubleshooting guide (docs/registry-auth.md) as
// checks, in the order a pull goes: reference → DNS and TCP → TLS → the /v2/ challenge → which
// credential applies → a token for the repository scope → the tag or digest → platforms → the
// SHA tag pullpin would pin. Each check says what it found and, when it fails, what to change.
// A failed step skips the steps that need it. The registry steps use pullpin's own pieces
// (endpoint, address guard, challenge parser, realm check, token request, registry client and
// tag cache), so doctor and the webhook cannot disagree about what they see.
import { connect as netConnect } from 'node:net'
import { checkServerIdentity, connect as tlsConnect, rootCertificates, type PeerCertificate } from 'node:tls'
import { isCodedError } from '../errors.js'
import { classifyAddress } from '../registry/address-guard.js'
import { pickScheme, type AuthScheme } from '../registry/auth-session.js'
import { checkRealm, manifestUrl, resolveEndpoint, type RegistryEndpoint } from '../registry/endpoint.js'
import type { RegistryCredential } from '../registry/keyring.js'
import { basicAuthorization, parseTokenResponse, tokenRequest } from '../registry/token.js'
import type { HttpResponse, RegistryTransport, RequestPolicy } from '../registry/transport.js'
import { MANIFEST_MEDIA_TYPES, type Platform, type RegistryClient } from '../registry/client.js'
import type { TagCache } from '../cache/tag-cache.js'
import { formatImageReference, tryParseImageReference, type ImageReference } from '../reference/parse.js'

export type CheckStatus = 'pass' | 'fail' | 'skip'

export interface DoctorCheck {
  readonly id: string
  readonly title: string
  readonly status: CheckStatus
  readonly detail: string
  readonly fix?: string
}

export interface RegistryDoctorDeps {
  /** All addresses of a host name (dns.lookup with all: true by default). */
  readonly lookup: (hostname: string) => Promise<Array<{ address: string, family: number }>>
  /** Whether registry.hosts allows the registry, and whether its private addresses are allowed. */
  readonly allowed: (registry: string) => boolean
  readonly privateAllowed: (registry: string) => boolean
  /** The registry's extra CA (registryOptions.<host>.caFile or --ca-file), PEM. */
  readonly caPem: (registry: string) => string | undefined
  readonly tokenRealmHosts: (registry: string) => readonly string[]
  readonly credentials: (ref: ImageReference) => RegistryCredential[]
  /** A raw transport to the registry (address guard, CA), for the challenge and token steps. */
  readonly transport: (registry: string) => RegistryTransport
  readonly client: RegistryClient
  readonly cache: TagCache
  readonly policy: RequestPolicy
  /** "os/architecture[/variant]" the pod needs; undefined: any platform will do. */
  readonly platform?: string
  readonly format: 'tag' | 'digest' | 'tag+digest'
}

const pass = (id: string, title: string, detail: string): DoctorCheck => ({ id, title, status: 'pass', detail })
const fail = (id: string, title: string, detail: string, fix: string): DoctorCheck => ({ id, title, status: 'fail', detail, fix })
const skip = (id: string, title: string, detail = 'skipped: an earlier check failed'): DoctorCheck => ({ id, title, status: 'skip', detail })

export const REGISTRY_CHECKS = [
  ['reference', 'reference is valid and lowercase'],
  ['allowlist', 'registry allowed for lookups'],
  ['dns', 'DNS resolves the registry'],
  ['tcp', 'TCP connection'],
  ['tls', 'TLS certificate trusted'],
  ['challenge', '/v2/ challenge'],
  ['credential', 'credential that applies'],
  ['token', 'access to the repository'],
  ['exists', 'tag or digest exists'],
  ['platforms', 'platforms'],
  ['pin', 'SHA tag to pin to'],
] as const

export type RegistryCheckId = typeof REGISTRY_CHECKS[number][0]
const TITLE = Object.fromEntries(REGISTRY_CHECKS) as Record<RegistryCheckId, string>

export async function registryLadder (image: string, depsFor: (ref: ImageReference) => RegistryDoctorDeps): Promise<DoctorCheck[]> {
  const out: DoctorCheck[] = []
  const rest = (from: RegistryCheckId, detail?: string): DoctorCheck[] => {
    const i = REGISTRY_CHECKS.findIndex(([id]) => id === from)
    for (const [id, title] of REGISTRY_CHECKS.slice(i)) out.push(skip(id, title, detail))
    return out
  }

  // 1. reference
  const parsed = tryParseImageReference(image)
  if (!parsed.ok) {
    const lower = parsed.reason.includes('lowercase')
    out.push(fail('reference', TITLE.reference, parsed.message, lower ? parsed.reason.replace(/^.*?: try /, 'use ') : 'write the image as [registry/]repository[:tag][@digest]'))
    return rest('allowlist')
  }
  const ref = parsed.ref
  const deps = depsFor(ref)
  const reference = ref.digest ?? ref.tag ?? 'latest'
  out.push(pass('reference', TITLE.reference, `${ref.registry} / ${ref.repository} ${ref.digest !== undefined ? '@' : ':'}${reference}`))

  // 2. the webhook contacts only registries on registry.hosts
  out.push(deps.allowed(ref.registry)
    ? pass('allowlist', TITLE.allowlist, `${ref.registry} is on registry.hosts`)
    : fail('allowlist', TITLE.allowlist, `${ref.registry} is not on registry.hosts: the webhook never asks it, so it neither pins nor checks these images`, `add "${ref.registry}" to registry.hosts`))

  // 3. DNS
  let endpoint: RegistryEndpoint
  try {
    endpoint = resolveEndpoint(ref.registry)
  } catch (err) {
    out.push(fail('dns', TITLE.dns, (err as Error).message, 'the registry must be host[:port]'))
    return rest('tcp')
  }
  const port = Number(new URL(endpoint.origin).port || 443)
  let addresses: Array<{ address: string, family: number }>
  try {
    addresses = await deps.lookup(endpoint.hostname)
  } catch (err) {
    out.push(fail('dns', TITLE.dns, `${endpoint.hostname}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'check the registry host name, and that this machine (or the cluster\'s DNS) can resolve it'))
    return rest('tcp')
  }
  const refused = addresses.map(a => ({ ...a, why: classifyAddress(a.address) })).filter(a => a.why !== undefined)
  const shown = addresses.map(a => a.address).join(', ')
  if (refused.length > 0 && !deps.privateAllowed(ref.registry)) {
    out.push(fail('dns', TITLE.dns, `${endpoint.hostname} → ${shown}; ${refused[0]!.address} is ${refused[0]!.why}: pullpin refuses to connect there`, `if this registry really is internal, add "${ref.registry}" to registry.allowPrivate`))
  } else {
    out.push(pass('dns', TITLE.dns, `${endpoint.hostname} → ${shown}`))
  }

  // 4. TCP
  const address = addresses[0]!.address
  const tcp = await tryConnect(address, port, deps.policy.timeoutMs)
  if (tcp !== undefined) {
    out.push(fail('tcp', TITLE.tcp, `${address}:${port}: ${tcp}`, 'check that the registry listens on that port and that no firewall or NetworkPolicy blocks egress from the webhook'))
    return rest('tls')
  }
  out.push(pass('tcp', TITLE.tcp, `${address}:${port} accepts connections`))

  // 5. TLS
  const ca = deps.caPem(ref.registry)
  const tls = await tryTls(address, port, endpoint.hostname, ca, deps.policy.timeoutMs)
  if (tls.error !== undefined) {
    out.push(fail('tls', TITLE.tls, `${tls.error}${tls.issuer !== undefined ? ` (certificate issued by ${tls.issuer})` : ''}`,
      ca === undefined
        ? `a registry behind a private CA needs that CA: set registry.options."${ref.registry}".caFile (or --ca-file)`
        : `the CA in registry.options."${ref.registry}".caFile does not sign this certificate, or the certificate does not name ${endpoint.hostname}`))
    return rest('challenge')
  }
  out.push(pass('tls', TITLE.tls, `certificate for ${tls.subject ?? endpoint.hostname} issued by ${tls.issuer ?? '?'}, valid until ${tls.validTo ?? '?'}${ca !== undefined ? ' (with the configured CA)' : ''}`))

  // 6. the /v2/ challenge (distribution-spec "Determining support", token.md "How to authenticate")
  const transport = deps.transport(ref.registry)
  let scheme: AuthScheme | undefined
  try {
    const res = await transport.send({ op: 'ping', method: 'GET', url: new URL(`${endpoint.origin}/v2/`), headers: {}, maxBodyBytes: 64 * 1024 }, deps.policy)
    if (res.status === 401) {
      scheme = pickScheme(res.headers['www-authenticate'])
      if (scheme === undefined) {
        out.push(fail('challenge', TITLE.challenge, 'HTTP 401 without a Basic or Bearer challenge', 'the registry (or a proxy before it) must send WWW-Authenticate: Basic or Bearer realm=…'))
        return rest('credential')
      }
    } else if (res.status !== 200) {
      out.push(fail('challenge', TITLE.challenge, `GET /v2/ answered HTTP ${res.status}`, 'this is not an OCI distribution registry endpoint, or a proxy answers in its place'))
      return rest('credential')
    }
  } catch (err) {
    out.push(fail('challenge', TITLE.challenge, (err as Error).message, 'see the DNS, TCP and TLS checks above'))
    return rest('credential')
  }
  let realm: URL | undefined
  if (scheme?.kind === 'bearer') {
    try {
      realm = checkRealm(endpoint, scheme.realm, deps.tokenRealmHosts(ref.registry))
    } catch (err) {
      out.push(fail('challenge', TITLE.challenge, (err as Error).message, `if that realm is really the registry's token service, list its host in registry.options."${ref.registry}".tokenRealmHosts`))
      return rest('credential')
    }
    out.push(pass('challenge', TITLE.challenge, `Bearer, realm ${realm.origin}${realm.pathname}${scheme.service !== undefined ? `, service ${scheme.service}` : ''} (allowed)`))
  } else {
    out.push(pass('challenge', TITLE.challenge, scheme === undefined ? 'no authentication asked (HTTP 200)' : 'Basic'))
  }

  // 7. which credential applies (the kubelet's keyring rules); never any secret material
  const creds = deps.credentials(ref)
  const credential = creds[0]
  if (credential === undefined) {
    out.push(scheme === undefined
      ? pass('credential', TITLE.credential, 'none needed')
      : pass('credential', TITLE.credential, 'none matches: pulls are anonymous'))
  } else {
    out.push(pass('credential', TITLE.credential, `${credential.source}, entry "${credential.key}" (user ${credential.username})${creds.length > 1 ? `; ${creds.length - 1} more tried after it` : ''}`))
  }

  // 8. a token for repository:<name>:pull, and a manifest request with it
  const scope = `repository:${ref.repository}:pull`
  let authorization: string | undefined
  if (scheme?.kind === 'bearer' && realm !== undefined) {
    const { url, headers } = tokenRequest({ registry: ref.registry, realm, scopes: [scope], ...(scheme.service !== undefined ? { service: scheme.service } : {}), ...(credential !== undefined ? { credential } : {}) })
    let res: HttpResponse
    try {
      res = await transport.send({ op: 'token', method: 'GET', url, headers, maxBodyBytes: 1024 * 1024 }, deps.policy)
    } catch (err) {
      out.push(fail('token', TITLE.token, `token realm: ${(err as Error).message}`, 'the token service must be reachable from the webhook'))
      return rest('exists')
    }
    if (res.status === 401 || res.status === 403) {
      out.push(fail('token', TITLE.token, `the token realm answered HTTP ${res.status} for ${scope} (${credential === undefined ? 'anonymous' : `credential from ${credential.source}`})`,
        credential === undefined
          ? 'the repository is private: add a dockerconfigjson for this registry (registry.credentials.dockerConfigFiles, or a pullSecrets source Secret)'
          : res.status === 401
            ? 'the user name or password (token) is wrong or expired: renew it in that dockerconfigjson'
            : `the credential is valid but may not pull ${ref.repository}: grant it read access to that repository`))
      return rest('exists')
    }
    if (res.status !== 200) {
      out.push(fail('token', TITLE.token, `the token realm answered HTTP ${res.status}`, 'the token service failed: try again, or ask the registry\'s operators'))
      return rest('exists')
    }
    try {
      authorization = `Bearer ${parseTokenResponse(ref.registry, res.body).token}`
    } catch (err) {
      out.push(fail('token', TITLE.token, (err as Error).message, 'the token service answered without a token'))
      return rest('exists')
    }
  } else if (scheme?.kind === 'basic' && credential !== undefined) {
    authorization = basicAuthorization(credential)
  }
  if (scheme !== undefined) {
    let res: HttpResponse
    try {
      const url = manifestUrl(endpoint, ref.repository, reference)
      res = await transport.send({ op: 'manifest', method: 'HEAD', url, headers: { accept: MANIFEST_MEDIA_TYPES.join(', '), ...(authorization !== undefined ? { authorization } : {}) }, maxBodyBytes: 0 }, deps.policy)
    } catch (err) {
      out.push(fail('token', TITLE.token, (err as Error).message, 'see the checks above'))
      return rest('exists')
    }
    if (res.status === 401 || res.status === 403) {
      const insufficient = /insufficient_scope/.test(String(res.headers['www-authenticate'] ?? ''))
      out.push(fail('token', TITLE.token, `HEAD of the manifest answered HTTP ${res.status}${insufficient ? ' (insufficient_scope)' : ''} with ${scheme.kind === 'bearer' ? `a token for ${scope}` : credential !== undefined ? 'Basic credentials' : 'no credentials'}`,
        credential === undefined
          ? 'the repository is private: add a dockerconfigjson for this registry (registry.credentials.dockerConfigFiles, or a pullSecrets source Secret)'
          : scheme.kind === 'basic' && res.status === 401
            ? 'the user name or password is wrong: renew it in that dockerconfigjson'
            : `the credential works but is scoped to other repositories: grant it pull on ${ref.repository} (for GHCR: the package's access settings; a fine-grained token needs read:packages)`))
      return rest('exists')
    }
    out.push(pass('token', TITLE.token, scheme.kind === 'bearer' ? `token for ${scope} accepted` : 'Basic credentials accepted'))
  } else {
    out.push(pass('token', TITLE.token, 'no authentication needed'))
  }

  // 9. the tag or digest, through the webhook's own cache and client
  let digest: string
  let mediaType: string
  try {
    const resolved = await deps.cache.resolveTag(ref, reference)
    digest = resolved.digest
    mediaType = resolved.mediaType
  } catch (err) {
    if (isCodedError(err, 'PULLPIN_REGISTRY_NOT_FOUND')) {
      out.push(fail('exists', TITLE.exists, `${ref.name}${ref.digest !== undefined ? '@' : ':'}${reference} is not on ${ref.registry}: a pod would hit ImagePullBackOff`, 'push the image, or fix the tag (CI may not have pushed it yet; tags are case-sensitive)'))
    } else {
      out.push(fail('exists', TITLE.exists, (err as Error).message, 'see the checks above'))
    }
    return rest('platforms')
  }
  out.push(pass('exists', TITLE.exists, `${digest} (${mediaType || 'media type not given'})`))

  // 10. platforms: an index's entries, or the image config's os/architecture
  let platforms: Platform[]
  try {
    const doc = await deps.client.getManifest(ref, digest)
    if (doc.kind === 'index') {
      platforms = doc.manifests.flatMap(m => m.platform !== undefined && m.platform.os !== 'unknown' ? [m.platform] : [])
    } else {
      const config = doc.config !== undefined ? await deps.client.getConfig(ref, doc.config.digest) : undefined
      platforms = config?.os !== undefined && config.architecture !== undefined ? [{ os: config.os, architecture: config.architecture, ...(config.variant !== undefined ? { variant: config.variant } : {}) }] : []
    }
  } catch (err) {
    out.push(fail('platforms', TITLE.platforms, (err as Error).message, 'the manifest could not be read'))
    return rest('pin')
  }
  const names = platforms.map(p => [p.os, p.architecture, p.variant].filter(x => x !== undefined && x !== '').join('/'))
  if (deps.platform !== undefined && !names.some(n => n === deps.platform || n.startsWith(`${deps.platform}/`))) {
    out.push(fail('platforms', TITLE.platforms, `${names.join(', ') || 'none stated'}; not ${deps.platform}`, `build and push the image for ${deps.platform} (docker buildx build --platform ${deps.platform},…)`))
  } else {
    out.push(pass('platforms', TITLE.platforms, names.length > 0 ? names.join(', ') : 'not stated by the image'))
  }

  // 11. the pin the webhook would write
  if (ref.digest !== undefined || deps.cache.isShaTag(ref.tag ?? 'latest')) {
    out.push(pass('pin', TITLE.pin, 'already pinned (a digest or a SHA tag): the webhook leaves it as it is'))
    return out
  }
  if (deps.format === 'digest') {
    out.push(pass('pin', TITLE.pin, `would pin to ${formatImageReference(ref, { digest })}`))
    return out
  }
  try {
    const shaTags = await deps.cache.shaTagsFor(ref, digest)
    const sha = shaTags[0]
    if (sha === undefined) {
      out.push(deps.format === 'tag+digest'
        ? pass('pin', TITLE.pin, `no SHA tag has ${digest}: would pin to ${formatImageReference(ref, { digest })}`)
        : fail('pin', TITLE.pin, `no tag matching pinning.shaTagPatterns has the digest ${digest}: the webhook leaves ${image} unpinned`, 'tag each build with its git SHA in CI (docker/metadata-action type=sha), or set pinning.format: digest'))
    } else {
      out.push(pass('pin', TITLE.pin, `would pin to ${formatImageReference(ref, deps.format === 'tag+digest' ? { tag: sha, digest } : { tag: sha })}`))
    }
  } catch (err) {
    out.push(fail('pin', TITLE.pin, (err as Error).message, 'the tag list could not be read'))
  }
  return out
}

function tryConnect (address: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: address, port })
    const done = (why: string | undefined): void => { socket.destroy(); resolve(why) }
    socket.setTimeout(timeoutMs, () => done(`no answer within ${timeoutMs} ms`))
    socket.once('connect', () => done(undefined))
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message))
  })
}

interface TlsOutcome { error?: string, subject?: string, issuer?: string, validTo?: string }

function tryTls (address: string, port: number, servername: string, caPem: string | undefined, timeoutMs: number): Promise<TlsOutcome> {
  return new Promise((resolve) => {
    // As the registry transport: Node's roots plus the registry's own CA, the host name checked.
    const socket = tlsConnect({ host: address, port, servername: /^[\d.]+$|:/.test(servername) ? '' : servername, ...(caPem !== undefined ? { ca: [...rootCertificates, caPem] } : {}), rejectUnauthorized: false, checkServerIdentity: () => undefined })
    const finish = (o: TlsOutcome): void => { socket.destroy(); resolve(o) }
    socket.setTimeout(timeoutMs, () => finish({ error: `no TLS handshake within ${timeoutMs} ms` }))
    socket.once('error', (err: NodeJS.ErrnoException) => finish({ error: err.code ?? err.message }))
    socket.once('secureConnect', () => {
      const cert: PeerCertificate = socket.getPeerCertificate()
      const cn = (v: string | string[] | undefined): string | undefined => Array.isArray(v) ? v.join(', ') : v
      const described = { subject: cn(cert.subject?.CN), issuer: cn(cert.issuer?.CN), validTo: cert.valid_to }
      if (!socket.authorized) { finish({ error: String(socket.authorizationError), ...described }); return }
      const identity = checkIdentity(servername, cert)
      finish(identity !== undefined ? { error: identity, ...described } : described)
    })
  })
}

function checkIdentity (host: string, cert: PeerCertificate): string | undefined {
  // The rule the transport's https requests apply.
  return checkServerIdentity(host, cert)?.message
}

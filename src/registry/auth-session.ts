// The registry authentication handshake (distribution docs/spec/auth/token.md), apart from the
// operations that use it, as go-containerregistry separates `transport` (auth) from `remote`
// (operations): src/registry/client.ts asks an AuthSession to send a request, and gets back the
// first answer that is neither 401 nor 403.
//
// - A 401's WWW-Authenticate picks Bearer (token from the realm, cached per scope and credential
//   in BearerTokenCache) or Basic. The scheme a registry asked for is remembered per registry, so
//   later requests authenticate up front instead of paying a 401 each; a `GET /v2/` ping learns
//   it before the first real request (coalesced).
// - Each credential the keyring returns for the image is tried in order (as the kubelet does),
//   the one that worked first next time; with none, access is anonymous. Credentials are asked for
//   on every request, so a rotated password applies at once (its token is cached apart: the cache
//   key holds a hash of the credential).
// - Credentials only ever go to the registry's own origin and to a realm that passed checkRealm;
//   redirects are not followed (the transport never follows them).
import { abortable } from '../async/abort.js'
import { isCodedError, ERR_REGISTRY_UNAUTHORIZED } from '../errors.js'
import { findChallenge, parseChallenges } from './challenge.js'
import { checkRealm, type RegistryEndpoint } from './endpoint.js'
import type { RegistryCredential } from './keyring.js'
import { basicAuthorization, BearerTokenCache, credentialIdentity, MAX_TOKEN_BYTES, type TokenRequest, type TokenSend } from './token.js'
import type { HttpRequest, HttpResponse, RegistryTransport, RequestPolicy } from './transport.js'

export type AuthScheme =
  | { kind: 'basic' }
  | { kind: 'bearer'; realm: string; service?: string; scope?: string }

export interface RegistryAuthOptions {
  /** Called per request so rotation applies; `image` = `${registry}/${repository}`. */
  credentials (image: string): RegistryCredential[]
  /** Extra hosts allowed as Bearer realm for `registry` (read before every token request). */
  tokenRealmHosts (registry: string): readonly string[]
  /** ms since the epoch, for token expiry; injectable for tests (default Date.now). */
  clock?: () => number
}

/** The image a request is about. */
export interface AuthTarget {
  readonly registry: string
  readonly repository: string
}

const MAX_PREFERRED = 10_000

/**
 * What every registry's sessions share: the token cache and which credential worked last for
 * each image. One per RegistryClient.
 */
export class RegistryAuth {
  readonly #opts: RegistryAuthOptions
  readonly tokens: BearerTokenCache
  /** image → identity of the credential that last worked for it. */
  readonly #preferred = new Map<string, string>()

  constructor (opts: RegistryAuthOptions) {
    this.#opts = opts
    this.tokens = new BearerTokenCache(opts.clock === undefined ? {} : { clock: opts.clock })
  }

  /**
   * The session for one registry over `transport`. `previous` is the session a new pool replaces
   * (new CA or limit): the scheme it learned carries over.
   */
  session (endpoint: RegistryEndpoint, transport: RegistryTransport, previous?: AuthSession): AuthSession {
    return new AuthSession(this, this.#opts, endpoint, transport, previous?.scheme)
  }

  /** Forgets every cached token. */
  clear (): void { this.tokens.clear() }

  prefer (image: string, credential: RegistryCredential): void {
    const identity = credentialIdentity(credential)
    if (this.#preferred.get(image) === identity) return
    // Bounded: forget the oldest entries (Map keeps insertion order) beyond MAX_PREFERRED.
    this.#preferred.delete(image)
    this.#preferred.set(image, identity)
    for (const k of this.#preferred.keys()) {
      if (this.#preferred.size <= MAX_PREFERRED) break
      this.#preferred.delete(k)
    }
  }

  /** Credentials for `image`, the one that worked last time first; [undefined] = anonymous. */
  candidates (image: string): Array<RegistryCredential | undefined> {
    const creds = this.#opts.credentials(image)
    if (creds.length === 0) return [undefined]
    const preferred = this.#preferred.get(image)
    if (preferred === undefined) return creds
    const first = creds.filter((c) => credentialIdentity(c) === preferred)
    return [...first, ...creds.filter((c) => credentialIdentity(c) !== preferred)]
  }
}

/** One registry's authentication: the scheme it asked for, and sending with it. */
export class AuthSession {
  /** The scheme this registry asked for last; used up front on later requests. */
  scheme: AuthScheme | undefined
  /** The one `GET /v2/` that learns the scheme before the first real request (coalesced). */
  #ping: Promise<void> | undefined

  constructor (
    private readonly auth: RegistryAuth,
    private readonly opts: RegistryAuthOptions,
    readonly endpoint: RegistryEndpoint,
    private readonly transport: RegistryTransport,
    scheme: AuthScheme | undefined
  ) {
    this.scheme = scheme
  }

  /**
   * Sends `req` with whatever authentication the registry asks for. Returns the first answer
   * that is neither 401 nor 403; throws ERR_REGISTRY_UNAUTHORIZED when every candidate
   * credential (or anonymous access, without credentials) was refused, and whatever the
   * transport throws.
   */
  async send (target: AuthTarget, req: HttpRequest, policy: RequestPolicy, signal?: AbortSignal): Promise<HttpResponse> {
    const image = `${target.registry}/${target.repository}`
    const candidates = this.auth.candidates(image)
    if (this.scheme === undefined) await this.#learnScheme(policy, signal)
    let refusal: Error | undefined
    let lastStatus = 401

    for (const credential of candidates) {
      let scheme = this.scheme
      // The scope of a challenge answered to *this* request (token.md: use the challenge's scope).
      let challengedScope: string | undefined
      let refreshedToken = false
      let sentWithoutAuth = false
      for (let round = 0; round < 4; round++) {
        let authorization: string | undefined
        let issued: { token: string; cached: boolean; req: TokenRequest } | undefined
        let usedScope: string | undefined
        if (scheme?.kind === 'basic') {
          // Without credentials a Basic registry may still serve public repositories: ask once.
          if (credential !== undefined) authorization = basicAuthorization(credential)
          else if (sentWithoutAuth) break
        } else if (scheme?.kind === 'bearer') {
          const scopes = (challengedScope ?? `repository:${target.repository}:pull`).split(' ').filter((s) => s !== '')
          usedScope = scopes.join(' ')
          try {
            issued = await this.#bearerToken(scheme, scopes, credential, policy, signal)
          } catch (err) {
            if (!isCodedError(err, 'PULLPIN_REGISTRY_UNAUTHORIZED')) throw err
            refusal = err
            break
          }
          authorization = `Bearer ${issued.token}`
        }

        if (authorization === undefined) sentWithoutAuth = true
        const res = await this.transport.send(
          { ...req, headers: { ...req.headers, ...(authorization === undefined ? {} : { authorization }) } }, policy, signal)
        if (res.status !== 401 && res.status !== 403) {
          if (credential !== undefined) this.auth.prefer(image, credential)
          return res
        }
        lastStatus = res.status
        refusal = undefined
        // 403: authenticated, not allowed. Another credential may be.
        if (res.status === 403) break
        const challenge = pickScheme(res.headers['www-authenticate'])
        if (challenge === undefined) break
        if (!sameScheme(challenge, scheme)) {
          // First contact, or the registry changed how it authenticates.
          this.scheme = challenge
          scheme = challenge
          challengedScope = challenge.kind === 'bearer' ? challenge.scope : undefined
          continue
        }
        if (challenge.kind === 'bearer' && challenge.scope !== undefined && challenge.scope !== usedScope && challenge.scope !== challengedScope) {
          // Same realm, but the registry wants a scope other than the one we asked for.
          challengedScope = challenge.scope
          continue
        }
        if (issued?.cached === true && !refreshedToken) {
          // A cached token the registry no longer accepts (revoked, clock skew): fetch a fresh one once.
          this.auth.tokens.invalidate(issued.req, issued.token)
          refreshedToken = true
          continue
        }
        break
      }
    }
    throw refusal ?? new ERR_REGISTRY_UNAUTHORIZED(target.registry, String(lastStatus), image)
  }

  /**
   * Learn how the registry authenticates from `GET /v2/` (distribution-spec "Determining support";
   * go-containerregistry's transport.Ping does the same), so that the first manifest HEAD already
   * carries credentials: every lookup is then exactly one manifest request at the registry. A
   * registry that answers the ping with something else than 401 is simply not challenged up front.
   */
  async #learnScheme (policy: RequestPolicy, signal: AbortSignal | undefined): Promise<void> {
    this.#ping ??= this.transport.send({ op: 'ping', method: 'GET', url: new URL(`${this.endpoint.origin}/v2/`), headers: {}, maxBodyBytes: 64 * 1024 }, policy)
      .then((res) => {
        if (res.status === 401) this.scheme ??= pickScheme(res.headers['www-authenticate'])
      }, (err: unknown) => {
        // Unreachable, refused address, TLS failure: the real request would fail the same way
        // (the transport already retried), so the caller gets this error; the next call pings again.
        this.#ping = undefined
        throw err
      })
    await abortable(this.#ping, signal)
  }

  async #bearerToken (
    scheme: Extract<AuthScheme, { kind: 'bearer' }>, scopes: string[], credential: RegistryCredential | undefined,
    policy: RequestPolicy, signal: AbortSignal | undefined
  ): Promise<{ token: string; cached: boolean; req: TokenRequest }> {
    const registry = this.endpoint.registry
    // Before anything is sent to the realm, every time (tokenRealmHosts may change).
    const realm = checkRealm(this.endpoint, scheme.realm, this.opts.tokenRealmHosts(registry))
    const req: TokenRequest = {
      registry,
      realm,
      scopes,
      ...(scheme.service === undefined ? {} : { service: scheme.service }),
      ...(credential === undefined ? {} : { credential })
    }
    // The fetch may be shared by several callers, so it runs without any one caller's signal
    // (bounded by the timeout and retries); each caller stops waiting on its own signal.
    const send: TokenSend = async (url, headers) => {
      const res = await this.transport.send({ op: 'token', method: 'GET', url, headers, maxBodyBytes: MAX_TOKEN_BYTES }, policy)
      return { status: res.status, body: res.body }
    }
    const issued = await this.auth.tokens.token(req, send, signal)
    return { ...issued, req }
  }
}

/**
 * The scheme a registry's 401 asks for (Bearer with its realm first, else Basic), as the session
 * uses it; exported for `pullpin doctor`, which shows the challenge step by step.
 */
export function pickScheme (header: string | string[] | undefined): AuthScheme | undefined {
  const challenges = parseChallenges(header)
  // Bearer first: a registry offering both prefers tokens, and docker/containerd do the same.
  const bearer = findChallenge(challenges, 'bearer')
  const realm = bearer?.params.realm
  if (bearer !== undefined && realm !== undefined && realm !== '') {
    const service = bearer.params.service
    const scope = bearer.params.scope
    return {
      kind: 'bearer',
      realm,
      ...(service === undefined ? {} : { service }),
      ...(scope === undefined || scope === '' ? {} : { scope })
    }
  }
  if (findChallenge(challenges, 'basic') !== undefined) return { kind: 'basic' }
  return undefined
}

function sameScheme (a: AuthScheme, b: AuthScheme | undefined): boolean {
  if (b === undefined || a.kind !== b.kind) return false
  if (a.kind === 'basic' || b.kind === 'basic') return true
  return a.realm === b.realm && a.service === b.service
}

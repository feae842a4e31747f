// A token server for distribution's `auth: token` mode (the Docker registry token protocol):
// https://distribution.github.io/distribution/spec/auth/token/ and .../spec/auth/jwt/.
// The real registry verifies what we issue, so the JWT must match what distribution 2.8's
// registry/auth/token/token.go checks:
//   - header: alg ES256 (libtrust wants the raw r||s signature, i.e. JOSE / IEEE P1363 encoding),
//     x5c = [base64(DER of signing cert)] verified against `auth.token.rootcertbundle`;
//   - claims: iss == configured issuer, aud == configured service, exp/nbf (60 s leeway), iat, jti,
//     sub, access = [{type, name, actions}].
// Clients GET `realm?service=...&scope=repository:NAME:pull,push` with Basic credentials (or none)
// and read `token` / `access_token` / `expires_in` from the JSON answer.
import { randomBytes, sign, X509Certificate, type KeyObject, createPrivateKey } from 'node:crypto'
import { createServer, type Server } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestCa } from './registry.js'

export interface ResourceAccess {
  type: string // "repository"
  name: string
  actions: string[]
}

export interface TokenRequestInfo {
  method: string
  path: string
  query: URLSearchParams
  /** Basic-auth user name when credentials were sent (valid or not). */
  account?: string
  /** True when no Authorization header came. */
  anonymous: boolean
  /** Whether sent credentials matched `users`. */
  authenticated: boolean
  service?: string
  /** Every requested scope, split (a `scope` param may hold several, space-separated). */
  scopes: string[]
  /** 1-based number of this request since start / reset(). */
  n: number
}

/** What a hook may make the server do instead of (or before) answering normally. */
export type TokenServerFault =
  | { action: 'status'; status: number; body?: string | object; headers?: Record<string, string>; delayMs?: number }
  | { action: 'drop'; delayMs?: number }
  | { action: 'delay'; ms: number }
  /** Answer 200 with this body instead of a token (e.g. '{}' or 'not json'). */
  | { action: 'body'; body: string | object; delayMs?: number }

export type TokenServerHook = (req: TokenRequestInfo) => TokenServerFault | undefined | void | Promise<TokenServerFault | undefined | void>

export interface TokenServerOptions {
  /** Accepted Basic credentials, user → password. */
  users?: Record<string, string>
  /** Requests without credentials get a token granting only `pull` (default false → 401). */
  allowAnonymous?: boolean
  /** Audience (`aud`), and the registry's `auth.token.service`. Default 'pullpin-test-registry'. */
  service?: string
  /** `iss`, and the registry's `auth.token.issuer`. Default 'pullpin-test-token-issuer'. */
  issuer?: string
  /** Token lifetime in seconds (exp - iat), also reported as `expires_in`. Default 300. */
  expiresIn?: number
  /** Leave `expires_in` out of the answer (the spec then says clients assume 60 s). */
  omitExpiresIn?: boolean
  /** Which fields carry the token. Default 'both'. */
  tokenField?: 'both' | 'token' | 'access_token'
  /** Also answer `issued_at` (RFC 3339). Default true. */
  includeIssuedAt?: boolean
  /**
   * Actions granted for one requested scope. Default: authenticated users get what they ask among
   * pull/push/delete/*; anonymous users (if allowed) get pull only. Return [] to deny that resource
   * (per the spec the token is still issued, just without the access entry).
   */
  grant?: (req: TokenRequestInfo, resource: ResourceAccess) => string[]
  /** Runs for every request before it is answered; settable later through the handle. */
  hook?: TokenServerHook
  /** Path of the realm. Default '/token'. */
  path?: string
}

export interface TokenServerHandle {
  /** https://127.0.0.1:PORT */
  url: string
  /** url + path: the `auth.token.realm`. */
  realm: string
  service: string
  issuer: string
  /** PEM to use as the registry's `auth.token.rootcertbundle` (the CA that signed the signing cert). */
  rootCertBundlePem: string
  /** Number of requests to the server since start / reset() (failed or not; mint() is not counted). */
  readonly requests: number
  /** Every request since start / reset(). */
  readonly log: TokenRequestInfo[]
  hook: TokenServerHook | undefined
  /** Issues a token directly (not counted), e.g. for harness API calls or forged/expired tokens in tests. */
  mint(access: ResourceAccess[], opts?: MintOptions): string
  reset(): void
  stop(): Promise<void>
}

export interface MintOptions {
  subject?: string
  issuer?: string
  audience?: string
  /** Seconds from now; negative makes an already-expired token. Default: the server's expiresIn. */
  expiresIn?: number
  /** Unix seconds; default now. */
  issuedAt?: number
}

const KNOWN_ACTIONS = new Set(['pull', 'push', 'delete', '*'])

function b64url (input: Buffer | string): string {
  return Buffer.from(input).toString('base64url')
}

/** `type:name:actions`; the name may itself contain ':' (e.g. a registry host with a port). */
export function parseScope (scope: string): ResourceAccess | undefined {
  const first = scope.indexOf(':')
  const last = scope.lastIndexOf(':')
  if (first <= 0 || last === first) return undefined
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope.slice(last + 1).split(',').filter((a) => a !== '')
  }
}

export function signJwt (claims: object, key: KeyObject, certPem: string): string {
  const der = new X509Certificate(certPem).raw
  const header = { typ: 'JWT', alg: 'ES256', x5c: [der.toString('base64')] }
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`
  // JWS ES256 (RFC 7518 §3.4) is the raw 64-byte r||s, not DER.
  const sig = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' })
  return `${input}.${b64url(sig)}`
}

function parseBasic (header: string | undefined): { user: string; pass: string } | undefined {
  if (header === undefined) return undefined
  const m = /^Basic\s+(.+)$/i.exec(header.trim())
  if (m === null) return undefined
  const decoded = Buffer.from(m[1] ?? '', 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return undefined
  return { user: decoded.slice(0, colon), pass: decoded.slice(colon + 1) }
}

async function readBody (req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

export async function startTokenServer (opts: TokenServerOptions & { ca: TestCa }): Promise<TokenServerHandle> {
  const service = opts.service ?? 'pullpin-test-registry'
  const issuer = opts.issuer ?? 'pullpin-test-token-issuer'
  const path = opts.path ?? '/token'
  const lifetime = opts.expiresIn ?? 300
  const users = opts.users ?? {}
  const serving = await opts.ca.issueServerCert()
  const signer = await opts.ca.issueSigningCert('pullpin test token signer')
  const signingKey = createPrivateKey(signer.keyPem)

  let log: TokenRequestInfo[] = []
  let hook = opts.hook

  const mint = (access: ResourceAccess[], m: MintOptions = {}): string => {
    const now = m.issuedAt ?? Math.floor(Date.now() / 1000)
    return signJwt({
      iss: m.issuer ?? issuer,
      sub: m.subject ?? '',
      aud: m.audience ?? service,
      exp: now + (m.expiresIn ?? lifetime),
      nbf: now,
      iat: now,
      jti: randomBytes(12).toString('hex'),
      access
    }, signingKey, signer.certPem)
  }

  const defaultGrant = (req: TokenRequestInfo, resource: ResourceAccess): string[] => {
    const wanted = resource.actions.filter((a) => KNOWN_ACTIONS.has(a))
    if (req.authenticated) return wanted
    return wanted.filter((a) => a === 'pull')
  }
  const grant = opts.grant ?? defaultGrant

  const send = (res: ServerResponse, status: number, body: string | object, headers: Record<string, string> = {}): void => {
    const text = typeof body === 'string' ? body : JSON.stringify(body)
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers })
    res.end(text)
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'https://127.0.0.1')
    let query = url.searchParams
    let creds = parseBasic(req.headers.authorization)
    if (req.method === 'POST') {
      // OAuth2 password grant variant of the token endpoint (spec/auth/oauth.md).
      const form = new URLSearchParams(await readBody(req))
      query = form
      const user = form.get('username')
      if (creds === undefined && user !== null) creds = { user, pass: form.get('password') ?? '' }
    }
    const scopes = query.getAll('scope').flatMap((s) => s.split(' ')).filter((s) => s !== '')
    const info: TokenRequestInfo = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query,
      anonymous: req.headers.authorization === undefined && creds === undefined,
      authenticated: creds !== undefined && Object.hasOwn(users, creds.user) && users[creds.user] === creds.pass,
      scopes,
      n: log.length + 1,
      ...(creds === undefined ? {} : { account: creds.user }),
      ...(query.get('service') === null ? {} : { service: query.get('service') as string })
    }
    log.push(info)

    const fault = hook === undefined ? undefined : await hook(info)
    if (fault) {
      const delay = fault.action === 'delay' ? fault.ms : fault.delayMs ?? 0
      if (delay > 0) await sleep(delay)
      if (fault.action === 'drop') { req.socket.destroy(); return }
      if (fault.action === 'status') { send(res, fault.status, fault.body ?? { errors: [{ code: 'UNAVAILABLE', message: 'injected failure' }] }, fault.headers); return }
      if (fault.action === 'body') { send(res, 200, fault.body); return }
    }

    if (url.pathname !== path) { send(res, 404, { errors: [{ code: 'NOT_FOUND', message: 'no such endpoint' }] }); return }
    if (req.method !== 'GET' && req.method !== 'POST') { send(res, 405, { errors: [{ code: 'UNSUPPORTED', message: 'GET or POST' }] }); return }
    if (info.service !== undefined && info.service !== service) {
      send(res, 400, { errors: [{ code: 'INVALID_REQUEST', message: `unknown service ${info.service}` }] }); return
    }
    if ((creds !== undefined || !info.anonymous) && !info.authenticated) {
      send(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }, { 'www-authenticate': 'Basic realm="pullpin-test-token"' }); return
    }
    if (info.anonymous && opts.allowAnonymous !== true) {
      send(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'credentials required' }] }, { 'www-authenticate': 'Basic realm="pullpin-test-token"' }); return
    }

    const access: ResourceAccess[] = []
    for (const s of scopes) {
      const resource = parseScope(s)
      if (resource === undefined) continue
      const actions = grant(info, resource)
      if (actions.length > 0) access.push({ type: resource.type, name: resource.name, actions })
    }
    const now = Math.floor(Date.now() / 1000)
    const token = mint(access, { subject: info.account ?? '', issuedAt: now })
    const field = opts.tokenField ?? 'both'
    send(res, 200, {
      ...(field === 'access_token' ? {} : { token }),
      ...(field === 'token' ? {} : { access_token: token }),
      ...(opts.omitExpiresIn === true ? {} : { expires_in: lifetime }),
      ...(opts.includeIssuedAt === false ? {} : { issued_at: new Date(now * 1000).toISOString() })
    })
  }

  const server: Server = createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, { errors: [{ code: 'UNKNOWN', message: String(err) }] })
      else res.destroy()
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => { server.off('error', reject); resolve() })
  })
  const port = (server.address() as AddressInfo).port
  const url = `https://127.0.0.1:${port}`

  return {
    url,
    realm: url + path,
    service,
    issuer,
    rootCertBundlePem: opts.ca.certPem,
    get requests () { return log.length },
    get log () { return log },
    get hook () { return hook },
    set hook (h: TokenServerHook | undefined) { hook = h },
    mint,
    reset () { log = [] },
    stop: () => new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  }
}

// A real OCI registry for tests: Debian's `docker-registry` (CNCF distribution 2.8) on 127.0.0.1,
// TLS with a per-registry test CA, htpasswd (bcrypt) or token auth, filesystem storage in a temp
// dir. Images go in with skopeo from OCI layouts written by ./oci-layout.ts, and skopeo is also the
// ground truth for digests. `bash scripts/registry-tools.sh ensure` installs the tools.
//
// Nothing here is a stub: every request a test makes reaches the real registry process.
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generate } from 'selfsigned'
import { Agent, request } from 'undici'
import { stringify as toYaml } from 'yaml'
import { build, writeLayout, type OciImageSpec, type OciIndexSpec } from './oci-layout.js'
import { startTokenServer, type ResourceAccess, type TokenServerHandle, type TokenServerOptions } from './token-server.js'

export const DOCKER_REGISTRY_BIN = '/usr/bin/docker-registry'
export const SKOPEO_BIN = 'skopeo'
export const HTPASSWD_BIN = 'htpasswd'

/** Every manifest media type distribution 2.8 stores, for Accept headers. */
export const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json'
].join(', ')

// ---------------------------------------------------------------------------------------------
// Test CA

export interface IssuedCert {
  certPem: string
  keyPem: string
}

export interface TestCa {
  certPem: string
  keyPem: string
  /** A TLS server certificate with SANs IP 127.0.0.1 and DNS localhost (plus any given). */
  issueServerCert(extra?: { ips?: string[]; dns?: string[] }): Promise<IssuedCert>
  /** A certificate for signing (e.g. registry tokens: x5c chains to this CA). */
  issueSigningCert(commonName: string): Promise<IssuedCert>
}

// EC P-256 throughout: key generation is a few ms (RSA-2048 is ~100 ms), and selfsigned 5 signs
// a leaf with the CA key using the *leaf's* key type, so CA and leaves must share it.
const KEY_OPTS = { keyType: 'ec', curve: 'P-256', algorithm: 'sha256' } as const

export async function createTestCa (commonName = 'pullpin test CA'): Promise<TestCa> {
  // Back-date by an hour so a freshly issued cert is valid for peers whose clock is a bit behind.
  const notBeforeDate = new Date(Date.now() - 3600_000)
  const notAfterDate = new Date(Date.now() + 7 * 24 * 3600_000)
  const ca = await generate([{ name: 'commonName', value: commonName }], {
    ...KEY_OPTS,
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true }
    ]
  })
  const signer = { key: ca.private, cert: ca.cert }
  return {
    certPem: ca.cert,
    keyPem: ca.private,
    async issueServerCert (extra = {}) {
      const ips = ['127.0.0.1', ...(extra.ips ?? [])]
      const dns = ['localhost', ...(extra.dns ?? [])]
      const leaf = await generate([{ name: 'commonName', value: '127.0.0.1' }], {
        ...KEY_OPTS,
        notBeforeDate,
        notAfterDate,
        ca: signer,
        extensions: [
          { name: 'basicConstraints', cA: false },
          { name: 'keyUsage', digitalSignature: true, critical: true },
          { name: 'extKeyUsage', serverAuth: true },
          { name: 'subjectAltName', altNames: [...ips.map((ip) => ({ type: 7 as const, ip })), ...dns.map((value) => ({ type: 2 as const, value }))] }
        ]
      })
      return { certPem: leaf.cert, keyPem: leaf.private }
    },
    async issueSigningCert (cn) {
      const leaf = await generate([{ name: 'commonName', value: cn }], {
        ...KEY_OPTS,
        notBeforeDate,
        notAfterDate,
        ca: signer,
        extensions: [
          { name: 'basicConstraints', cA: false },
          { name: 'keyUsage', digitalSignature: true, critical: true }
        ]
      })
      return { certPem: leaf.cert, keyPem: leaf.private }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

export function sha256 (bytes: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(bytes).digest('hex')
}

export function dockerConfigJsonFor (host: string, username?: string, password?: string): string {
  if (username === undefined) return JSON.stringify({ auths: {} })
  const auth = Buffer.from(`${username}:${password ?? ''}`).toString('base64')
  return JSON.stringify({ auths: { [host]: { auth } } })
}

interface RunResult { stdout: Buffer; stderr: string }

function run (cmd: string, args: string[], timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'buffer', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const redacted = args.map((a, i) => (/^--(dest-|src-)?creds$/.test(args[i - 1] ?? '') ? '***' : a))
        reject(new Error(`${cmd} ${redacted.join(' ')} failed: ${err.message}\n${stderr.toString('utf8')}`))
        return
      }
      resolve({ stdout, stderr: stderr.toString('utf8') })
    })
  })
}

/** A port nobody listens on right now (the kernel picks it; we close it again for the registry). */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      srv.close(() => resolve(port))
    })
  })
}

async function bcryptHtpasswd (users: Record<string, string>): Promise<string> {
  // distribution's htpasswd backend accepts bcrypt entries only. Cost 4 (the minimum) because the
  // registry runs bcrypt on every Basic-authenticated request.
  const lines: string[] = []
  for (const [user, pass] of Object.entries(users)) {
    const { stdout } = await run(HTPASSWD_BIN, ['-nbBC', '4', user, pass])
    lines.push(stdout.toString('utf8').trim())
  }
  return lines.join('\n') + '\n'
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

// ---------------------------------------------------------------------------------------------
// Registry

export type RegistryAuthMode = 'htpasswd' | 'token' | 'none'

export interface StartRegistryOptions {
  /** Default 'htpasswd'. */
  auth?: RegistryAuthMode
  /** Default 'pullpin' (ignored with auth 'none'). */
  username?: string
  /** Default: random. */
  password?: string
  /** More accepted users (htpasswd file, or token server users). */
  extraUsers?: Record<string, string>
  /** Options for the token server started with auth 'token' (its users get username/password added). */
  tokenServer?: TokenServerOptions
  /** Reuse a CA (e.g. to share one trust root between several registries). Default: a fresh one. */
  ca?: TestCa
  /** Extra top-level keys merged into the registry config (e.g. { http: {...} } replaces http!). */
  configOverrides?: Record<string, unknown>
}

export interface RegistryHandle {
  /** "127.0.0.1:PORT" */
  host: string
  /** "https://127.0.0.1:PORT" */
  url: string
  /** CA that signed the registry's serving cert (SAN IP 127.0.0.1 + DNS localhost). */
  caPem: string
  /** Same on disk (inside `certDir`). */
  caFile: string
  /** A dir holding only `ca.crt`: what skopeo/containers wants as --cert-dir. */
  certDir: string
  username?: string
  password?: string
  /** {"auths":{"127.0.0.1:PORT":{"auth":base64(user:pass)}}}, or {"auths":{}} without credentials. */
  dockerConfigJson: string
  /** Pushes with `skopeo copy` (`--all` for an index); returns the digest skopeo inspect reports for tags[0]. */
  push(image: OciImageSpec | OciIndexSpec, repo: string, tags: string[]): Promise<string>
  /** GETs the manifest of existingTag and PUTs the same bytes under each new tag (registry API, parallel). */
  tag(repo: string, existingTag: string, newTags: string[]): Promise<void>
  /** sha256 of `skopeo inspect --raw` bytes: the digest of the manifest (or index) the tag points at. */
  inspectDigest(repo: string, tag: string): Promise<string>
  stop(): Promise<void>
}

export interface RegistryFixture extends RegistryHandle {
  auth: RegistryAuthMode
  ca: TestCa
  /** undici dispatcher trusting the CA (keep-alive), for `fetch(url, { dispatcher })` / `request`. */
  dispatcher: Agent
  tokenServer?: TokenServerHandle
  /** Authorization header value for API calls on `repo` (Basic, or a minted Bearer token), if any. */
  authorization(repo?: string, actions?: string[]): string | undefined
  /** Tags as the registry lists them (one unpaged request). */
  listTags(repo: string): Promise<string[]>
  /** DELETE /v2/<repo>/manifests/<digest> (removes every tag pointing at it). */
  deleteManifest(repo: string, digest: string): Promise<void>
  /** Registry stderr so far (level warn), for failure messages. */
  logs(): string
  /** The registry config as written. */
  config: Record<string, unknown>
  dir: string
}

interface ApiResponse { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }

export async function startRegistry (opts: StartRegistryOptions = {}): Promise<RegistryFixture> {
  const auth = opts.auth ?? 'htpasswd'
  const username = auth === 'none' ? undefined : opts.username ?? 'pullpin'
  const password = auth === 'none' ? undefined : opts.password ?? randomBytes(9).toString('base64url')
  const users: Record<string, string> = { ...opts.extraUsers }
  if (username !== undefined && password !== undefined) users[username] = password

  const dir = await mkdtemp(join(tmpdir(), 'pullpin-registry-'))
  const cleanups: Array<() => Promise<void>> = [() => rm(dir, { recursive: true, force: true })]
  const cleanup = async (): Promise<void> => {
    for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined)
  }

  try {
    const ca = opts.ca ?? await createTestCa()
    const serving = await ca.issueServerCert()
    const certDir = join(dir, 'certs.d')
    await mkdir(certDir)
    await mkdir(join(dir, 'data'))
    const caFile = join(certDir, 'ca.crt')
    await writeFile(caFile, ca.certPem)
    await writeFile(join(dir, 'server.crt'), serving.certPem)
    await writeFile(join(dir, 'server.key'), serving.keyPem, { mode: 0o600 })

    let tokenServer: TokenServerHandle | undefined
    let authConfig: Record<string, unknown> | undefined
    if (auth === 'htpasswd') {
      await writeFile(join(dir, 'htpasswd'), await bcryptHtpasswd(users))
      authConfig = { htpasswd: { realm: 'pullpin-test-registry', path: join(dir, 'htpasswd') } }
    } else if (auth === 'token') {
      tokenServer = await startTokenServer({ ...opts.tokenServer, ca, users: { ...opts.tokenServer?.users, ...users } })
      const ts = tokenServer
      cleanups.push(() => ts.stop())
      await writeFile(join(dir, 'token-root.pem'), ts.rootCertBundlePem)
      authConfig = {
        token: { realm: ts.realm, service: ts.service, issuer: ts.issuer, rootcertbundle: join(dir, 'token-root.pem') }
      }
    }

    const dispatcher = new Agent({ connect: { ca: ca.certPem }, keepAliveTimeout: 10_000, connections: 16 })
    cleanups.push(() => dispatcher.close())

    // The port is free when we look; another process could take it before the registry binds, so
    // a failed start is retried with a new port.
    let started: { child: ChildProcess; port: number; config: Record<string, unknown>; logs: () => string } | undefined
    let lastError: unknown
    for (let attempt = 0; attempt < 3 && started === undefined; attempt++) {
      const port = await freePort()
      const config: Record<string, unknown> = {
        version: 0.1,
        log: { level: 'warn', formatter: 'text', accesslog: { disabled: true } },
        storage: {
          filesystem: { rootdirectory: join(dir, 'data') },
          delete: { enabled: true },
          maintenance: { uploadpurging: { enabled: false } }
        },
        http: {
          addr: `127.0.0.1:${port}`,
          secret: randomBytes(16).toString('hex'),
          tls: { certificate: join(dir, 'server.crt'), key: join(dir, 'server.key') }
        },
        ...(authConfig === undefined ? {} : { auth: authConfig }),
        ...opts.configOverrides
      }
      const cfgFile = join(dir, 'config.yml')
      await writeFile(cfgFile, toYaml(config))
      try {
        started = { ...await spawnRegistry(cfgFile, dir, `https://127.0.0.1:${port}`, dispatcher), port, config }
      } catch (err) {
        lastError = err
      }
    }
    if (started === undefined) throw lastError
    const { child, port, config, logs } = started
    cleanups.push(() => stopChild(child))

    const host = `127.0.0.1:${port}`
    const url = `https://${host}`
    const layouts = new Map<string, Promise<string>>()

    const authorization = (repo?: string, actions: string[] = ['pull', 'push', 'delete']): string | undefined => {
      if (username === undefined) return undefined
      if (auth === 'htpasswd') return 'Basic ' + Buffer.from(`${username}:${password ?? ''}`).toString('base64')
      if (tokenServer === undefined) return undefined
      const access: ResourceAccess[] = repo === undefined ? [] : [{ type: 'repository', name: repo, actions }]
      return 'Bearer ' + tokenServer.mint(access, { subject: username })
    }

    const api = async (method: string, path: string, repo: string | undefined, headers: Record<string, string> = {}, body?: Buffer): Promise<ApiResponse> => {
      const authz = authorization(repo)
      const res = await request(url + path, {
        method: method as 'GET',
        dispatcher,
        headers: { ...headers, ...(authz === undefined ? {} : { authorization: authz }) },
        ...(body === undefined ? {} : { body })
      })
      const buf = Buffer.from(await res.body.arrayBuffer())
      return { status: res.statusCode, headers: res.headers, body: buf }
    }

    const skopeoCreds = (prefix: '--dest-' | '--src-' | '--'): string[] =>
      username === undefined ? [`${prefix}no-creds`] : [`${prefix}creds`, `${username}:${password ?? ''}`]

    const inspectDigest = async (repo: string, tag: string): Promise<string> => {
      const { stdout } = await run(SKOPEO_BIN, [
        '--insecure-policy', 'inspect', '--raw', '--tls-verify=true', '--cert-dir', certDir,
        ...skopeoCreds('--'), `docker://${host}/${repo}:${tag}`
      ])
      return sha256(stdout)
    }

    const tag = async (repo: string, existingTag: string, newTags: string[]): Promise<void> => {
      const got = await api('GET', `/v2/${repo}/manifests/${existingTag}`, repo, { accept: MANIFEST_ACCEPT })
      if (got.status !== 200) throw new Error(`GET ${repo}:${existingTag} answered ${got.status}: ${got.body.toString('utf8')}`)
      const contentType = String(got.headers['content-type'] ?? '')
      const queue = [...newTags]
      const worker = async (): Promise<void> => {
        for (let t = queue.shift(); t !== undefined; t = queue.shift()) {
          const put = await api('PUT', `/v2/${repo}/manifests/${t}`, repo, { 'content-type': contentType }, got.body)
          if (put.status !== 201) throw new Error(`PUT ${repo}:${t} answered ${put.status}: ${put.body.toString('utf8')}`)
        }
      }
      await Promise.all(Array.from({ length: Math.min(8, queue.length) }, worker))
    }

    const push = async (image: OciImageSpec | OciIndexSpec, repo: string, tags: string[]): Promise<string> => {
      const [first, ...rest] = tags
      if (first === undefined) throw new Error('push needs at least one tag')
      const key = sha256(JSON.stringify(image))
      let layout = layouts.get(key)
      if (layout === undefined) {
        layout = writeLayout(join(dir, 'layouts', key.slice(7, 23)), image, 'img').then((w) => w.ociReference)
        layouts.set(key, layout)
      }
      const src = await layout
      await run(SKOPEO_BIN, [
        '--insecure-policy', 'copy', '--quiet', '--preserve-digests',
        ...(image.kind === 'index' ? ['--all'] : []),
        '--dest-tls-verify=true', '--dest-cert-dir', certDir, ...skopeoCreds('--dest-'),
        src, `docker://${host}/${repo}:${first}`
      ])
      if (rest.length > 0) await tag(repo, first, rest)
      return inspectDigest(repo, first)
    }

    const listTags = async (repo: string): Promise<string[]> => {
      const res = await api('GET', `/v2/${repo}/tags/list`, repo)
      if (res.status !== 200) throw new Error(`tags/list ${repo} answered ${res.status}: ${res.body.toString('utf8')}`)
      return (JSON.parse(res.body.toString('utf8')) as { tags: string[] | null }).tags ?? []
    }

    const deleteManifest = async (repo: string, digest: string): Promise<void> => {
      const res = await api('DELETE', `/v2/${repo}/manifests/${digest}`, repo)
      if (res.status !== 202) throw new Error(`DELETE ${repo}@${digest} answered ${res.status}: ${res.body.toString('utf8')}`)
    }

    const handle: RegistryFixture = {
      host,
      url,
      caPem: ca.certPem,
      caFile,
      certDir,
      ...(username === undefined ? {} : { username, password: password ?? '' }),
      dockerConfigJson: dockerConfigJsonFor(host, username, password),
      auth,
      ca,
      dispatcher,
      ...(tokenServer === undefined ? {} : { tokenServer }),
      authorization,
      push,
      tag,
      inspectDigest,
      listTags,
      deleteManifest,
      logs,
      config,
      dir,
      stop: cleanup
    }
    return handle
  } catch (err) {
    await cleanup()
    throw err
  }
}

/** The expected manifest/index digest of a spec, without pushing it. */
export function expectedDigest (image: OciImageSpec | OciIndexSpec): string {
  return build(image).digest
}

async function spawnRegistry (cfgFile: string, dir: string, url: string, dispatcher: Agent): Promise<{ child: ChildProcess; logs: () => string }> {
  const child = spawn(DOCKER_REGISTRY_BIN, ['serve', cfgFile], { stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  const collect = (chunk: Buffer): void => {
    log += chunk.toString('utf8')
    // Keep the tail only: the registry logs a warning for every auth challenge.
    if (log.length > 64_000) log = log.slice(-32_000)
  }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  let exited: string | undefined
  child.once('exit', (code, signal) => { exited = `exited with ${code ?? signal}` })
  child.once('error', (err) => { exited = `failed to start: ${err.message}` })

  // If this test process dies without stop() (crash, tap timeout kill), the watchdog's stdin pipe
  // closes and it stops exactly this registry and removes its temp dir, so nothing is left on the port.
  if (child.pid !== undefined) {
    const watchdog = spawn('sh', ['-c', 'read _x; kill -TERM "$1" 2>/dev/null; sleep 1; rm -rf "$2"', 'pullpin-registry-watchdog', String(child.pid), dir], {
      stdio: ['pipe', 'ignore', 'ignore']
    })
    // Unref'd so a test that forgets stop() still ends (and the watchdog then cleans up).
    watchdog.unref()
    ;(watchdog.stdin as Socket | null)?.unref()
    child.once('exit', () => { watchdog.kill('SIGKILL') })
  }
  child.unref()
  ;(child.stdout as Socket | null)?.unref()
  ;(child.stderr as Socket | null)?.unref()

  const deadline = Date.now() + 15_000
  for (;;) {
    if (exited !== undefined) throw new Error(`docker-registry ${exited}\n${log}`)
    try {
      // 401 counts as up: auth is on and the registry answered.
      const res = await request(url + '/v2/', { dispatcher, headersTimeout: 2000, bodyTimeout: 2000 })
      await res.body.dump()
      if (res.statusCode === 200 || res.statusCode === 401) return { child, logs: () => log }
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`docker-registry did not answer on ${url} within 15 s\n${log}`)
    }
    await sleep(exited === undefined ? 15 : 0)
  }
}

async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
  await gone
  clearTimeout(timer)
}

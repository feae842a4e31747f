// A kubelet credential provider plugin run by pullpin, speaking the kubelet's protocol
// (credentialprovider.kubelet.k8s.io/v1, KEP-2133; k8s.io/kubelet/pkg/apis/credentialprovider/v1
// types.go and pkg/credentialprovider/plugin/plugin.go): a CredentialProviderRequest with the image
// on stdin, a CredentialProviderResponse with auths and a cacheDuration on stdout. So any cloud's
// plugin (ecr-credential-provider, acr-credential-provider, auth-provider-gcp) works unchanged.
//
// Secret hygiene: stdout carries passwords and stderr may (a plugin that logs its token). Neither
// is ever logged; an error quotes at most a bounded, redacted tail of stderr.
import { spawn } from 'node:child_process'
import { ERR_CREDENTIAL_SOURCE } from '../errors.js'
import type { ExecSourceConfig } from '../policy/config.js'
import { redact, type CredentialFetcher, type FetchedAuth } from './types.js'

export const CREDENTIAL_PROVIDER_API_VERSION = 'credentialprovider.kubelet.k8s.io/v1'
const MAX_STDOUT = 1024 * 1024
const MAX_STDERR = 4096
const DEFAULT_TIMEOUT_MS = 30_000
const DEFAULT_CACHE_MS = 300_000

export interface ExecFetcherOptions {
  readonly config: ExecSourceConfig
  /** The images to ask about (config.images, else the rule's concrete registries). */
  readonly images: readonly string[]
  /** The plugin's base environment (src/cli.ts passes pullpin's own); config.env is added on top. */
  readonly baseEnv?: Readonly<Record<string, string | undefined>>
  readonly now?: () => number
}

export function createExecFetcher (opts: ExecFetcherOptions): CredentialFetcher {
  const { config } = opts
  const now = opts.now ?? Date.now
  const description = `exec:${config.command}`
  const timeoutMs = (config.timeoutSeconds ?? DEFAULT_TIMEOUT_MS / 1000) * 1000
  const defaultCacheMs = (config.defaultCacheDurationSeconds ?? DEFAULT_CACHE_MS / 1000) * 1000
  // Passwords of the last good answer: a failing plugin that echoes its previous token to stderr
  // gets it redacted, however short it is.
  let known: string[] = []
  return {
    description,
    async fetch (signal) {
      const auths: Record<string, FetchedAuth> = {}
      let expiresAt = Infinity
      for (const image of opts.images) {
        const started = now()
        const stdout = await run(image, signal)
        const answer = parseResponse(description, image, stdout)
        for (const [key, a] of Object.entries(answer.auth)) if (!Object.hasOwn(auths, key)) auths[key] = a
        // kubelet: cacheDuration unset or zero means "use defaultCacheDuration" for its cache;
        // pullpin must keep copies filled, so it does the same rather than asking continuously.
        const lifetime = answer.cacheDurationMs !== undefined && answer.cacheDurationMs > 0 ? answer.cacheDurationMs : defaultCacheMs
        expiresAt = Math.min(expiresAt, started + lifetime)
      }
      if (Object.keys(auths).length === 0) throw new ERR_CREDENTIAL_SOURCE(description, 'the plugin returned no auth entries')
      known = Object.values(auths).map(a => a.password)
      return { auths, expiresAt }
    },
  }

  function run (image: string, signal: AbortSignal): Promise<string> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) { reject(new ERR_CREDENTIAL_SOURCE(description, 'aborted')); return }
      const child = spawn(config.command, [...(config.args ?? [])], {
        env: { ...opts.baseEnv, ...config.env },
        stdio: ['pipe', 'pipe', 'pipe'],
      })
      const out: Buffer[] = []
      let outBytes = 0
      let err = ''
      let failure: string | undefined
      const fail = (why: string): void => {
        if (failure !== undefined) return
        failure = why
        child.kill('SIGKILL')
      }
      const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms: killed`), timeoutMs)
      const onAbort = (): void => fail('aborted')
      signal.addEventListener('abort', onAbort, { once: true })
      child.stdout.on('data', (chunk: Buffer) => {
        outBytes += chunk.length
        if (outBytes > MAX_STDOUT) fail(`answer larger than ${MAX_STDOUT} bytes`)
        else out.push(chunk)
      })
      // Only the tail is kept: it holds the error, and the bound keeps a chatty plugin harmless.
      child.stderr.on('data', (chunk: Buffer) => { err = (err + chunk.toString('utf8')).slice(-MAX_STDERR) })
      child.stdin.on('error', () => { /* the plugin may exit without reading: its exit status says why */ })
      child.on('error', (e: NodeJS.ErrnoException) => fail(`cannot run: ${e.code ?? 'error'}`))
      child.on('close', (code, sig) => {
        clearTimeout(timer)
        signal.removeEventListener('abort', onAbort)
        const text = Buffer.concat(out).toString('utf8')
        const tail = (): string => {
          const r = redact(err, [...passwordsIn(text), ...known])
          return r === '' ? '' : `; stderr: ${r}`
        }
        if (failure !== undefined) { reject(new ERR_CREDENTIAL_SOURCE(description, `${failure}${tail()}`)); return }
        if (code !== 0) { reject(new ERR_CREDENTIAL_SOURCE(description, `exited with ${code !== null ? `status ${code}` : `signal ${sig ?? '?'}`}${tail()}`)); return }
        resolve(text)
      })
      child.stdin.end(JSON.stringify({ apiVersion: CREDENTIAL_PROVIDER_API_VERSION, kind: 'CredentialProviderRequest', image }))
    })
  }
}

/** Passwords a (possibly malformed) answer carries, so a stderr echo of them is redacted too. */
function passwordsIn (stdout: string): string[] {
  try {
    const auth = (JSON.parse(stdout) as { auth?: Record<string, { password?: unknown }> }).auth ?? {}
    return Object.values(auth).flatMap(a => typeof a?.password === 'string' ? [a.password] : [])
  } catch {
    return []
  }
}

interface ParsedResponse { auth: Record<string, FetchedAuth>; cacheDurationMs: number | undefined }

function parseResponse (description: string, image: string, stdout: string): ParsedResponse {
  const bad = (why: string): Error => new ERR_CREDENTIAL_SOURCE(description, `malformed CredentialProviderResponse for ${image}: ${why}`)
  let doc: unknown
  try {
    doc = JSON.parse(stdout)
  } catch {
    // The text is never quoted: it may hold a password.
    throw bad('not JSON')
  }
  if (!isObject(doc)) throw bad('not a JSON object')
  if (doc.kind !== 'CredentialProviderResponse') throw bad('kind is not CredentialProviderResponse')
  if (doc.apiVersion !== CREDENTIAL_PROVIDER_API_VERSION) throw bad(`apiVersion is not ${CREDENTIAL_PROVIDER_API_VERSION}`)
  // plugin.go: cacheKeyType is required (Image, Registry or Global).
  if (!['Image', 'Registry', 'Global'].includes(doc.cacheKeyType as string)) throw bad('cacheKeyType must be Image, Registry or Global')
  let cacheDurationMs: number | undefined
  if (doc.cacheDuration !== undefined && doc.cacheDuration !== null) {
    if (typeof doc.cacheDuration !== 'string' || (cacheDurationMs = parseGoDuration(doc.cacheDuration)) === undefined) throw bad('cacheDuration is not a duration like "6h0m0s"')
  }
  const auth: Record<string, FetchedAuth> = {}
  if (doc.auth !== undefined && doc.auth !== null) {
    if (!isObject(doc.auth)) throw bad('auth is not an object')
    for (const [key, value] of Object.entries(doc.auth)) {
      if (!isObject(value) || typeof value.username !== 'string' || typeof value.password !== 'string') throw bad(`auth entry ${JSON.stringify(key)} needs string username and password`)
      auth[key] = { username: value.username, password: value.password }
    }
  }
  return { auth, cacheDurationMs }
}

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, μs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** Go's time.ParseDuration (metav1.Duration's JSON form), in ms; undefined when it is not one. */
export function parseGoDuration (text: string): number | undefined {
  if (text === '0') return 0
  const re = /([0-9]*\.?[0-9]*)(ns|us|µs|μs|ms|s|m|h)/y
  let i = 0
  let total = 0
  let sign = 1
  if (text.startsWith('-') || text.startsWith('+')) { sign = text.startsWith('-') ? -1 : 1; i = 1 }
  if (i >= text.length) return undefined
  while (i < text.length) {
    re.lastIndex = i
    const m = re.exec(text)
    if (m === null || m[1] === '' || m[1] === '.') return undefined
    total += Number(m[1]) * UNIT_MS[m[2]!]!
    i = re.lastIndex
  }
  return sign * total
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

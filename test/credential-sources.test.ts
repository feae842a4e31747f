// Fetched registry credentials (issue 17): the kubelet credential provider protocol against an
// in-test plugin (test/fixtures/credential-provider/plugin.mjs), the real AWS SDK against an
// in-test endpoint that speaks ECR's JSON 1.1 protocol, and the refresher's rules on a manual clock.
import t from 'tap'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { parseConfig } from '../src/policy/config.js'
import { createExecFetcher, parseGoDuration } from '../src/credentials/exec-plugin.js'
import { createEcrFetcher } from '../src/credentials/ecr.js'
import { CredentialRefresher } from '../src/credentials/refresher.js'
import { CredentialSources } from '../src/credentials/sources.js'
import type { CredentialFetcher, FetchedCredentials } from '../src/credentials/types.js'
import { createLogger } from '../src/server/logger.js'
import { LogCapture } from './support/pullpin.js'
import { ManualClock } from './support/manual-clock.js'
import { until } from './support/until.js'

const PLUGIN = new URL('./fixtures/credential-provider/plugin.mjs', import.meta.url).pathname
const silent = createLogger({ level: 'silent' })

async function pluginEnv (mode: string, extra: Record<string, string> = {}): Promise<{ env: Record<string, string>; password: string; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-plugin-'))
  const password = `Plugin-${randomBytes(12).toString('hex')}`
  await writeFile(join(dir, 'password'), password)
  return { dir, password, env: { PLUGIN_MODE: mode, PLUGIN_PASSWORD_FILE: join(dir, 'password'), PLUGIN_REQUEST_LOG: join(dir, 'requests'), PLUGIN_USER: 'acr-user', ...extra } }
}

function execFetcher (env: Record<string, string>, more: { timeoutSeconds?: number; defaultCacheDurationSeconds?: number } = {}, now?: () => number): CredentialFetcher {
  return createExecFetcher({ config: { command: process.execPath, args: [PLUGIN], env, ...more }, images: ['myreg.azurecr.io/app'], ...(now !== undefined ? { now } : {}) })
}

t.test('config: source is a Secret, ecr or exec, never a mix', async t => {
  const c = parseConfig(`
pullSecrets:
  - { name: a, source: { namespace: ns, name: s } }
  - { name: b, registries: ["*.dkr.ecr.*.amazonaws.com"], source: { ecr: { region: eu-west-1, registryIds: ["123456789012"] } } }
  - { name: c, registries: ["*.azurecr.io"], source: { exec: { command: /plugins/acr, args: [], env: {}, images: [x.azurecr.io/y] } } }
  - { name: d, registries: ["x.azurecr.io"], source: { exec: { command: /plugins/acr } } }
`)
  t.same(c.pullSecrets[1]?.source, { ecr: { region: 'eu-west-1', registryIds: ['123456789012'] } })
  t.throws(() => parseConfig('pullSecrets: [{ name: a, source: { namespace: ns, name: s, ecr: { region: x } } }]'), { code: 'PULLPIN_CONFIG_INVALID', message: /\/pullSecrets\/0\/source/ })
  t.throws(() => parseConfig('pullSecrets: [{ name: a, source: { ecr: { region: x }, exec: { command: /p } } }]'), { message: /\/pullSecrets\/0\/source/ })
  t.throws(() => parseConfig('pullSecrets: [{ name: a, source: { exec: { command: relative/p, images: [a/b] } } }]'), { message: /\/pullSecrets\/0\/source/ })
  t.throws(() => parseConfig('pullSecrets: [{ name: a, registries: ["*.azurecr.io"], source: { exec: { command: /p } } }]'), { message: /\/pullSecrets\/0\/source\/exec: needs images/ })
  t.throws(() => parseConfig('pullSecrets: [{ name: a, source: { ecr: { region: eu-west-1, registryIds: ["12"] } } }]'), { message: /\/pullSecrets\/0\/source/ })
})

t.test('Go durations as metav1.Duration writes them', async t => {
  t.equal(parseGoDuration('6h0m0s'), 6 * 3600_000)
  t.equal(parseGoDuration('1m30.5s'), 90_500)
  t.equal(parseGoDuration('300ms'), 300)
  t.equal(parseGoDuration('0'), 0)
  t.equal(parseGoDuration('0s'), 0)
  for (const bad of ['', '6', 'h', '1x', '1h ', '.s']) t.equal(parseGoDuration(bad), undefined, bad)
})

t.test('exec: the kubelet protocol, with the plugin\'s cache duration honoured', async t => {
  const p = await pluginEnv('ok', { PLUGIN_REGISTRY: '*.azurecr.io', PLUGIN_CACHE_DURATION: '2h0m0s' })
  const now = 1_000_000
  const got = await execFetcher(p.env, {}, () => now).fetch(new AbortController().signal)
  t.same(got.auths, { '*.azurecr.io': { username: 'acr-user', password: p.password } })
  t.equal(got.expiresAt, now + 2 * 3600_000)
  const request = JSON.parse((await readFile(p.env.PLUGIN_REQUEST_LOG!, 'utf8')).trim()) as unknown
  t.same(request, { apiVersion: 'credentialprovider.kubelet.k8s.io/v1', kind: 'CredentialProviderRequest', image: 'myreg.azurecr.io/app' })

  const q = await pluginEnv('ok')
  const noDuration = await execFetcher(q.env, { defaultCacheDurationSeconds: 60 }, () => now).fetch(new AbortController().signal)
  t.equal(noDuration.expiresAt, now + 60_000, 'without cacheDuration: defaultCacheDurationSeconds')
})

t.test('exec: a plugin that never answers is killed at the timeout', async t => {
  const p = await pluginEnv('slow')
  await t.rejects(execFetcher(p.env, { timeoutSeconds: 0.5 }).fetch(new AbortController().signal), { code: 'PULLPIN_CREDENTIAL_SOURCE', message: /no answer within 500 ms: killed/ })
})

t.test('exec: a failing plugin gives its status and a redacted stderr, never the secret', async t => {
  const p = await pluginEnv('fail')
  const err = await execFetcher(p.env).fetch(new AbortController().signal).then(() => undefined, (e: Error) => e)
  t.match(err, { code: 'PULLPIN_CREDENTIAL_SOURCE', message: /exited with status 3; stderr: could not get a token: access denied/ })
  t.notMatch(err?.message ?? '', p.password)
  t.notMatch(err?.stack ?? '', p.password)
})

t.test('exec: malformed answers are clear errors without their content', async t => {
  const p = await pluginEnv('malformed')
  const err = await execFetcher(p.env).fetch(new AbortController().signal).then(() => undefined, (e: Error) => e)
  t.match(err, { message: /malformed CredentialProviderResponse for myreg\.azurecr\.io\/app: not JSON/ })
  t.notMatch(err?.message ?? '', p.password)
  const q = await pluginEnv('wrong-kind')
  await t.rejects(execFetcher(q.env).fetch(new AbortController().signal), { message: /kind is not CredentialProviderResponse/ })
  await t.rejects(createExecFetcher({ config: { command: '/nonexistent/plugin' }, images: ['a/b'] }).fetch(new AbortController().signal), { message: /cannot run: ENOENT/ })
})

// ---- ECR over its JSON 1.1 protocol ----

interface EcrCall { target: string | undefined; contentType: string | undefined; authorization: string | undefined; body: unknown }
type EcrAnswer = { status: number; body: unknown }

async function startFakeEcr (answers: Array<EcrAnswer | (() => EcrAnswer)>): Promise<{ url: string; calls: EcrCall[]; server: Server }> {
  const calls: EcrCall[] = []
  const server = createServer((req: IncomingMessage, res) => {
    let text = ''
    req.on('data', (c: Buffer) => { text += c.toString() })
    req.on('end', () => {
      calls.push({ target: req.headers['x-amz-target'] as string | undefined, contentType: req.headers['content-type'], authorization: req.headers.authorization, body: JSON.parse(text || '{}') })
      const next = answers.length > 1 ? answers.shift()! : answers[0]!
      const a = typeof next === 'function' ? next() : next
      res.writeHead(a.status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': 'req-1' })
      res.end(JSON.stringify(a.body))
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  return { url: `http://127.0.0.1:${port}`, calls, server }
}

const AWS_TEST_CREDENTIALS = { accessKeyId: 'AKIDPULLPINTEST', secretAccessKey: 'test-secret-key' }

function ecrToken (password: string, expiresAtSeconds: number, endpoint = 'https://123456789012.dkr.ecr.eu-west-1.amazonaws.com'): EcrAnswer {
  return { status: 200, body: { authorizationData: [{ authorizationToken: Buffer.from(`AWS:${password}`).toString('base64'), expiresAt: expiresAtSeconds, proxyEndpoint: endpoint }] } }
}

t.test('ecr: GetAuthorizationToken through the real SDK, signed with the credentials given', async t => {
  const expires = Math.floor(Date.now() / 1000) + 12 * 3600
  const ecr = await startFakeEcr([ecrToken('ecr-pw-1', expires)])
  t.teardown(() => ecr.server.close())
  const fetcher = createEcrFetcher({ config: { region: 'eu-west-1', registryIds: ['123456789012'], endpoint: ecr.url }, credentials: AWS_TEST_CREDENTIALS, maxAttempts: 1 })
  const got = await fetcher.fetch(new AbortController().signal)
  t.same(got.auths, { '123456789012.dkr.ecr.eu-west-1.amazonaws.com': { username: 'AWS', password: 'ecr-pw-1' } })
  t.equal(got.expiresAt, expires * 1000)
  t.equal(ecr.calls[0]?.target, 'AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken')
  t.equal(ecr.calls[0]?.contentType, 'application/x-amz-json-1.1')
  t.match(ecr.calls[0]?.authorization, /^AWS4-HMAC-SHA256 Credential=AKIDPULLPINTEST\/\d{8}\/eu-west-1\/ecr\/aws4_request/)
  t.same(ecr.calls[0]?.body, { registryIds: ['123456789012'] })
})

t.test('ecr: throttling and access denied are clear errors; the SDK retries throttling', async t => {
  const throttled = { status: 400, body: { __type: 'ThrottlingException', message: 'Rate exceeded' } }
  const denied = { status: 400, body: { __type: 'AccessDeniedException', message: 'User: arn:aws:sts::123456789012:assumed-role/pullpin is not authorized to perform: ecr:GetAuthorizationToken' } }
  const ecr = await startFakeEcr([throttled, denied])
  t.teardown(() => ecr.server.close())
  const once = createEcrFetcher({ config: { region: 'eu-west-1', endpoint: ecr.url }, credentials: AWS_TEST_CREDENTIALS, maxAttempts: 1 })
  await t.rejects(once.fetch(new AbortController().signal), { code: 'PULLPIN_CREDENTIAL_SOURCE', message: /ecr:eu-west-1: GetAuthorizationToken failed: ThrottlingException \(HTTP 400\): Rate exceeded/ })
  await t.rejects(once.fetch(new AbortController().signal), { message: /AccessDeniedException \(HTTP 400\): User: arn:aws:sts::123456789012:assumed-role\/pullpin is not authorized/ })

  const expires = Math.floor(Date.now() / 1000) + 3600
  const flaky = await startFakeEcr([throttled, ecrToken('after-throttle', expires)])
  t.teardown(() => flaky.server.close())
  const retrying = createEcrFetcher({ config: { region: 'eu-west-1', endpoint: flaky.url }, credentials: AWS_TEST_CREDENTIALS, maxAttempts: 2 })
  const got = await retrying.fetch(new AbortController().signal)
  t.equal(Object.values(got.auths)[0]?.password, 'after-throttle')
  t.equal(flaky.calls.length, 2)
})

t.test('ecr: an already expired token is never handed out; the last good one is kept until it expires', async t => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1))
  const nowS = (): number => Math.floor(clock.now() / 1000)
  const ecr = await startFakeEcr([() => ecrToken('good', nowS() + 3600), () => ecrToken('stale', nowS() - 10)])
  t.teardown(() => ecr.server.close())
  const failures: string[] = []
  const r = new CredentialRefresher({
    name: 'ecr-credentials',
    fetcher: createEcrFetcher({ config: { region: 'eu-west-1', endpoint: ecr.url }, credentials: AWS_TEST_CREDENTIALS, maxAttempts: 1, now: clock.now }),
    logger: silent,
    metrics: { refreshFailure: (s) => failures.push(s) },
    clock,
    random: () => 0.5,
  })
  r.start()
  t.teardown(() => r.stop())
  await until('first token', () => r.current() !== undefined)
  t.equal(r.current()?.auths['123456789012.dkr.ecr.eu-west-1.amazonaws.com']?.password, 'good')
  t.equal(clock.nextAt(), clock.now() + 1800_000, 'refresh due at half the lifetime')
  clock.advance(1800_000)
  await until('the expired answer counted as a failure', () => failures.length === 1)
  t.match(r.error, /already expired/)
  t.equal(r.current()?.auths['123456789012.dkr.ecr.eu-west-1.amazonaws.com']?.password, 'good', 'last good kept')
  clock.advance(1800_000)
  await until('expired', () => r.current() === undefined)
  t.equal(r.secondsUntilExpiry(), undefined)
})

// ---- refresher rules on a manual clock ----

function scripted (script: Array<(now: number) => FetchedCredentials | Error>, now: () => number): CredentialFetcher & { calls: number } {
  const f = {
    description: 'test:scripted',
    calls: 0,
    async fetch (): Promise<FetchedCredentials> {
      const step = script[Math.min(f.calls++, script.length - 1)]!(now())
      if (step instanceof Error) throw step
      return step
    },
  }
  return f
}

const creds = (password: string, expiresAt: number): FetchedCredentials => ({ auths: { 'r.example': { username: 'u', password } }, expiresAt })

t.test('refresher: half the lifetime with jitter, backoff on failure, never past expiry', async t => {
  const clock = new ManualClock(0)
  const HOUR = 3600_000
  let random = 0.5
  const fetcher = scripted([
    (now) => creds('one', now + 2 * HOUR),
    () => new Error('boom 1'),
    () => new Error('boom 2'),
    (now) => creds('two', now + 2 * HOUR),
  ], clock.now)
  const changes: string[] = []
  const log = new LogCapture()
  const r = new CredentialRefresher({ name: 's', fetcher, logger: createLogger({ level: 'debug', destination: log }), clock, random: () => random, backoff: { initialMs: 1000, maxMs: 60_000 } })
  r.onChange(() => changes.push(r.current()?.auths['r.example']?.password ?? 'none'))
  r.start()
  t.teardown(() => r.stop())
  await until('first', () => changes.length === 1)
  t.equal(clock.nextAt(), HOUR, 'random 0.5: exactly half of two hours')
  random = 1
  clock.advance(HOUR)
  await until('first failure', () => fetcher.calls === 2 && clock.nextAt() !== undefined && clock.nextAt()! < 2 * HOUR)
  // equal jitter: uniform in [ceiling/2, ceiling]; random 1 gives the ceiling.
  t.equal(clock.nextAt(), HOUR + 1000, 'retry after the first backoff step')
  clock.advance(1000)
  await until('second failure', () => fetcher.calls === 3 && clock.nextAt() === HOUR + 1000 + 2000)
  t.equal(r.current()?.auths['r.example']?.password, 'one', 'still the last good one')
  clock.advance(2000)
  await until('renewed', () => changes.length === 2)
  t.same(changes, ['one', 'two'])
  // random 1 → 0.6 of the lifetime, the top of the jitter band.
  t.equal(clock.nextAt(), HOUR + 3000 + 0.6 * 2 * HOUR)
  t.notMatch(log.text, /"(one|two)"/, 'no password in the logs')
})

t.test('refresher: a failing source lets what it holds expire, and says so', async t => {
  const clock = new ManualClock(0)
  const fetcher = scripted([(now) => creds('only', now + 10_000), () => new Error('down')], clock.now)
  const r = new CredentialRefresher({ name: 's', fetcher, logger: silent, clock, random: () => 0.5, backoff: { initialMs: 60_000, maxMs: 60_000 } })
  const changes: Array<string | undefined> = []
  r.onChange(() => changes.push(r.current()?.auths['r.example']?.password))
  r.start()
  t.teardown(() => r.stop())
  await until('first', () => changes.length === 1)
  clock.advance(5000)
  await until('failed', () => fetcher.calls === 2 && r.error !== undefined)
  // The backoff (60 s) is longer than what is left: the retry comes just before the expiry instead.
  t.equal(clock.nextAt(), 9000)
  clock.advance(1000)
  t.equal(r.current()?.auths['r.example']?.password, 'only')
  clock.advance(4000)
  await until('expired', () => changes.length === 2)
  t.same(changes, ['only', undefined])
  t.equal(r.current(), undefined)
})

t.test('sources: dockerconfigjson for lookups names the source, never holds an expired answer', async t => {
  const clock = new ManualClock(0)
  const config = parseConfig('pullSecrets: [{ name: e, source: { ecr: { region: eu-west-1 } } }, { name: plain }]')
  const fetcher = scripted([(now) => creds('pw', now + 1000)], clock.now)
  const sources = new CredentialSources({ rules: config.pullSecrets, logger: silent, clock, fetcherFor: (rule) => rule.name === 'e' ? fetcher : undefined })
  t.equal(sources.size, 1)
  t.same(sources.dockerConfigs(), [])
  sources.start()
  t.teardown(() => sources.stop())
  await sources.firstAttempts()
  const [only] = sources.dockerConfigs()
  t.equal(only?.source, 'test:scripted (e)')
  t.same(JSON.parse(only!.json as string), { auths: { 'r.example': { username: 'u', password: 'pw', auth: Buffer.from('u:pw').toString('base64') } } })
  clock.advance(1000)
  t.same(sources.dockerConfigs(), [])
  t.equal(sources.dockerConfig('e'), undefined)
})

t.test('refresher: freshness says expiring only once a refresh is overdue, expired once nothing is held', async t => {
  const clock = new ManualClock(0)
  const fetcher = scripted([(now) => creds('x', now + 100_000), () => new Error('down')], clock.now)
  const r = new CredentialRefresher({ name: 's', fetcher, logger: silent, clock, random: () => 0.5, backoff: { initialMs: 200_000, maxMs: 200_000 } })
  t.same(r.freshness(), { state: 'expired' }, 'before the first fetch')
  r.start()
  t.teardown(() => r.stop())
  await until('first', () => r.current() !== undefined)
  t.equal(r.freshness(), undefined)
  clock.advance(50_000)
  await until('refresh failed', () => r.error !== undefined)
  t.equal(r.freshness(), undefined, 'half the lifetime left: not yet')
  clock.advance(30_000)
  t.same(r.freshness(), { state: 'expiring', secondsLeft: 20 })
  clock.advance(20_000)
  t.same(r.freshness(), { state: 'expired' })
})

t.test('exec: a short previous token a failing plugin echoes to stderr is redacted too', async t => {
  const p = await pluginEnv('ok', { PLUGIN_REGISTRY: 'r.example' })
  await writeFile(p.env.PLUGIN_PASSWORD_FILE!, 'u:shortpw1')
  const fetcher = execFetcher(p.env)
  await fetcher.fetch(new AbortController().signal)
  // Same plugin, now failing (mode from the environment, read on each run) and still holding the old token.
  p.env.PLUGIN_MODE = 'fail'
  const err = await fetcher.fetch(new AbortController().signal).then(() => undefined, (e: Error) => e)
  t.match(err?.message, /exited with status 3; stderr: could not get a token: access denied for role; token was \[redacted\]/)
  t.notMatch(err?.message ?? '', 'shortpw1')
})

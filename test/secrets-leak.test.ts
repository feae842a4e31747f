// Secrets never appear in any output channel. The registry credentials carry a recognisable
// password; pullpin then does real work with them (pins through htpasswd and token auth, meets
// refusals, registry errors that echo the Authorization header back, a malformed config, the
// `pullpin resolve` command), and every channel is searched for the password, its base64, the
// base64 of user:password and every bearer token pullpin sent: logs (captured at debug level),
// admission responses (warnings, audit annotations, the decoded patch), HTTP error bodies,
// /metrics, thrown error messages and stacks, and `pullpin resolve` output (text and --json).
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { admissionReview, decodePatch, podFromWorkload } from './support/pods.js'
import { startPullpin, type RunningPullpin } from './support/pullpin.js'
import { gitSha, startPinningEnv, type PinningEnv } from './support/pinning-env.js'
import { dockerConfigJsonFor } from './support/registry.js'
import { main } from '../src/cli.js'
import { createApp } from '../src/app.js'
import { parseConfig } from '../src/policy/config.js'
import { createLogger } from '../src/server/logger.js'
import { LogCapture } from './support/pullpin.js'
import { SelfSignedDirectorySource } from '../src/certs/self-signed.js'
import type { Pod } from '../src/mutate/pod.js'

const USER = 'pullpin'
const PASSWORD = `Canary-${randomBytes(12).toString('hex')}-pw`
const WRONG_PASSWORD = `Wrong-${randomBytes(12).toString('hex')}-pw`

/** Every form a leaked credential could take. */
function needles (password: string): string[] {
  return [
    password,
    Buffer.from(password).toString('base64'),
    Buffer.from(`${USER}:${password}`).toString('base64'),
    Buffer.from(`${USER}:${password}`).toString('base64url'),
    encodeURIComponent(password),
  ]
}

/** Everything pullpin wrote anywhere, gathered as text. */
const channels: Array<{ channel: string; text: string }> = []
const bearerTokens = new Set<string>()

function record (channel: string, text: string): void {
  channels.push({ channel, text })
  // The patch is base64 JSON: search the decoded text too.
  for (const m of text.matchAll(/"patch":"([A-Za-z0-9+/=]+)"/g)) channels.push({ channel: `${channel} (decoded patch)`, text: Buffer.from(m[1]!, 'base64').toString('utf8') })
}

function podWith (images: string[], namespace = 'team-a'): Pod {
  const pod = podFromWorkload('deployment-web', { namespace, ownerUid: 'rs-leak' })
  pod.spec!.containers = images.map((image, i) => ({ ...pod.spec!.containers![0]!, name: `c${i}`, image }))
  return pod
}

function io () {
  const out: string[] = []
  const err: string[] = []
  return { out, err, io: { out: (s: string) => out.push(s), err: (s: string) => err.push(s), env: {} } }
}

async function exercise (t: Test, env: PinningEnv, p: RunningPullpin, label: string): Promise<void> {
  const sha = gitSha(`leak-${label}`)
  await env.registry.push({ seed: `leak-${label}` }, 'leak/app', ['latest', sha])
  await env.registry.push({ seed: `leak-${label}-echo` }, 'leak/echo', ['latest', gitSha(`echo-${label}`)])
  // A registry that echoes the credentials it was sent, in error bodies and challenges.
  env.proxy.fault = (r) => {
    const authz = r.headers.authorization
    if (authz?.startsWith('Bearer ') === true) bearerTokens.add(authz.slice(7))
    if (!r.pathname.startsWith('/v2/leak/echo/')) return undefined
    const echo = `${authz ?? ''} ${PASSWORD}`
    if (r.pathname.endsWith('/manifests/main')) return { action: 'status', status: 400, body: { errors: [{ code: 'DENIED', message: echo, detail: { authorization: authz, password: PASSWORD } }] } }
    if (r.pathname.endsWith('/manifests/v2')) return { action: 'status', status: 401, headers: { 'www-authenticate': `Basic realm="${echo}"` } }
    if (r.pathname.endsWith('/manifests/v3')) return { action: 'status', status: 500, body: echo }
    return undefined
  }
  t.teardown(() => { env.proxy.fault = undefined })
  const reviews: Array<[Pod, Record<string, unknown>]> = [
    [podWith([`${env.host}/leak/app:latest`, `${env.host}/leak/app:nope`]), {}],
    [podWith([`${env.host}/leak/app:latest`], 'team-b'), {}],
    [podWith([`${env.host}/leak/app`]), { dryRun: true }],
    [podWith([`${env.host}/leak/echo:main`, `${env.host}/leak/echo:v2`, `${env.host}/leak/echo:v3`]), {}],
  ]
  for (const [pod, opts] of reviews) {
    const res = await p.post('/mutate', admissionReview(pod, opts))
    t.equal(res.status, 200)
    record(`${label}: admission response`, res.text)
  }
  const pinned = await p.post('/mutate', admissionReview(podWith([`${env.host}/leak/app:latest`])))
  t.equal(decodePatch(pinned.json.response).find((op: any) => op.path === '/spec/containers/0/image')?.value, `${env.host}/leak/app:${sha}`, 'credentials were really used')
  const bad = await p.post('/mutate', '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":')
  t.equal(bad.status, 400)
  record(`${label}: HTTP 400 body`, bad.text)
  record(`${label}: /metrics`, (await p.get('/metrics')).text)
  record(`${label}: /readyz`, (await p.get('/readyz')).text)
}

t.test('htpasswd registry: logs, responses, errors and metrics hold no credential', async t => {
  const env = await startPinningEnv({ username: USER, password: PASSWORD })
  t.teardown(() => env.stop())
  const p = await startPullpin(env.configYaml())
  t.teardown(() => p.close())
  await exercise(t, env, p, 'htpasswd')
  t.match(p.logs.text, /answered 401|HTTP 400|HTTP 500/, 'registry errors were logged')
  record('htpasswd: logs', p.logs.text)

  // Wrong credentials: the registry refuses them; the refusal is reported without them.
  const wrongFile = join(env.dir, 'wrong.json')
  await writeFile(wrongFile, dockerConfigJsonFor(env.host, USER, WRONG_PASSWORD))
  const q = await startPullpin(env.configYaml().replace(env.dockerConfigFile, wrongFile))
  t.teardown(() => q.close())
  const refused = await q.post('/mutate', admissionReview(podWith([`${env.host}/leak/app:latest`])))
  t.match(refused.json.response.warnings, [/refused the credentials/])
  record('wrong password: admission response', refused.text)
  record('wrong password: /metrics', (await q.get('/metrics')).text)
  record('wrong password: logs', q.logs.text)

  // `pullpin resolve`, text and JSON, with good and with refused credentials.
  const common = ['--ca-file', env.registry.caFile, '--allow-private']
  for (const [file, json] of [[env.dockerConfigFile, true], [env.dockerConfigFile, false], [wrongFile, true]] as const) {
    const a = io()
    const code = await main(['resolve', `${env.host}/leak/app:latest`, '--docker-config', file, ...common, ...(json ? ['--json'] : [])], a.io)
    t.equal(code, file === wrongFile ? 1 : 0)
    record(`resolve ${json ? '--json' : 'text'} (${file === wrongFile ? 'refused' : 'ok'}): stdout`, a.out.join(''))
    record(`resolve ${json ? '--json' : 'text'} (${file === wrongFile ? 'refused' : 'ok'}): stderr`, a.err.join(''))
  }
})

t.test('token auth: neither the password nor the bearer tokens leak', async t => {
  const env = await startPinningEnv({ auth: 'token', username: USER, password: PASSWORD })
  t.teardown(() => env.stop())
  const p = await startPullpin(env.configYaml())
  t.teardown(() => p.close())
  await exercise(t, env, p, 'token')
  t.ok(bearerTokens.size > 0, 'pullpin sent bearer tokens')
  t.ok(env.registry.tokenServer!.log.some(r => r.authenticated && r.account === USER), 'the token server saw the credentials')
  record('token: logs', p.logs.text)
})

t.test('a malformed credentials file: the error names the file, not its content', async t => {
  const env = await startPinningEnv({ username: USER, password: PASSWORD })
  t.teardown(() => env.stop())
  const files: Array<[string, string]> = [
    ['no-colon.json', JSON.stringify({ auths: { [env.host]: { auth: Buffer.from(`${USER}${PASSWORD}`).toString('base64') } } })],
    ['not-base64.json', JSON.stringify({ auths: { [env.host]: { auth: `${USER}:${PASSWORD}` } } })],
    ['not-json.json', `{"auths": {"${env.host}": {"auth": "${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}"`],
  ]
  for (const [name, content] of files) {
    const file = join(env.dir, name)
    await writeFile(file, content)
    const logs = new LogCapture()
    const err = await createApp({
      config: parseConfig(env.configYaml().replace(env.dockerConfigFile, file), 'leak test'),
      logger: createLogger({ level: 'trace', destination: logs }),
      certificates: new SelfSignedDirectorySource(join(env.dir, `certs-${name}`), { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] }),
      port: 0,
    }).then(async (app) => { await app.shutdown(); return undefined }, (e: Error) => e)
    t.ok(err, `${name}: refused`)
    t.match(err?.message, new RegExp(name.replace('.', '\\.')), `${name}: the message names the file`)
    record(`${name}: error message`, `${err?.message ?? ''}\n${err?.stack ?? ''}\n${JSON.stringify(err)}`)
    record(`${name}: logs`, logs.text)
    const a = io()
    t.not(await main(['resolve', `${env.host}/leak/app:latest`, '--docker-config', file, '--ca-file', env.registry.caFile, '--allow-private', '--json'], a.io), 0)
    record(`${name}: resolve stdout`, a.out.join(''))
    record(`${name}: resolve stderr`, a.err.join(''))
  }
})

t.test('the logger censors secret-named properties at any depth, in arrays, errors and bindings', async t => {
  const logs = new LogCapture()
  const logger = createLogger({ level: 'trace', destination: logs })
  const err = Object.assign(new Error('registry refused'), { code: 'E_TEST', password: PASSWORD, response: { headers: { Authorization: `Basic ${PASSWORD}` } } })
  const wrapped = new Error('lookup failed', { cause: Object.assign(new Error('inner'), { token: PASSWORD }) })
  const input = { a: { b: { c: { d: { password: PASSWORD, keep: 'visible-1' } } } }, list: [{ auth: PASSWORD }, 'visible-2'], headers: { 'Proxy-Authorization': PASSWORD } }
  logger.child({ token: PASSWORD, uid: 'visible-3' }).info(input, 'nested')
  logger.error({ err }, 'an error with secret fields')
  logger.error(wrapped)
  logger.info({ secret: { data: { '.dockerconfigjson': PASSWORD }, stringData: PASSWORD } }, 'a Secret')
  logger.error({ err: new AggregateError([Object.assign(new Error('one of many'), { authorization: `Bearer ${PASSWORD}` })], 'all failed') }, 'aggregate')
  const text = logs.text
  record('logger unit: logs', text)
  t.notMatch(text, PASSWORD)
  for (const v of ['visible-1', 'visible-2', 'visible-3', 'registry refused', 'E_TEST', 'lookup failed', 'one of many']) t.match(text, v, `${v} is kept`)
  const [nested, withErr, withCause] = logs.records
  t.equal(nested.a.b.c.d.password, '[redacted]')
  t.equal(nested.list[0].auth, '[redacted]')
  t.equal(nested.headers['Proxy-Authorization'], '[redacted]')
  t.equal(nested.token, '[redacted]', 'child bindings too')
  t.equal(withErr.err.type, 'Error', 'an error stays an error for the serializer')
  t.match(withErr.err.stack, /registry refused/)
  t.equal(withErr.err.password, '[redacted]')
  t.equal(withErr.err.response.headers.Authorization, '[redacted]')
  t.match(JSON.stringify(withCause), /inner/)
  t.same(input.a.b.c.d.password, PASSWORD, 'the logged object itself is not modified')
})

t.test('no channel contains the password, its base64, user:password in base64 or a bearer token', async t => {
  t.ok(channels.length >= 30, `${channels.length} outputs collected`)
  const forbidden = [...needles(PASSWORD), ...needles(WRONG_PASSWORD), ...bearerTokens]
  // The search itself must be able to find a leak.
  t.ok(forbidden.every(n => n.length >= 20), 'needles are long enough not to match by chance')
  const leaks: string[] = []
  for (const { channel, text } of channels) {
    for (const needle of forbidden) if (text.includes(needle)) leaks.push(`${channel}: ${needle.slice(0, 12)}…`)
  }
  t.same(leaks, [], 'no leak')
  t.ok(channels.some(c => c.text.includes('[redacted]') || c.text.includes('local-registry')), 'secret names may appear, contents never')
})

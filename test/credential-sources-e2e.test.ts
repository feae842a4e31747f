// Fetched credentials end to end (issue 17): a real pullpin over HTTPS, connected to the in-test
// API server, pinning against the real registry (htpasswd). The exec plugin
// (test/fixtures/credential-provider/plugin.mjs) and the in-test ECR endpoint hand out the
// registry's own users; the test shows the registry accepts what the source produced, that every
// copy gets it and then its rotation, and that no token reaches a log, /metrics or a warning.
import t, { type Test } from 'tap'
import { createServer } from 'node:http'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { startFakeApiServer, type FakeApiServer } from './support/fake-apiserver.js'
import { startRegistry, type RegistryFixture } from './support/registry.js'
import { startPullpin, type RunningPullpin } from './support/pullpin.js'
import { admissionReview, podFromWorkload } from './support/pods.js'
import { gitSha } from './support/pinning-env.js'
import { until } from './support/until.js'
import { connectCluster, createClusterIntegration } from '../src/cluster/index.js'
import { CredentialSources } from '../src/credentials/sources.js'
import { PullSecretState } from '../src/cluster/pull-secret-state.js'
import { parseConfig } from '../src/policy/config.js'
import { createLogger } from '../src/server/logger.js'
import { LogCapture } from './support/pullpin.js'
import { ManualClock } from './support/manual-clock.js'
import { CredentialStore } from '../src/registry/credential-store.js'
import { main } from '../src/cli.js'
import type { Pod } from '../src/mutate/pod.js'

const PLUGIN = new URL('./fixtures/credential-provider/plugin.mjs', import.meta.url).pathname
const AWS_TEST_CREDENTIALS = { accessKeyId: 'AKIDPULLPINTEST', secretAccessKey: 'test-secret-key' }

const secret = (): string => `Tok-${randomBytes(12).toString('hex')}`

/** Every form a leaked token could take. */
function needles (user: string, password: string): string[] {
  return [password, Buffer.from(password).toString('base64'), Buffer.from(`${user}:${password}`).toString('base64')]
}

function podWith (image: string, namespace: string): Pod {
  const pod = podFromWorkload('deployment-web', { namespace, ownerUid: `rs-${namespace}` })
  pod.spec!.containers = [{ ...pod.spec!.containers![0]!, name: 'app', image }]
  pod.spec!.initContainers = []
  return pod
}

async function cluster (tt: Test): Promise<FakeApiServer> {
  const server = await startFakeApiServer({ namespaces: ['default', 'kube-system', 'pullpin'] })
  tt.teardown(() => server.stop())
  for (const ns of ['team-a', 'team-b']) server.seed({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'pullpin.io/inject': 'enabled' } } })
  return server
}

const copyJson = (server: FakeApiServer, ns: string, name: string): any => {
  const s = server.get({ resource: 'secrets', namespace: ns, name })
  return s === undefined ? undefined : { annotations: s.metadata.annotations, config: JSON.parse(Buffer.from(s.data['.dockerconfigjson'], 'base64').toString('utf8')) }
}

function pinningYaml (registry: RegistryFixture): string {
  return `
pinning:
  enabled: true
registry:
  hosts: ["${registry.host}"]
  allowPrivate: ["${registry.host}"]
  options:
    "${registry.host}": { caFile: "${registry.caFile}", timeoutMs: 10000, retries: 1 }
`
}

async function review (p: RunningPullpin, pod: Pod): Promise<any> {
  const res = await p.post('/mutate', admissionReview(pod))
  return { ...res.json.response, text: res.text }
}

const patchText = (r: any): string => r.patch === undefined ? '' : Buffer.from(r.patch, 'base64').toString('utf8')

t.test('exec: the plugin\'s token pins against the real registry, reaches every copy, rotates, never leaks', async t => {
  const first = secret()
  const rotated = secret()
  const registry = await startRegistry({ username: 'plugin-user', password: first, extraUsers: { 'rotated-user': rotated } })
  t.teardown(() => registry.stop())
  const sha = gitSha('exec-1')
  await registry.push({ seed: 'exec-1' }, 'acme/app', ['latest', sha])
  const sha2 = gitSha('exec-2')
  await registry.push({ seed: 'exec-2' }, 'acme/other', ['latest', sha2])
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-e2e-plugin-'))
  const passwordFile = join(dir, 'secret')
  await writeFile(passwordFile, `plugin-user:${first}`)
  const server = await cluster(t)
  const credentials = new CredentialStore()
  const p = await startPullpin(`
pullSecrets:
  - name: plugin-credentials
    registries: ["${registry.host}"]
    source:
      exec:
        command: ${process.execPath}
        args: ["${PLUGIN}"]
        env: { PLUGIN_PASSWORD_FILE: "${passwordFile}", PLUGIN_CACHE_DURATION: "1h" }
        timeoutSeconds: 30
${pinningYaml(registry)}`, {
    cluster: connectCluster({ kubeConfig: server.kubeConfig() }),
    ownNamespace: 'pullpin',
    credentials,
    clusterOptions: { backoff: { initialMs: 20, maxMs: 200 }, leaderElection: { leaseDurationMs: 10_000, renewDeadlineMs: 8000, retryPeriodMs: 100 } },
  })
  t.teardown(() => p.close())

  // The leader writes the fetched credentials into a copy in every opted-in namespace.
  await until('copies', () => copyJson(server, 'team-a', 'plugin-credentials') !== undefined && copyJson(server, 'team-b', 'plugin-credentials') !== undefined, 20_000)
  for (const ns of ['team-a', 'team-b']) {
    const c = copyJson(server, ns, 'plugin-credentials')
    t.same(c.config.auths[registry.host], { username: 'plugin-user', password: first, auth: Buffer.from(`plugin-user:${first}`).toString('base64') }, ns)
    t.equal(c.annotations['pullpin.io/source'], `exec:${process.execPath} (plugin-credentials)`)
  }

  // What the plugin produced is what the registry accepts: the tag is pinned.
  const r1 = await review(p, podWith(`${registry.host}/acme/app:latest`, 'team-a'))
  t.match(patchText(r1), `${registry.host}/acme/app:${sha}`)
  t.match(patchText(r1), 'plugin-credentials')
  t.same(credentials.lookup({ registry: registry.host, repository: 'acme/app' } as any).map(c => c.username), ['plugin-user'])

  // Rotation: the plugin now answers with the other user; every copy and the lookups follow.
  await writeFile(passwordFile, `rotated-user:${rotated}`)
  p.app.fetchedCredentials.refreshers.get('plugin-credentials')!.refresh()
  await until('rotated copies', () => ['team-a', 'team-b'].every(ns => copyJson(server, ns, 'plugin-credentials')?.config.auths[registry.host]?.password === rotated), 20_000)
  t.same(credentials.lookup({ registry: registry.host, repository: 'acme/other' } as any).map(c => c.username), ['rotated-user'])
  const r2 = await review(p, podWith(`${registry.host}/acme/other:latest`, 'team-b'))
  t.match(patchText(r2), `${registry.host}/acme/other:${sha2}`)

  const metrics = (await p.get('/metrics')).text
  t.match(metrics, /pullpin_credential_expiry_seconds\{secret="plugin-credentials"\} [1-9]\d*/)
  t.match(metrics, /pullpin_credential_refresh_failures_total\{secret="plugin-credentials"\} 0/)
  const everything = [p.logs.text, metrics, r1.text, r2.text, patchText(r1), patchText(r2)].join('\n')
  t.ok(p.logs.lines.length > 0)
  for (const n of [...needles('plugin-user', first), ...needles('rotated-user', rotated)]) t.notOk(everything.includes(n), 'no token in logs, metrics or responses')
})

t.test('ecr: the SDK\'s token pins against the real registry and fills the copies; a refused refresh keeps the last good token', async t => {
  const password = secret()
  const registry = await startRegistry({ username: 'AWS', password })
  t.teardown(() => registry.stop())
  const sha = gitSha('ecr-1')
  await registry.push({ seed: 'ecr-1' }, 'team/app', ['latest', sha])
  let answer: 'token' | 'denied' = 'token'
  let calls = 0
  const ecr = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      calls++
      res.writeHead(answer === 'token' ? 200 : 400, { 'content-type': 'application/x-amz-json-1.1' })
      res.end(JSON.stringify(answer === 'token'
        ? { authorizationData: [{ authorizationToken: Buffer.from(`AWS:${password}`).toString('base64'), expiresAt: Math.floor(Date.now() / 1000) + 12 * 3600, proxyEndpoint: registry.url }] }
        : { __type: 'AccessDeniedException', message: 'not authorized to perform: ecr:GetAuthorizationToken' }))
    })
  })
  await new Promise<void>(resolve => ecr.listen(0, '127.0.0.1', resolve))
  t.teardown(() => ecr.close())
  const server = await cluster(t)
  const p = await startPullpin(`
pullSecrets:
  - name: ecr-credentials
    registries: ["${registry.host}"]
    source:
      ecr: { region: eu-west-1, registryIds: ["123456789012"], endpoint: "http://127.0.0.1:${(ecr.address() as { port: number }).port}" }
${pinningYaml(registry)}`, {
    cluster: connectCluster({ kubeConfig: server.kubeConfig() }),
    ownNamespace: 'pullpin',
    credentialSources: { awsCredentials: AWS_TEST_CREDENTIALS, ecrMaxAttempts: 1 },
    clusterOptions: { backoff: { initialMs: 20, maxMs: 200 }, leaderElection: { leaseDurationMs: 10_000, renewDeadlineMs: 8000, retryPeriodMs: 100 } },
  })
  t.teardown(() => p.close())
  await until('copies', () => ['team-a', 'team-b'].every(ns => copyJson(server, ns, 'ecr-credentials')?.config.auths[registry.host]?.password === password), 20_000)
  t.equal(copyJson(server, 'team-a', 'ecr-credentials').annotations['pullpin.io/source'], 'ecr:eu-west-1/123456789012 (ecr-credentials)')
  const r1 = await review(p, podWith(`${registry.host}/team/app:latest`, 'team-a'))
  t.match(patchText(r1), `${registry.host}/team/app:${sha}`)
  t.same(r1.warnings ?? [], [])

  // AWS now refuses: the refresh fails, the failure is counted, the copies keep the valid token.
  answer = 'denied'
  const before = calls
  p.app.fetchedCredentials.refreshers.get('ecr-credentials')!.refresh()
  await until('refresh failed', () => calls > before && p.app.fetchedCredentials.refreshers.get('ecr-credentials')!.error !== undefined)
  t.match(p.app.fetchedCredentials.refreshers.get('ecr-credentials')!.error, /AccessDeniedException/)
  t.match((await p.get('/metrics')).text, /pullpin_credential_refresh_failures_total\{secret="ecr-credentials"\} [1-9]/)
  t.equal(copyJson(server, 'team-b', 'ecr-credentials').config.auths[registry.host].password, password, 'last good kept')
  t.match(p.logs.text, /registry credentials refresh failed/)
  for (const n of needles('AWS', password)) t.notOk([p.logs.text, (await p.get('/metrics')).text, r1.text].join('\n').includes(n), 'no token in logs, metrics or responses')
})

t.test('a pod whose fetched secret has no valid credentials gets a warning (through HTTPS)', async t => {
  const p = await startPullpin(`
namespaces: { labels: { team-a: { pullpin.io/inject: enabled } } }
pullSecrets:
  - name: broken-credentials
    registries: ["r.example"]
    source: { exec: { command: /nonexistent/plugin } }
pinning: { enabled: true }
registry: { hosts: ["r.example"] }
`)
  t.teardown(() => p.close())
  await p.app.fetchedCredentials.firstAttempts()
  // Already pinned (a SHA tag): no registry lookup, only the injection.
  const r = await review(p, podWith(`r.example/a/b:${gitSha('warn')}`, 'team-a'))
  t.same(r.warnings, ['pullpin: broken-credentials has no valid credentials (expired or not fetched): pulls may fail'])
  t.match(patchText(r), 'broken-credentials')
})

t.test('standalone (no cluster) and `pullpin resolve`: the same sources feed the lookups', async t => {
  const password = secret()
  const registry = await startRegistry({ username: 'plugin-user', password })
  t.teardown(() => registry.stop())
  const sha = gitSha('standalone-1')
  await registry.push({ seed: 'standalone-1' }, 'acme/solo', ['latest', sha])
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-e2e-standalone-'))
  const passwordFile = join(dir, 'secret')
  await writeFile(passwordFile, `plugin-user:${password}`)
  const yaml = `
namespaces: { labels: { team-a: { pullpin.io/inject: enabled } } }
pullSecrets:
  - name: plugin-credentials
    registries: ["${registry.host}"]
    source:
      exec: { command: ${process.execPath}, args: ["${PLUGIN}"], env: { PLUGIN_PASSWORD_FILE: "${passwordFile}" } }
${pinningYaml(registry)}`
  const p = await startPullpin(yaml)
  t.teardown(() => p.close())
  await p.app.fetchedCredentials.firstAttempts()
  const r = await review(p, podWith(`${registry.host}/acme/solo:latest`, 'team-a'))
  t.match(patchText(r), `${registry.host}/acme/solo:${sha}`)
  t.same(r.warnings ?? [], [])

  const configFile = join(dir, 'pullpin.yaml')
  await writeFile(configFile, yaml)
  const out: string[] = []
  const err: string[] = []
  const code = await main(['resolve', `${registry.host}/acme/solo:latest`, '--config', configFile, '--ca-file', registry.caFile, '--allow-private', '--json'], { out: s => out.push(s), err: s => err.push(s), env: {} })
  t.equal(code, 0, err.join(''))
  t.match(JSON.parse(out.join('')), { shaTags: [sha] })
  for (const n of needles('plugin-user', password)) t.notOk([p.logs.text, out.join(''), err.join(''), r.text].join('\n').includes(n), 'no token in logs or output')
})

t.test('leader: nothing expired is ever written; copies wait for the next good token', async t => {
  const server = await cluster(t)
  const clock = new ManualClock(Date.now())
  let next: 'good' | 'fail' = 'good'
  let n = 0
  const fetcher = {
    description: 'test:scripted',
    async fetch () {
      if (next === 'fail') throw new Error('down')
      n++
      return { auths: { 'r.example': { username: 'u', password: `pw-${n}` } }, expiresAt: clock.now() + 60_000 }
    },
  }
  // A Secret-sourced entry beside it: its copy appearing in a namespace shows the leader has reconciled that namespace.
  server.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'plain-source', namespace: 'pullpin' }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': Buffer.from('{"auths":{"s.example":{"auth":"dTpw"}}}').toString('base64') } })
  const config = parseConfig(`
pullSecrets:
  - { name: fetched, registries: [r.example], source: { ecr: { region: eu-west-1 } } }
  - { name: plain, registries: [s.example], source: { namespace: pullpin, name: plain-source } }
`, 'test')
  const logs = new LogCapture()
  const logger = createLogger({ level: 'debug', destination: logs })
  const fetched = new CredentialSources({ rules: config.pullSecrets, logger, clock, random: () => 0.5, backoff: { initialMs: 600_000, maxMs: 600_000 }, fetcherFor: () => fetcher })
  const integration = createClusterIntegration({
    connection: connectCluster({ kubeConfig: server.kubeConfig() }),
    config,
    ownNamespace: 'pullpin',
    identity: 'replica-1',
    logger,
    fetched,
    backoff: { initialMs: 20, maxMs: 200 },
    leaderElection: { leaseDurationMs: 10_000, renewDeadlineMs: 8000, retryPeriodMs: 100 },
  })
  t.teardown(async () => { fetched.stop(); await integration.stop() })
  integration.start()
  fetched.start()
  const password = (ns: string): string | undefined => copyJson(server, ns, 'fetched')?.config.auths['r.example']?.password
  await until('copies of pw-1', () => password('team-a') === 'pw-1' && password('team-b') === 'pw-1', 20_000)
  const version = (ns: string): string => (server.get({ resource: 'secrets', namespace: ns, name: 'fetched' })).metadata.resourceVersion
  const before = version('team-a')

  // Every refresh fails from now on; the token expires.
  next = 'fail'
  clock.advance(30_000)
  clock.advance(30_000)
  await until('expired', () => fetched.dockerConfig('fetched') === undefined)
  server.seed({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-c', labels: { 'pullpin.io/inject': 'enabled' } } })
  await until('the leader reconciled team-c', () => server.get({ resource: 'secrets', namespace: 'team-c', name: 'plain' }) !== undefined, 20_000)
  t.match(logs.text, 'no valid fetched credentials')
  t.equal(copyJson(server, 'team-c', 'fetched'), undefined, 'no copy made from expired credentials')
  t.equal(version('team-a'), before, 'existing copies untouched')

  // A good token again: every copy, the new namespace's too, gets it.
  next = 'good'
  fetched.refreshers.get('fetched')!.refresh()
  await until('copies of pw-2', () => ['team-a', 'team-b', 'team-c'].every(ns => password(ns) === 'pw-2'), 20_000)
  t.notOk(logs.text.includes('pw-1') || logs.text.includes('pw-2'), 'no token in the logs')
})

t.test('two entries running the same plugin both feed the lookups and the copies', async t => {
  const server = await cluster(t)
  const config = parseConfig(`
pullSecrets:
  - { name: one, registries: [a.example], source: { exec: { command: /plugins/p, images: [a.example/x] } } }
  - { name: two, registries: [b.example], source: { exec: { command: /plugins/p, images: [b.example/x] } } }
`, 'test')
  const fetcherFor = (rule: { name: string }): { description: string; fetch: () => Promise<{ auths: Record<string, { username: string; password: string }>; expiresAt: number }> } => ({
    description: 'exec:/plugins/p',
    fetch: async () => ({ auths: { [`${rule.name === 'one' ? 'a' : 'b'}.example`]: { username: 'u', password: `pw-${rule.name}` } }, expiresAt: Date.now() + 3600_000 }),
  })
  const fetched = new CredentialSources({ rules: config.pullSecrets, logger: createLogger({ level: 'silent' }), fetcherFor })
  fetched.start()
  t.teardown(() => fetched.stop())
  await fetched.firstAttempts()
  const state = new PullSecretState(connectCluster({ kubeConfig: server.kubeConfig() }), config.pullSecrets, { logger: createLogger({ level: 'silent' }) }, fetched)
  t.same(state.readySources().map(s => s.source), ['exec:/plugins/p (one)', 'exec:/plugins/p (two)'])
  t.equal(state.dockerConfigs().length, 2)
})

// The cluster integration's pure parts (copy / ServiceAccount / placeholder plans, backoff, error
// mapping), its work queue, and its informer's restart rules against the in-test API server.
import t, { type Test } from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ApiException, CoreV1Api, KubeConfig, type V1Secret } from '@kubernetes/client-node'
import { startFakeApiServer } from './support/fake-apiserver.js'
import { LogCapture } from './support/pullpin.js'
import {
  CONTENT_HASH_ANNOTATION,
  MANAGED_BY_LABEL,
  SERVICE_ACCOUNT_ANNOTATION,
  contentHash,
  mergeDockerConfigs,
  planCopy,
  planPlaceholder,
  planServiceAccount,
  sourceState,
  type SecretLike,
  type SourceState,
} from '../src/cluster/copy-plan.js'
import { Backoff } from '../src/async/backoff.js'
import { describeError, microTime, statusOf } from '../src/cluster/kube-api.js'
import { WorkQueue } from '../src/cluster/work-queue.js'
import { connectCluster } from '../src/cluster/connection.js'
import { namespaceInformer, secretsNamedInformer } from '../src/cluster/resource-informers.js'
import { createLogger } from '../src/server/logger.js'
import { main as cliMain } from '../src/cli.js'
import { parseConfig } from '../src/policy/config.js'
import { until } from './support/until.js'

const b64 = (s: string): string => Buffer.from(s).toString('base64')
const DC = b64('{"auths":{"ghcr.io":{"auth":"Ym90OnB3"}}}')
const ref = { namespace: 'pullpin', name: 'src' }
const ready = sourceState(ref, { type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': DC } }) as Extract<SourceState, { kind: 'ready' }>

t.test('sourceState: only dockerconfigjson Secrets with content are copied', async (t) => {
  t.equal(ready.kind, 'ready')
  t.equal(ready.hash, contentHash(DC))
  t.same(sourceState(ref, undefined), { kind: 'missing', source: 'pullpin/src' })
  t.match(sourceState(ref, { type: 'Opaque', data: { x: 'eA==' } }), { kind: 'invalid', reason: /type is Opaque/ })
  t.match(sourceState(ref, { type: 'kubernetes.io/dockerconfigjson', data: {} }), { kind: 'invalid', reason: /no .dockerconfigjson/ })
})

t.test('planCopy', async (t) => {
  const base = { name: 'ghcr', namespace: 'team-a', sourceRef: ref, source: ready as SourceState }
  const create = planCopy({ ...base, wanted: true, existing: undefined })
  t.equal(create.kind, 'create')
  const body = (create as { body: SecretLike }).body
  t.equal(body.metadata?.labels?.[MANAGED_BY_LABEL], 'pullpin')
  t.equal(body.metadata?.annotations?.[CONTENT_HASH_ANNOTATION], ready.hash)
  const ours: SecretLike = { ...body, metadata: { ...body.metadata, uid: 'u1', resourceVersion: '7' } }
  t.same(planCopy({ ...base, wanted: true, existing: ours }), { kind: 'none' }, 'up to date')
  const rotated = sourceState(ref, { type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': b64('{"auths":{}}') } })
  const upd = planCopy({ ...base, source: rotated, wanted: true, existing: ours })
  t.match(upd, { kind: 'update', reason: 'rotated', body: { metadata: { resourceVersion: '7', uid: 'u1' } } }, 'update keeps the resourceVersion precondition')
  t.match(planCopy({ ...base, wanted: true, existing: { ...ours, data: { '.dockerconfigjson': b64('{}') } } }), { kind: 'update', reason: 'drifted' })
  t.same(planCopy({ ...base, wanted: false, existing: ours }), { kind: 'delete', uid: 'u1', resourceVersion: '7' })
  t.same(planCopy({ ...base, wanted: false, existing: undefined }), { kind: 'none' })
  const foreign: SecretLike = { metadata: { name: 'ghcr', namespace: 'team-a' }, type: 'Opaque' }
  t.match(planCopy({ ...base, wanted: true, existing: foreign }), { kind: 'conflict' })
  t.same(planCopy({ ...base, wanted: false, existing: foreign }), { kind: 'none' }, 'never delete what pullpin did not create')
  t.same(planCopy({ ...base, source: { kind: 'missing', source: 'pullpin/src' }, wanted: true, existing: ours }), { kind: 'none' }, 'a missing source keeps the last copy')
  t.same(planCopy({ ...base, source: { kind: 'missing', source: 'pullpin/src' }, wanted: true, existing: undefined }), { kind: 'none' })
  t.same(planCopy({ ...base, name: 'src', namespace: 'pullpin', wanted: true, existing: foreign }), { kind: 'none' }, 'the source itself is not a conflict')
})

t.test('planServiceAccount: adds what is missing, removes only what pullpin added', async (t) => {
  t.same(planServiceAccount({ imagePullSecrets: [{ name: 'mine' }] }, ['a', 'b']), { kind: 'patch', imagePullSecrets: [{ name: 'mine' }, { name: 'a' }, { name: 'b' }], managed: ['a', 'b'], added: ['a', 'b'], removed: [] })
  const synced = { metadata: { annotations: { [SERVICE_ACCOUNT_ANNOTATION]: 'a,b' } }, imagePullSecrets: [{ name: 'mine' }, { name: 'a' }, { name: 'b' }] }
  t.same(planServiceAccount(synced, ['a', 'b']), { kind: 'none' })
  t.match(planServiceAccount(synced, ['a']), { kind: 'patch', imagePullSecrets: [{ name: 'mine' }, { name: 'a' }], managed: ['a'], removed: ['b'] })
  t.match(planServiceAccount(synced, []), { kind: 'patch', imagePullSecrets: [{ name: 'mine' }], managed: [] })
  // A name the user had before pullpin wanted it is not recorded as pullpin's, so it survives opt-out.
  const userHad = { imagePullSecrets: [{ name: 'a' }] }
  const p = planServiceAccount(userHad, ['a', 'b'])
  t.match(p, { kind: 'patch', managed: ['b'] })
  t.match(planServiceAccount({ metadata: { annotations: { [SERVICE_ACCOUNT_ANNOTATION]: 'b' } }, imagePullSecrets: [{ name: 'a' }, { name: 'b' }] }, []), { imagePullSecrets: [{ name: 'a' }] })
})

t.test('mergeDockerConfigs and planPlaceholder', async (t) => {
  const other = sourceState({ namespace: 'p', name: 'o' }, { type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': b64('{"auths":{"ghcr.io":{"auth":"b3RoZXI6eA=="},"quay.io":{"auth":"cTp4"}}}') } }) as typeof ready
  const broken = sourceState({ namespace: 'p', name: 'b' }, { type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': b64('not json') } }) as typeof ready
  const merged = mergeDockerConfigs([ready, other, broken])
  const auths = JSON.parse(Buffer.from(merged.data, 'base64').toString()).auths
  t.same(Object.keys(auths).sort(), ['ghcr.io', 'quay.io'])
  t.equal(auths['ghcr.io'].auth, 'Ym90OnB3', 'first source wins for a registry in both')
  t.same(merged.sources, ['pullpin/src', 'p/o'])
  t.same(merged.skipped, ['p/b'])
  const placeholder: SecretLike = { metadata: { name: 'x', annotations: { 'secretgen.carvel.dev/image-pull-secret': '' } }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': b64('{}') } }
  const p = planPlaceholder(placeholder, merged)
  t.match(p, { kind: 'update', body: { data: { '.dockerconfigjson': merged.data }, metadata: { annotations: { 'secretgen.carvel.dev/image-pull-secret': '' } } } })
  t.same(planPlaceholder((p as { body: SecretLike }).body, merged), { kind: 'none' }, 'filled once')
  t.same(planPlaceholder({ ...placeholder, metadata: { name: 'x' } }, merged), { kind: 'none' }, 'not a placeholder without the annotation')
  t.same(planPlaceholder(placeholder, { ...merged, sources: [] }), { kind: 'none' }, 'nothing to fill it with')
})

t.test('mergeDockerConfigs keeps registry keys named like Object.prototype members', async (t) => {
  const odd = sourceState({ namespace: 'p', name: 'odd' }, { type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': b64('{"auths":{"constructor":{"auth":"Yzp4"},"__proto__":{"auth":"cDp4"},"toString":{"auth":"dDp4"}}}') } }) as Parameters<typeof mergeDockerConfigs>[0][number]
  const merged = mergeDockerConfigs([odd])
  const text = Buffer.from(merged.data, 'base64').toString()
  const auths = JSON.parse(text).auths
  t.same(Object.keys(auths).sort(), ['__proto__', 'constructor', 'toString'], 'no key is lost')
  t.equal(Object.getPrototypeOf({}), Object.prototype, 'and no prototype is touched')
})

t.test('backoff, MicroTime, error mapping', async (t) => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 1 })
  t.same([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1000, 1000])
  b.reset()
  t.equal(new Backoff({ initialMs: 100, random: () => 0 }).next(), 50, 'jitter keeps at least half')
  t.equal(b.next(), 100)
  t.equal(microTime(new Date('2026-01-02T03:04:05.678Z')), '2026-01-02T03:04:05.678000Z')
  const e = new ApiException(409, 'Conflict', JSON.stringify({ kind: 'Status', code: 409, reason: 'AlreadyExists', message: 'secrets "x" already exists' }), {})
  t.same(statusOf(e), { code: 409, reason: 'AlreadyExists', message: 'secrets "x" already exists' })
  t.equal(describeError(e), '409 AlreadyExists: secrets "x" already exists')
  t.equal(describeError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })), 'connect ECONNREFUSED 127.0.0.1:1')
  t.equal(statusOf(Object.assign(new Error('Gone'), { statusCode: 410 })).code, 410)
})

t.test('work queue: deduplicates, re-runs a key changed while in progress, retries failures', async (t) => {
  const seen: string[] = []
  let release: () => void = () => {}
  let failOnce = true
  const q = new WorkQueue({
    logger: createLogger({ level: 'silent' }),
    backoff: { initialMs: 10, maxMs: 20 },
    async process (key) {
      seen.push(key)
      if (key === 'slow') await new Promise<void>(resolve => { release = resolve })
      if (key === 'flaky' && failOnce) { failOnce = false; throw new Error('boom') }
    },
  })
  q.add('ignored-before-start')
  q.start()
  q.add('slow')
  q.add('a')
  q.add('a')
  await until('slow in progress', () => seen.includes('slow'))
  q.add('slow') // while in progress: runs again afterwards
  release()
  const until3 = Date.now() + 2000
  while (seen.length < 3 && Date.now() < until3) await new Promise(resolve => setTimeout(resolve, 2))
  release()
  await q.idle()
  t.same(seen, ['slow', 'a', 'slow'])
  q.add('flaky')
  const deadline = Date.now() + 2000
  while (seen.filter(k => k === 'flaky').length < 2 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
  t.equal(seen.filter(k => k === 'flaky').length, 2, 'retried after a failure')
  await q.stop()
  q.add('after-stop')
  t.equal(q.length, 0, 'nothing is queued once stopped')
  await q.idle()
  t.notOk(seen.includes('after-stop'))
})

t.test('informer: resumes after a clean close, relists after 410, retries errors with backoff, keeps foreign data out', async (t) => {
  const s = await startFakeApiServer({ namespaces: ['default', 'team-a'] })
  t.teardown(() => s.stop())
  s.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'ghcr', namespace: 'default' }, type: 'Opaque', data: { secret: b64('user data') } })
  const restarts: string[] = []
  const logs = new LogCapture()
  const informer = secretsNamedInformer(connectCluster({ kubeConfig: s.kubeConfig() }), 'ghcr', {
    logger: createLogger({ level: 'debug', destination: logs }),
    backoff: { initialMs: 20, maxMs: 100 },
    onRestart: (_name, reason) => restarts.push(reason),
  })
  const events: string[] = []
  informer.on(e => events.push(`${e.type} ${e.object.metadata?.namespace ?? ''}`))
  t.teardown(() => informer.stop())
  informer.start()
  await informer.waitForSync()
  t.equal((informer.get('ghcr', 'default') as V1Secret).data, undefined, 'a foreign Secret\'s data is not kept')
  const lists = (): number => s.requests.filter(r => r.method === 'GET' && r.path === '/api/v1/secrets' && !r.query.includes('watch=true')).length
  t.equal(lists(), 1)
  const core = s.kubeConfig().makeApiClient(CoreV1Api)

  // The server ends the watch (its timeout): resume from the resourceVersion, no relist.
  await s.waitForWatches('secrets')
  s.closeWatches()
  await s.waitForWatches('secrets')
  await core.createNamespacedSecret({ namespace: 'team-a', body: { metadata: { name: 'ghcr', labels: { [MANAGED_BY_LABEL]: 'pullpin' } }, data: { k: b64('ours') } } })
  await core.createNamespacedSecret({ namespace: 'team-a', body: { metadata: { name: 'other' } } })
  const deadline = Date.now() + 3000
  while (informer.get('ghcr', 'team-a') === undefined && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
  t.equal(lists(), 1, 'resumed by watch alone')
  t.same((informer.get('ghcr', 'team-a') as V1Secret).data, { k: b64('ours') }, 'pullpin\'s own copy keeps its data')
  t.equal(informer.get('other', 'team-a'), undefined, 'field selector: only that name')

  // Expired history: in-band 410 → relist.
  await s.pause()
  s.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'ghcr', namespace: 'default' }, type: 'Opaque', data: { secret: b64('changed') } })
  s.compact()
  await s.resume()
  while ((!restarts.includes('expired') || lists() < 2) && Date.now() < deadline + 5000) await new Promise(resolve => setTimeout(resolve, 5))
  t.ok(restarts.includes('error'), 'connection errors retried')
  t.ok(restarts.includes('expired'), '410 answered with a relist')
  t.ok(lists() >= 2)
  await s.waitForWatches('secrets')
  t.ok(events.includes('update default'), 'the change made during the outage arrived')
  // A 403 on list (RBAC) is retried with backoff and logged once at warn.
  s.compact()
  s.failNext('GET', '/api/v1/secrets', 403, 3)
  s.closeWatches()
  while (restarts.filter(r => r === 'error').length < 4 && Date.now() < deadline + 10000) await new Promise(resolve => setTimeout(resolve, 5))
  await s.waitForWatches('secrets')
  t.ok(informer.hasSynced)
  t.ok(logs.records.some(r => r.level === 40 && /list\/watch failed/.test(r.msg)))
})

t.test('informer: 410 Gone over and over backs off instead of relisting in a tight loop', async (t) => {
  const s = await startFakeApiServer({ namespaces: ['default'] })
  t.teardown(() => s.stop())
  const restarts: string[] = []
  const informer = namespaceInformer(connectCluster({ kubeConfig: s.kubeConfig() }), {
    logger: createLogger({ level: 'silent' }),
    backoff: { initialMs: 100, maxMs: 200 },
    onRestart: (_name, reason) => restarts.push(reason),
  })
  t.teardown(() => informer.stop())
  informer.start()
  await informer.waitForSync()
  await s.waitForWatches('namespaces')
  // A server whose lists and watches keep answering 410 (a watch cache behind etcd does that
  // right after a list): every expiry is followed by a relist, and the relists must back off.
  s.failNext('GET', '/api/v1/namespaces', 410, 6)
  const started = Date.now()
  s.closeWatches()
  await until('six expiries', () => restarts.filter(r => r === 'expired').length >= 6)
  await s.waitForWatches('namespaces')
  const ms = Date.now() - started
  t.comment(`six 410s in a row took ${ms} ms`)
  // Full jitter keeps at least half of each ceiling: 50 + 5 × 100 ms at the least.
  t.ok(ms >= 550, `backed off between relists (${ms} ms)`)
  t.ok(informer.hasSynced)
})

/** An API server that lists one namespace and accepts watches without ever answering them. */
async function silentWatchServer (t: Test): Promise<{ kubeConfig: KubeConfig; watches: () => number }> {
  let watches = 0
  const server = createServer((req, res) => {
    if (req.url?.includes('watch=true') === true) { watches++; return }
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ kind: 'NamespaceList', apiVersion: 'v1', metadata: { resourceVersion: '5' }, items: [{ metadata: { name: 'default', resourceVersion: '5' } }] }))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  const kubeConfig = new KubeConfig()
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'silent', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'anonymous' }],
    contexts: [{ name: 'silent', cluster: 'silent', user: 'anonymous' }],
    currentContext: 'silent',
  })
  return { kubeConfig, watches: () => watches }
}

t.test('informer: stop() returns while a watch request is still waiting for the API server', async (t) => {
  const { kubeConfig, watches } = await silentWatchServer(t)
  const informer = namespaceInformer(connectCluster({ kubeConfig }), { logger: createLogger({ level: 'silent' }) })
  informer.start()
  await informer.waitForSync()
  await until('watch sent', () => watches() === 1)
  const stopped = await Promise.race([
    informer.stop().then(() => 'stopped'),
    new Promise(resolve => setTimeout(() => resolve('still waiting'), 2000).unref()),
  ])
  t.equal(stopped, 'stopped', 'shutdown is not held up by an unanswered watch')
})

t.test('a kubeconfig that cannot be parsed: exit code 2, and none of its content in the message', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-kubeconfig-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'config')
  // Bad indentation two lines below a token: YAML parsers quote the lines around an error.
  await writeFile(file, 'apiVersion: v1\nusers:\n- name: u\n  user:\n    token: kubeconfig-Tok3n-do-not-print\n   bad: [\n')
  const examples = new URL('../examples/pullpin.yaml', import.meta.url).pathname
  const run = async (kubeconfig: string): Promise<{ code: number; err: string }> => {
    let err = ''
    const code = await cliMain(['serve', '--config', examples, '--kubeconfig', kubeconfig], { out: () => {}, err: (s) => { err += s }, env: {} })
    return { code, err }
  }
  const bad = await run(file)
  t.equal(bad.code, 2)
  t.match(bad.err, /cannot use kubeconfig .*config: bad indentation/)
  t.notOk(bad.err.includes('kubeconfig-Tok3n-do-not-print'), 'the token is not printed')
  const missing = await run(join(dir, 'missing'))
  t.equal(missing.code, 2)
  t.match(missing.err, /cannot use kubeconfig .*missing: ENOENT/)
})

t.test('the commented cluster settings of examples/pullpin.yaml are valid once uncommented', async (t) => {
  const text = await readFile(new URL('../examples/pullpin.yaml', import.meta.url), 'utf8')
  const uncommented = text
    .replace(/^(\s*)# (source: .*)$/m, '$1$2')
    .replace(/^# (injection|serviceAccounts|cluster|reports)\b/mg, '$1')
    .replace(/^#( {3}.*)$/mg, '$1')
  t.not(uncommented, text)
  const config = parseConfig(uncommented, 'examples/pullpin.yaml, uncommented')
  t.same(config.pullSecrets[0]?.source, { namespace: 'pullpin', name: 'ghcr-credentials-source' })
  t.equal(config.cluster.leaderElection.leaseName, 'pullpin-leader')
  t.equal(config.cluster.webhookConfigurationName, 'pullpin')
  t.equal(config.injection, 'pod')
  t.same(config.reports, { events: true, eventsPerSecond: 5, eventBurst: 25, policyReports: false, policyReportDelaySeconds: 10 })
})

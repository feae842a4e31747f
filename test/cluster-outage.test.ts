// A real pullpin (createApp with a cluster connection, HTTPS) on the in-test API server: admission
// works from the informers, keeps working while the API server is gone, and catches up when it
// comes back (resumed watch, or a relist after 410 Gone). /readyz reports the informers' state.
import t from 'tap'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node'
import { startFakeApiServer } from './support/fake-apiserver.js'
import { startPullpin } from './support/pullpin.js'
import { admissionReview, podFromWorkload } from './support/pods.js'
import { connectCluster } from '../src/cluster/index.js'
import { createMetrics } from '../src/metrics.js'
import { clusterTarget } from '../src/cli.js'
import { createApp } from '../src/app.js'
import { SelfSignedDirectorySource } from '../src/certs/self-signed.js'
import { parseConfig } from '../src/policy/config.js'
import { createLogger } from '../src/server/logger.js'
import { until } from './support/until.js'

const PASSWORD = 'outage-test-Pa55'
const dockerConfig = Buffer.from(JSON.stringify({ auths: { 'ghcr.io': { auth: Buffer.from(`bot:${PASSWORD}`).toString('base64') } } })).toString('base64')

const CONFIG = `
pullSecrets:
  - name: ghcr-credentials
    registries: [ghcr.io]
    source: { namespace: pullpin-system, name: ghcr-source }
  - name: hub-credentials
    registries: [docker.io]
`

const patchOf = (out: any): any[] => out?.response?.patch === undefined ? [] : JSON.parse(Buffer.from(out.response.patch, 'base64').toString('utf8'))
const injected = (out: any): string[] => patchOf(out).flatMap((op: any) => op.path === '/spec/imagePullSecrets' ? op.value.map((v: any) => v.name) : [])

t.test('the API server going away does not stop admission; pullpin catches up when it returns', async (t) => {
  const s = await startFakeApiServer({ namespaces: ['default', 'kube-system', 'pullpin-system', 'team-a', 'team-b'] })
  t.teardown(() => s.stop())
  s.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'ghcr-source', namespace: 'pullpin-system' }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': dockerConfig } })
  const metrics = createMetrics({ defaultMetrics: false })
  const run = await startPullpin(CONFIG, {
    cluster: connectCluster({ kubeConfig: s.kubeConfig() }),
    identity: 'replica-under-test',
    metrics,
    clusterOptions: { backoff: { initialMs: 20, maxMs: 150 }, leaderElection: { leaseDurationMs: 1000, renewDeadlineMs: 600, retryPeriodMs: 100 } },
  })
  t.teardown(() => run.close())
  const cluster = run.app.cluster!
  t.ok(cluster, 'createApp wired the cluster')
  await until('/readyz ready', async () => (await run.get('/readyz')).status === 200)
  await until('leader', () => cluster.isLeader())
  const core = s.kubeConfig().makeApiClient(CoreV1Api)
  await core.patchNamespace({ name: 'team-a', body: { metadata: { labels: { 'pullpin.io/inject': 'enabled' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
  await until('copy in team-a', () => s.get({ resource: 'secrets', namespace: 'team-a', name: 'ghcr-credentials' }) !== undefined)
  await until('informer saw the label', async () => injected((await run.post('/mutate', admissionReview(podFromWorkload('deployment-web', { namespace: 'team-a' })))).json).length === 2)
  t.equal(s.get({ group: 'coordination.k8s.io', resource: 'leases', namespace: 'pullpin-system', name: 'pullpin-leader' })?.spec.holderIdentity, 'replica-under-test', 'Lease in pullpin\'s namespace')

  // The API server goes away.
  await s.pause()
  const outageStarted = Date.now()
  let reviews = 0
  let failures = 0
  while (Date.now() - outageStarted < 1500) {
    const out = await run.post('/mutate', admissionReview(podFromWorkload('deployment-web', { namespace: 'team-a' })))
    reviews++
    if (out.status !== 200 || out.json.response.allowed !== true || injected(out.json).join() !== 'ghcr-credentials,hub-credentials' || out.json.response.warnings !== undefined) failures++
  }
  t.equal(failures, 0, `${reviews} reviews during a 1.5 s outage, all answered from the last known state`)
  const ready = await run.get('/readyz')
  t.equal(ready.status, 200, '/readyz stays ready: replicas keep serving admission')
  // Renew deadline 600 ms: well inside the outage, but timers run late on a loaded machine.
  await until('the leader stepped down: it could not renew its Lease', () => !cluster.isLeader(), 5000)
  t.pass('the leader stepped down: it could not renew its Lease')

  // A namespace nobody has seen: decided on a direct GET, which fails: admitted unchanged with a warning (failOpen), not guessed.
  const unknown = await run.post('/mutate', admissionReview(podFromWorkload('deployment-web', { namespace: 'brand-new' })))
  t.equal(unknown.json.response.allowed, true)
  t.equal(unknown.json.response.patch, undefined)
  t.match(unknown.json.response.warnings, [/internal error, pod admitted unchanged: .*Kubernetes API unavailable/])

  // Changes made while pullpin could not see them, and history compacted: it must relist.
  const ns = s.get({ resource: 'namespaces', name: 'team-b' })
  s.seed({ ...ns, metadata: { ...ns.metadata, labels: { ...ns.metadata.labels, 'pullpin.io/inject': 'enabled' } } })
  s.compact()
  await s.resume()
  const resumed = Date.now()
  await until('copy in team-b after the outage', () => s.get({ resource: 'secrets', namespace: 'team-b', name: 'ghcr-credentials' }) !== undefined, 8000)
  t.comment(`outage ${resumed - outageStarted} ms, ${reviews} reviews served during it; copy for a namespace labelled during the outage ${Date.now() - resumed} ms after the API server returned`)
  t.ok(cluster.isLeader(), 'leader again')
  const out = await run.post('/mutate', admissionReview(podFromWorkload('deployment-web', { namespace: 'team-b' })))
  t.same(injected(out.json), ['ghcr-credentials', 'hub-credentials'])

  const text = await metrics.registry.metrics()
  t.match(text, /pullpin_informer_restarts_total\{informer="namespaces",reason="error"\} [1-9]/, 'restarts after errors counted')
  t.match(text, /pullpin_informer_restarts_total\{informer="namespaces",reason="expired"\} [1-9]/, 'relist after 410 counted')
  t.match(text, /pullpin_leader 1/)
  t.notOk(run.logs.text.includes(PASSWORD) || run.logs.text.includes(dockerConfig), 'no secret material in the logs')
})

t.test('/readyz is unready until the informers have synced', async (t) => {
  const s = await startFakeApiServer({ namespaces: ['default', 'pullpin-system'] })
  t.teardown(() => s.stop())
  await s.pause()
  const run = await startPullpin(CONFIG, {
    cluster: connectCluster({ kubeConfig: s.kubeConfig() }),
    clusterOptions: { backoff: { initialMs: 20, maxMs: 100 } },
  })
  t.teardown(() => run.close())
  const before = await run.get('/readyz')
  t.equal(before.status, 503)
  t.match(JSON.parse(before.text), { checks: { cluster: /informers not synced: namespaces/ } })
  await s.resume()
  await until('ready after sync', async () => (await run.get('/readyz')).status === 200)
})

t.test('serviceaccount injection: pods are not patched for secrets; createApp builds no injection step', async (t) => {
  const s = await startFakeApiServer({ namespaces: ['default', 'pullpin-system', 'team-a'] })
  t.teardown(() => s.stop())
  s.seed({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: 'team-a' } })
  s.seed({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a', labels: { 'pullpin.io/inject': 'enabled' } } })
  const run = await startPullpin(`injection: serviceaccount\n${CONFIG}`, {
    cluster: connectCluster({ kubeConfig: s.kubeConfig() }),
    clusterOptions: { backoff: { initialMs: 20, maxMs: 100 }, leaderElection: { leaseDurationMs: 1000, renewDeadlineMs: 600, retryPeriodMs: 100 } },
  })
  t.teardown(() => run.close())
  await until('ServiceAccount patched', () => (s.get({ resource: 'serviceaccounts', namespace: 'team-a', name: 'default' })?.imagePullSecrets ?? []).length === 2)
  const out = await run.post('/mutate', admissionReview(podFromWorkload('deployment-web', { namespace: 'team-a' })))
  t.same(injected(out.json), [], 'the pod itself is left to the ServiceAccount admission plugin')
})

t.test('cluster detection: --kubeconfig/KUBECONFIG, else the pod\'s service account, else standalone', async (t) => {
  t.same(clusterTarget('/a/config:/b/config', {}), { kubeconfigFiles: ['/a/config', '/b/config'] })
  t.same(clusterTarget(undefined, { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' }, () => true), { inCluster: { host: '10.0.0.1', port: '443' } })
  t.equal(clusterTarget(undefined, { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' }, () => false), undefined, 'no token mounted: standalone')
  t.equal(clusterTarget('', {}), undefined)
  // An in-cluster connection points at the service address with the mounted CA and token file.
  const conn = connectCluster({ inCluster: { host: 'fd00::1', port: '443', serviceAccountDir: '/sa' } })
  t.equal(conn.server, 'https://[fd00::1]:443')
  t.match(conn.description, /in-cluster/)
})

t.test('a start that fails (port in use) leaves nothing running that would keep the process alive', async (t) => {
  const s = await startFakeApiServer({ namespaces: ['default', 'pullpin-system'] })
  t.teardown(() => s.stop())
  const taken = createNetServer()
  await new Promise<void>(resolve => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => taken.close(() => resolve())))
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-start-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const app = await createApp({
    config: parseConfig(CONFIG, 'test'),
    logger: createLogger({ level: 'silent' }),
    certificates: new SelfSignedDirectorySource(dir, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] }),
    host: '127.0.0.1',
    port: (taken.address() as AddressInfo).port,
    cluster: connectCluster({ kubeConfig: s.kubeConfig() }),
    clusterOptions: { leaderElection: { leaseDurationMs: 1000, renewDeadlineMs: 600, retryPeriodMs: 100 } },
  })
  await t.rejects(app.start(), { code: 'EADDRINUSE' })
  // The CLI exits with the error; informers, the leader election and their timers must not have
  // started, or the process would linger, not listening, instead of restarting. A few retry
  // periods of the leader election to be sure nothing reached the API server.
  await new Promise(resolve => setTimeout(resolve, 300))
  t.same(s.requests.map(r => `${r.method} ${r.path}`), [], 'no request reached the API server')
})

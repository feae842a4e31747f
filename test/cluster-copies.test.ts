// Pull-secret copies, ServiceAccount mode, Carvel placeholders and registry credentials, driven
// through the real @kubernetes/client-node against the in-test API server (test/support/fake-apiserver.ts).
import t, { type Test } from 'tap'
import { CoordinationV1Api, CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node'
import { startFakeApiServer, type FakeApiServer } from './support/fake-apiserver.js'
import { admissionReview, podFromWorkload } from './support/pods.js'
import { LogCapture } from './support/pullpin.js'
import { connectCluster, createClusterIntegration, type ClusterIntegration } from '../src/cluster/index.js'
import { CopyAvailability } from '../src/cluster/copy-availability.js'
import { PullSecretState } from '../src/cluster/pull-secret-state.js'
import { Reconciler } from '../src/cluster/reconciler.js'
import { namespaceInformer } from '../src/cluster/resource-informers.js'
import { desiredCopy, type SourceState } from '../src/cluster/copy-plan.js'
import { createAdmissionHandler, type AdmissionHandler } from '../src/admission/handler.js'
import { createMutator } from '../src/mutate/mutator.js'
import { createSecretInjectionStep } from '../src/mutate/inject-secrets.js'
import { createNamespacePolicy } from '../src/policy/namespace-mode.js'
import { parseConfig, type Config } from '../src/policy/config.js'
import { createLogger } from '../src/server/logger.js'
import { createMetrics, type Metrics } from '../src/metrics.js'
import { CredentialStore } from '../src/registry/credential-store.js'
import { until } from './support/until.js'

// ---- harness (kept in this file: test/support belongs to others) ----

const PASSWORD = 'hunter2-s3cr3t-pw'
const ROTATED = 'rotated-Pa55-w0rd'

function dockerConfig (registry: string, user: string, password: string): string {
  return Buffer.from(JSON.stringify({ auths: { [registry]: { auth: Buffer.from(`${user}:${password}`).toString('base64') } } })).toString('base64')
}

const b64x = (s: string): string => Buffer.from(s).toString('base64')
const decode = (b64: string): any => JSON.parse(Buffer.from(b64, 'base64').toString('utf8'))

interface World {
  server: FakeApiServer
  core: CoreV1Api
  config: Config
  integration: ClusterIntegration
  handle: AdmissionHandler
  logs: LogCapture
  metrics: Metrics
  credentials: CredentialStore
  label (ns: string, value: string | null): Promise<void>
}

/** The source Secret every test copies from. */
const SOURCE = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'ghcr-source', namespace: 'pullpin' }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': dockerConfig('ghcr.io', 'bot', PASSWORD) } }

const BASE = `
pullSecrets:
  - name: ghcr-credentials
    registries: [ghcr.io]
    source: { namespace: pullpin, name: ghcr-source }
  - name: hub-credentials
    registries: [docker.io]
`

/** A fake cluster with a source Secret and a pullpin replica on it (leader unless `leader: false`). */
async function world (tt: Test, opts: { config?: string; namespaces?: string[]; leader?: boolean; seed?: (s: FakeApiServer) => void } = {}): Promise<World> {
  const server = await startFakeApiServer({ namespaces: opts.namespaces ?? ['default', 'kube-system', 'pullpin', 'team-a', 'team-b', 'team-c'] })
  tt.teardown(() => server.stop())
  server.seed(SOURCE)
  if (opts.leader === false) {
    // Someone else holds the Lease and keeps it fresh for the test's length: this replica never leads.
    const now = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z')
    server.seed({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'pullpin-leader', namespace: 'pullpin' }, spec: { holderIdentity: 'other-replica', leaseDurationSeconds: 3600, renewTime: now, acquireTime: now } })
  }
  opts.seed?.(server)
  const config = parseConfig(opts.config ?? BASE, 'test')
  const logs = new LogCapture()
  const logger = createLogger({ level: 'debug', destination: logs })
  const metrics = createMetrics({ defaultMetrics: false })
  const credentials = new CredentialStore()
  const connection = connectCluster({ kubeConfig: server.kubeConfig() })
  const integration = createClusterIntegration({
    connection,
    config,
    ownNamespace: 'pullpin',
    identity: 'replica-1',
    logger,
    metrics: metrics.cluster,
    credentials,
    backoff: { initialMs: 20, maxMs: 200 },
    // No failover here: a lease long enough that a stalled CI machine never loses it by accident.
    leaderElection: { leaseDurationMs: 10_000, renewDeadlineMs: 8000, retryPeriodMs: 100 },
  })
  tt.teardown(() => integration.stop())
  integration.start()
  await integration.waitForSync()
  if (opts.leader !== false) await until('leadership', () => integration.isLeader())
  const handle = createAdmissionHandler({
    policy: createNamespacePolicy(config, 'pullpin'),
    namespaces: integration.namespaces,
    mutator: createMutator([createSecretInjectionStep(config.pullSecrets, integration.availability !== undefined ? { availability: integration.availability } : {})]),
    logger,
    metrics: metrics.admission,
    failOpen: true,
    deadlineMs: 3000,
  })
  const core = server.kubeConfig().makeApiClient(CoreV1Api)
  const label = async (ns: string, value: string | null): Promise<void> => {
    await core.patchNamespace({ name: ns, body: { metadata: { labels: { 'pullpin.io/inject': value } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
  }
  return { server, core, config, integration, handle, logs, metrics, credentials, label }
}

const secretIn = (w: World, ns: string, name = 'ghcr-credentials'): any => w.server.get({ resource: 'secrets', namespace: ns, name })
const patchOf = (out: any): any[] => out.response.patch === undefined ? [] : JSON.parse(Buffer.from(out.response.patch, 'base64').toString('utf8'))
const injected = (out: any): string[] => patchOf(out).flatMap((op: any) => op.path === '/spec/imagePullSecrets' ? op.value.map((v: any) => v.name) : op.path.startsWith('/spec/imagePullSecrets/') ? [op.value.name] : [])

/** Secret material must never reach a log line, in any encoding. */
function noSecretsIn (tt: Test, logs: LogCapture): void {
  const forbidden = [PASSWORD, ROTATED, Buffer.from(`bot:${PASSWORD}`).toString('base64'), Buffer.from(`bot:${ROTATED}`).toString('base64'), dockerConfig('ghcr.io', 'bot', PASSWORD), dockerConfig('ghcr.io', 'bot', ROTATED)]
  tt.ok(logs.lines.length > 0, 'logs were captured')
  for (const f of forbidden) tt.notOk(logs.text.includes(f), `no secret material in ${logs.lines.length} log lines`)
}

async function metricValue (m: Metrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const data = await m.registry.getSingleMetric(name)?.get()
  const v = data?.values.find(x => Object.entries(labels).every(([k, val]) => String((x.labels as Record<string, unknown>)[k]) === val))
  return v?.value
}

// ---- tests ----

t.test('a namespace labelled later gets its copy; the copy is labelled and annotated', async (t) => {
  const w = await world(t)
  t.equal(secretIn(w, 'team-a'), undefined, 'nothing before the label')
  const started = Date.now()
  await w.label('team-a', 'enabled')
  await until('copy in team-a', () => secretIn(w, 'team-a') !== undefined)
  const ms = Date.now() - started
  t.comment(`copy appeared ${ms} ms after the label`)
  const copy = secretIn(w, 'team-a')
  t.equal(copy.type, 'kubernetes.io/dockerconfigjson')
  t.equal(copy.metadata.labels['app.kubernetes.io/managed-by'], 'pullpin')
  t.equal(copy.metadata.annotations['pullpin.io/source'], 'pullpin/ghcr-source')
  t.match(copy.metadata.annotations['pullpin.io/content-hash'], /^sha256:[0-9a-f]{64}$/)
  t.equal(copy.data['.dockerconfigjson'], dockerConfig('ghcr.io', 'bot', PASSWORD))
  t.equal(secretIn(w, 'team-b'), undefined, 'not in namespaces that did not opt in')
  t.equal(secretIn(w, 'team-a', 'hub-credentials'), undefined, 'entries without a source are not copied')
  await w.integration.idle() // the server applies a write before its answer reaches pullpin
  t.equal(await metricValue(w.metrics, 'pullpin_cluster_writes_total', { kind: 'copy', action: 'created', origin: 'reconcile' }), 1)
  t.equal(await metricValue(w.metrics, 'pullpin_leader'), 1)

  // The copy reaches the Secret informer's cache by its watch event, a moment after the write was
  // answered (on a slow machine, after idle() returns): wait for that before counting API calls.
  // (A check that finds no copy in the cache creates one: a POST, answered 409 here.)
  const secretPosts = (): number => w.server.requests.filter(r => r.method === 'POST' && r.path.endsWith('/secrets')).length
  await until('the copy in the Secret informer cache', async () => {
    const posts = secretPosts()
    await w.integration.availability!.check({ namespace: 'team-a', names: ['ghcr-credentials'], create: true })
    return secretPosts() === posts
  })
  // The pod of that namespace gets the secret, with no API call on the admission path: both
  // lookups answer from the informer caches.
  const apiCalls = (): number => w.server.requests.filter(r => !r.path.includes('/leases')).length // the Lease is renewed meanwhile
  const before = apiCalls()
  t.same(await w.integration.namespaces.labels('team-a'), { 'kubernetes.io/metadata.name': 'team-a', 'pullpin.io/inject': 'enabled' }, 'namespace labels from the informer')
  t.same(await w.integration.availability!.check({ namespace: 'team-a', names: ['ghcr-credentials'], create: true }), { refused: new Map(), warnings: [] }, 'copy available, from the informer')
  t.equal(apiCalls(), before, 'no API call for either')
  const out = await w.handle(admissionReview(podFromWorkload('deployment-web', { namespace: 'team-a' })))
  t.same(injected(out), ['ghcr-credentials', 'hub-credentials'])
  t.equal(apiCalls(), before, 'answered from the informer caches')
  noSecretsIn(t, w.logs)
})

t.test('a rotated source updates every copy; registry credentials follow without restart', async (t) => {
  const w = await world(t)
  for (const ns of ['team-a', 'team-b', 'team-c']) await w.label(ns, 'enabled')
  await until('three copies', () => ['team-a', 'team-b', 'team-c'].every(ns => secretIn(w, ns) !== undefined))
  const hashBefore = secretIn(w, 'team-a').metadata.annotations['pullpin.io/content-hash']
  const creds = (): string[] => w.credentials.lookup('ghcr.io/acme/web').map(c => c.password)
  t.same(creds(), [PASSWORD], 'lookups use the source Secret')

  const src = await w.core.readNamespacedSecret({ name: 'ghcr-source', namespace: 'pullpin' })
  const started = Date.now()
  await w.core.replaceNamespacedSecret({ name: 'ghcr-source', namespace: 'pullpin', body: { ...src, data: { '.dockerconfigjson': dockerConfig('ghcr.io', 'bot', ROTATED) } } })
  await until('every copy rotated', () => ['team-a', 'team-b', 'team-c'].every(ns => secretIn(w, ns).data['.dockerconfigjson'] === dockerConfig('ghcr.io', 'bot', ROTATED)))
  t.comment(`3 copies rotated ${Date.now() - started} ms after the source changed`)
  t.not(secretIn(w, 'team-b').metadata.annotations['pullpin.io/content-hash'], hashBefore, 'hash annotation follows')
  await until('credential store rotated', () => creds()[0] === ROTATED)
  t.same(creds(), [ROTATED])
  await w.integration.idle()
  t.equal(await metricValue(w.metrics, 'pullpin_cluster_writes_total', { kind: 'copy', action: 'updated', origin: 'reconcile' }), 3)

  // A copy edited by hand is repaired.
  const copy = await w.core.readNamespacedSecret({ name: 'ghcr-credentials', namespace: 'team-c' })
  await w.core.replaceNamespacedSecret({ name: 'ghcr-credentials', namespace: 'team-c', body: { ...copy, data: { '.dockerconfigjson': dockerConfig('ghcr.io', 'x', 'y') } } })
  await until('drift repaired', () => secretIn(w, 'team-c').data['.dockerconfigjson'] === dockerConfig('ghcr.io', 'bot', ROTATED))
  // ... and a deleted one comes back.
  await w.core.deleteNamespacedSecret({ name: 'ghcr-credentials', namespace: 'team-b' })
  await until('deleted copy recreated', () => secretIn(w, 'team-b') !== undefined)
  noSecretsIn(t, w.logs)
})

t.test('a user-owned Secret of the same name is never touched, and is reported', async (t) => {
  const w = await world(t, {
    seed: (s) => { s.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'ghcr-credentials', namespace: 'team-b' }, type: 'Opaque', data: { mine: Buffer.from('user data').toString('base64') } }) },
  })
  const before = secretIn(w, 'team-b')
  await w.label('team-a', 'enabled')
  await w.label('team-b', 'enabled')
  await until('copy in team-a', () => secretIn(w, 'team-a') !== undefined)
  await until('conflict logged', () => w.logs.records.some(r => r.namespace === 'team-b' && /not managed by pullpin/.test(r.msg)))
  await w.integration.idle()
  const after = secretIn(w, 'team-b')
  t.equal(after.metadata.resourceVersion, before.metadata.resourceVersion, 'not written')
  t.same(after.data, before.data)
  t.equal(after.type, 'Opaque')
  t.equal(await metricValue(w.metrics, 'pullpin_secret_conflicts', { secret: 'ghcr-credentials' }), 1, 'conflict gauge')

  // Its pods do not get the secret and are told why; the other secret is still injected.
  const out = await w.handle(admissionReview(podFromWorkload('deployment-web', { namespace: 'team-b' })))
  t.same(injected(out), ['hub-credentials'])
  t.same(out.response.warnings, ['pullpin: ghcr-credentials not added: Secret team-b/ghcr-credentials is not managed by pullpin'])
  t.equal(await metricValue(w.metrics, 'pullpin_secret_conflict_refusals_total', { secret: 'ghcr-credentials' }), 1)
  const line = w.logs.records.find(r => r.outcome === 'mutated' && r.namespace === 'team-b')
  t.match(line?.warnings, [/not managed by pullpin/], 'the pod log line carries the warning')

  // The user deletes their Secret: pullpin's copy takes the name.
  await w.core.deleteNamespacedSecret({ name: 'ghcr-credentials', namespace: 'team-b' })
  await until('copy after the conflict is gone', () => secretIn(w, 'team-b')?.metadata.labels?.['app.kubernetes.io/managed-by'] === 'pullpin')
  noSecretsIn(t, w.logs)
})

t.test('opt-out removes only pullpin\'s copies', async (t) => {
  const w = await world(t, {
    seed: (s) => { s.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'ghcr-credentials', namespace: 'team-b' }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': dockerConfig('ghcr.io', 'user', 'own') } }) },
  })
  await w.label('team-a', 'enabled')
  await w.label('team-b', 'enabled')
  await w.label('team-c', 'enabled')
  await until('copies', () => secretIn(w, 'team-a') !== undefined && secretIn(w, 'team-c') !== undefined)
  const userSecret = secretIn(w, 'team-b')

  await w.label('team-a', 'disabled')
  await w.label('team-b', null)
  await w.label('team-c', 'audit')
  await until('copies removed', () => secretIn(w, 'team-a') === undefined && secretIn(w, 'team-c') === undefined)
  await w.integration.idle()
  t.same(secretIn(w, 'team-b'), userSecret, 'the user\'s Secret is untouched')
  t.ok(secretIn(w, 'pullpin', 'ghcr-source'), 'the source is untouched')
  t.equal(await metricValue(w.metrics, 'pullpin_cluster_writes_total', { kind: 'copy', action: 'deleted', origin: 'reconcile' }), 2)
  const deletes = w.server.requests.filter(r => r.method === 'DELETE')
  t.same(deletes.map(r => r.path).sort(), ['/api/v1/namespaces/team-a/secrets/ghcr-credentials', '/api/v1/namespaces/team-c/secrets/ghcr-credentials'])
  t.ok(deletes.every(r => (r.body as any)?.preconditions?.uid !== undefined), 'deletes carry a uid precondition')
})

t.test('admission: a dry run creates nothing; the first pod of a freshly labelled namespace gets its copy synchronously', async (t) => {
  // No reconciler here (another replica leads): only the admission path can create the copy.
  const w = await world(t, { leader: false })
  t.notOk(w.integration.isLeader())
  await w.label('team-a', 'enabled')
  await w.label('team-b', 'audit')
  const label = async (ns: string): Promise<string | undefined> => (await w.integration.namespaces.labels(ns))?.['pullpin.io/inject']
  await until('labels seen', async () => await label('team-a') === 'enabled' && await label('team-b') === 'audit')
  const secretPosts = (): number => w.server.requests.filter(r => r.method === 'POST' && r.path.endsWith('/secrets')).length

  const dry = await w.handle(admissionReview(podFromWorkload('deployment-web', { namespace: 'team-a' }), { dryRun: true }))
  t.same(injected(dry), ['ghcr-credentials', 'hub-credentials'], 'the dry run still shows the patch')
  t.equal(secretPosts(), 0, 'no create was sent')
  t.equal(secretIn(w, 'team-a'), undefined, 'nothing created by a dry run')

  const audit = await w.handle(admissionReview(podFromWorkload('deployment-web', { namespace: 'team-b' })))
  t.equal(audit.response.patch, undefined)
  t.match(audit.response.auditAnnotations, { mode: 'audit', 'would-inject-secrets': 'ghcr-credentials,hub-credentials' }, 'reviewed in audit mode')
  t.equal(secretPosts(), 0, 'audit mode creates nothing')

  const started = performance.now()
  const real = await w.handle(admissionReview(podFromWorkload('deployment-web', { namespace: 'team-a' })))
  const ms = performance.now() - started
  t.same(injected(real), ['ghcr-credentials', 'hub-credentials'])
  t.ok(secretIn(w, 'team-a'), 'the copy exists when the answer is sent')
  t.equal(secretIn(w, 'team-a').metadata.labels['app.kubernetes.io/managed-by'], 'pullpin')
  t.equal(await metricValue(w.metrics, 'pullpin_cluster_writes_total', { kind: 'copy', action: 'created', origin: 'admission' }), 1)
  t.comment(`first-pod review with a synchronous copy create: ${ms.toFixed(1)} ms`)

  const again = await w.handle(admissionReview(podFromWorkload('deployment-web', { namespace: 'team-a' })))
  t.same(injected(again), ['ghcr-credentials', 'hub-credentials'])
  t.equal(secretPosts(), 1, 'the second pod does not create again')

  // A namespace created labelled a moment ago: the informer may not have it; decided on a GET.
  await w.core.createNamespace({ body: { metadata: { name: 'fresh', labels: { 'pullpin.io/inject': 'enabled' } } } })
  const fresh = await w.handle(admissionReview(podFromWorkload('deployment-web', { namespace: 'fresh' })))
  t.same(injected(fresh), ['ghcr-credentials', 'hub-credentials'])
  t.ok(secretIn(w, 'fresh', 'ghcr-credentials'), 'copied before answering')

  // A Deployment scaled up in a freshly labelled namespace: its pods share one create.
  await w.label('team-c', 'enabled')
  await until('team-c labelled', async () => await label('team-c') === 'enabled')
  const burst = await Promise.all(Array.from({ length: 8 }, () => w.handle(admissionReview(podFromWorkload('deployment-web', { namespace: 'team-c' })))))
  t.ok(burst.every(out => injected(out).join() === 'ghcr-credentials,hub-credentials' && out.response.warnings === undefined), '8 pods, all injected without a warning')
  t.equal(w.server.requests.filter(r => r.method === 'POST' && r.path === '/api/v1/namespaces/team-c/secrets').length, 1, 'one create for 8 concurrent reviews')
  noSecretsIn(t, w.logs)
})

t.test('admission: a copy created by someone else meanwhile (409 AlreadyExists) is re-read: pullpin\'s is injected, a foreign one refused', async (t) => {
  // The copies' informers are not started, so the admission path sees no copy anywhere and must
  // create, and the API server answers with a real 409: what happens when another replica (or a
  // user) wrote the Secret after the informer last saw the namespace.
  const server = await startFakeApiServer({ namespaces: ['default', 'pullpin', 'team-a', 'team-b'] })
  t.teardown(() => server.stop())
  const copy = (ns: string, labels: Record<string, string>): object => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'ghcr-credentials', namespace: ns, labels }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': dockerConfig('ghcr.io', 'bot', PASSWORD) } })
  server.seed(SOURCE)
  server.seed(copy('team-a', { 'app.kubernetes.io/managed-by': 'pullpin' }))
  server.seed(copy('team-b', { owner: 'someone-else' }))
  const logs = new LogCapture()
  const logger = createLogger({ level: 'debug', destination: logs })
  const connection = connectCluster({ kubeConfig: server.kubeConfig() })
  const state = new PullSecretState(connection, parseConfig(BASE, 'test').pullSecrets, { logger })
  for (const i of state.sourceInformers()) i.start()
  t.teardown(() => Promise.all(state.sourceInformers().map(i => i.stop())))
  await Promise.all(state.sourceInformers().map(i => i.waitForSync()))
  const metrics = createMetrics({ defaultMetrics: false })
  const availability = new CopyAvailability({ connection, state, logger, metrics: metrics.cluster })
  const check = (namespace: string) => availability.check({ namespace, names: ['ghcr-credentials', 'hub-credentials'], create: true })

  const ours = await check('team-a')
  t.same([...ours.refused.keys()], [], 'pullpin\'s copy: usable')
  t.same(ours.warnings, [])
  const foreign = await check('team-b')
  t.same([...foreign.refused.entries()], [['ghcr-credentials', 'pullpin: ghcr-credentials not added: Secret team-b/ghcr-credentials is not managed by pullpin']])
  for (const ns of ['team-a', 'team-b']) {
    t.same(server.requests.filter(r => r.path.startsWith(`/api/v1/namespaces/${ns}/secrets`)).map(r => r.method), ['POST', 'GET'], `${ns}: create (409), then read`)
  }
  t.equal(server.get({ resource: 'secrets', namespace: 'team-b', name: 'ghcr-credentials' }).metadata.labels.owner, 'someone-else', 'the foreign Secret is not written')
  t.equal(await metricValue(metrics, 'pullpin_secret_conflict_refusals_total', { secret: 'ghcr-credentials' }), 1)
  noSecretsIn(t, logs)
})

t.test('a source that is not kubernetes.io/dockerconfigjson is reported and skipped', async (t) => {
  const w = await world(t, {
    config: `
pullSecrets:
  - name: ghcr-credentials
    source: { namespace: pullpin, name: ghcr-source }
  - name: opaque-credentials
    source: { namespace: pullpin, name: opaque-source }
`,
    seed: (s) => { s.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'opaque-source', namespace: 'pullpin' }, type: 'Opaque', data: { token: Buffer.from(PASSWORD).toString('base64') } }) },
  })
  await w.label('team-a', 'enabled')
  await until('good copy', () => secretIn(w, 'team-a') !== undefined)
  await w.integration.idle()
  t.equal(secretIn(w, 'team-a', 'opaque-credentials'), undefined, 'no copy of the Opaque source')
  t.ok(w.logs.records.some(r => r.source === 'pullpin/opaque-source' && /only kubernetes.io\/dockerconfigjson/.test(r.msg)), 'reported')
  t.equal(await metricValue(w.metrics, 'pullpin_pull_secret_source_problem', { source: 'pullpin/opaque-source', problem: 'invalid' }), 1)
  t.equal(await metricValue(w.metrics, 'pullpin_pull_secret_source_problem', { source: 'pullpin/ghcr-source', problem: 'invalid' }), 0)
  t.same(w.credentials.toJSON(), [{ key: 'ghcr.io', source: 'pullpin/ghcr-source' }], 'only dockerconfigjson sources feed the lookups')
  noSecretsIn(t, w.logs)
})

t.test('copies of a removed pullSecrets entry are deleted; foreign Secrets of that name are not', async (t) => {
  const w = await world(t, {
    seed: (s) => {
      s.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'old-credentials', namespace: 'team-a', labels: { 'app.kubernetes.io/managed-by': 'pullpin' }, annotations: { 'pullpin.io/source': 'pullpin/old-source' } }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': dockerConfig('old.io', 'a', 'b') } })
      // pullpin's TLS Secret is labelled the same way and is not a copy.
      s.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'pullpin-tls', namespace: 'pullpin', labels: { 'app.kubernetes.io/managed-by': 'pullpin' } }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64x('c'), 'tls.key': b64x('k') } })
      s.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'old-credentials', namespace: 'team-b' }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': dockerConfig('old.io', 'c', 'd') } })
    },
  })
  await until('retired copy removed', () => secretIn(w, 'team-a', 'old-credentials') === undefined)
  await w.integration.idle()
  t.ok(secretIn(w, 'team-b', 'old-credentials'), 'the unlabelled one stays')
  t.ok(secretIn(w, 'pullpin', 'pullpin-tls'), 'pullpin\'s TLS Secret stays')

  // Without the cluster-wide list grant (a 403), this is skipped with a log line, not retried.
  const w2 = await world(t, { leader: false })
  await w2.server.waitForWatches('secrets', 2)
  w2.server.failNext('GET', '/api/v1/secrets', 403) // the watches are open: the next GET there is the label list
  await w2.server.kubeConfig().makeApiClient(CoordinationV1Api).deleteNamespacedLease({ name: 'pullpin-leader', namespace: 'pullpin' })
  await until('leader', () => w2.integration.isLeader())
  await until('skip logged', () => w2.logs.records.some(r => /copies of removed pullSecrets entries are not cleaned up/.test(r.msg)))
  await w2.integration.idle()
  t.notOk(w2.logs.records.some(r => r.key === '@retired' && /will retry/.test(r.msg)), 'not retried')
})

t.test('Carvel placeholder secrets in opted-in namespaces are filled', async (t) => {
  const placeholder = (ns: string): object => ({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'reg-creds', namespace: ns, annotations: { 'secretgen.carvel.dev/image-pull-secret': '' } },
    type: 'kubernetes.io/dockerconfigjson',
    data: { '.dockerconfigjson': Buffer.from('{}').toString('base64') },
  })
  const w = await world(t, {
    config: `
cluster: { placeholderSecrets: true }
pullSecrets:
  - name: ghcr-credentials
    source: { namespace: pullpin, name: ghcr-source }
  - name: gar-credentials
    source: { namespace: pullpin, name: gar-source }
`,
    seed: (s) => {
      s.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'gar-source', namespace: 'pullpin' }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': dockerConfig('europe-docker.pkg.dev', 'sa', 'gar-pw') } })
      s.seed(placeholder('team-a'))
      s.seed(placeholder('team-b'))
      s.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'plain', namespace: 'team-a' }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': Buffer.from('{}').toString('base64') } })
    },
  })
  await w.label('team-a', 'enabled')
  await until('placeholder filled', () => secretIn(w, 'team-a', 'reg-creds').data['.dockerconfigjson'] !== Buffer.from('{}').toString('base64'))
  const filled = secretIn(w, 'team-a', 'reg-creds')
  t.same(Object.keys(decode(filled.data['.dockerconfigjson']).auths).sort(), ['europe-docker.pkg.dev', 'ghcr.io'], 'credentials of every source, merged')
  t.equal(filled.metadata.annotations['pullpin.io/source'], 'pullpin/ghcr-source,pullpin/gar-source')
  t.equal(filled.metadata.annotations['secretgen.carvel.dev/image-pull-secret'], '', 'still a placeholder')
  t.equal(filled.metadata.labels?.['app.kubernetes.io/managed-by'], undefined, 'not taken over as a copy')
  await w.integration.idle()
  t.equal(decode(secretIn(w, 'team-b', 'reg-creds').data['.dockerconfigjson']).auths, undefined, 'not in a namespace that did not opt in')
  t.same(decode(secretIn(w, 'team-a', 'plain').data['.dockerconfigjson']), {}, 'a Secret without the annotation is left alone')

  // Rotation reaches the placeholder too.
  const src = await w.core.readNamespacedSecret({ name: 'ghcr-source', namespace: 'pullpin' })
  await w.core.replaceNamespacedSecret({ name: 'ghcr-source', namespace: 'pullpin', body: { ...src, data: { '.dockerconfigjson': dockerConfig('ghcr.io', 'bot', ROTATED) } } })
  await until('placeholder rotated', () => {
    const auth = decode(secretIn(w, 'team-a', 'reg-creds').data['.dockerconfigjson']).auths['ghcr.io'].auth
    return Buffer.from(auth, 'base64').toString() === `bot:${ROTATED}`
  })
  noSecretsIn(t, w.logs)
})

t.test('serviceaccount mode: the configured ServiceAccounts get the secrets, and lose only pullpin\'s on opt-out', async (t) => {
  const sa = (ns: string, name: string, secrets: string[] = []): object => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: ns }, ...(secrets.length > 0 ? { imagePullSecrets: secrets.map(s => ({ name: s })) } : {}) })
  const w = await world(t, {
    config: `
injection: serviceaccount
serviceAccounts: [default, builder]
${BASE}`,
    seed: (s) => {
      s.seed(sa('team-a', 'default', ['mine']))
      s.seed(sa('team-a', 'builder'))
      s.seed(sa('team-a', 'other'))
      s.seed(sa('team-b', 'default'))
    },
  })
  const pullSecrets = (ns: string, name: string): string[] => (w.server.get({ resource: 'serviceaccounts', namespace: ns, name })?.imagePullSecrets ?? []).map((r: any) => r.name)
  await w.label('team-a', 'enabled')
  await until('default SA patched', () => pullSecrets('team-a', 'default').length === 3)
  await until('builder SA patched', () => pullSecrets('team-a', 'builder').length === 2)
  t.same(pullSecrets('team-a', 'default'), ['mine', 'ghcr-credentials', 'hub-credentials'], 'the user\'s entry stays first')
  t.equal(w.server.get({ resource: 'serviceaccounts', namespace: 'team-a', name: 'default' }).metadata.annotations['pullpin.io/image-pull-secrets'], 'ghcr-credentials,hub-credentials')
  t.ok(secretIn(w, 'team-a'), 'the copy the ServiceAccount refers to exists')
  await w.integration.idle()
  t.same(pullSecrets('team-a', 'other'), [], 'ServiceAccounts not configured are left alone')
  t.same(pullSecrets('team-b', 'default'), [], 'namespaces not opted in are left alone')

  // Removed by hand: put back (kept in sync).
  const d = await w.core.readNamespacedServiceAccount({ name: 'default', namespace: 'team-a' })
  await w.core.replaceNamespacedServiceAccount({ name: 'default', namespace: 'team-a', body: { ...d, imagePullSecrets: [{ name: 'mine' }] } })
  await until('restored', () => pullSecrets('team-a', 'default').length === 3)

  await w.label('team-a', 'disabled')
  await until('opt-out', () => pullSecrets('team-a', 'default').length === 1 && pullSecrets('team-a', 'builder').length === 0)
  t.same(pullSecrets('team-a', 'default'), ['mine'], 'only what pullpin added is removed')
  t.equal(w.server.get({ resource: 'serviceaccounts', namespace: 'team-a', name: 'default' }).metadata.annotations?.['pullpin.io/image-pull-secrets'], undefined)
  noSecretsIn(t, w.logs)
})

t.test('reconcile: a copy is deleted on the namespace as it is now, not on a cache that has not seen the opt-in yet', async (t) => {
  // The namespace watch and the Secret watches are separate streams: the leader can see the copy
  // another replica made for the first pod of a freshly labelled namespace before it sees the
  // label. Here the leader's namespace cache is frozen from before the label.
  const server = await startFakeApiServer({ namespaces: ['default', 'pullpin', 'team-a'] })
  t.teardown(() => server.stop())
  server.seed(SOURCE)
  const logs = new LogCapture()
  const settings = { logger: createLogger({ level: 'debug', destination: logs }) }
  const connection = connectCluster({ kubeConfig: server.kubeConfig() })
  const config = parseConfig(BASE, 'test')
  const namespaces = namespaceInformer(connection, settings)
  namespaces.start()
  await namespaces.waitForSync()
  await namespaces.stop()
  const core = server.kubeConfig().makeApiClient(CoreV1Api)
  const label = (value: string): Promise<unknown> => core.patchNamespace({ name: 'team-a', body: { metadata: { labels: { 'pullpin.io/inject': value } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
  await label('enabled')
  const state = new PullSecretState(connection, config.pullSecrets, settings)
  const informers = [...state.sourceInformers(), ...state.copyInformers()]
  for (const i of informers) i.start()
  t.teardown(() => Promise.all(informers.map(i => i.stop())))
  await Promise.all(informers.map(i => i.waitForSync()))
  const copy = desiredCopy('ghcr-credentials', 'team-a', state.sourceState(state.rules[0]!) as Extract<SourceState, { kind: 'ready' }>)
  await core.createNamespacedSecret({ namespace: 'team-a', body: copy })
  await until('copy seen', () => state.existing('ghcr-credentials', 'team-a') !== undefined)
  const reconciler = new Reconciler({
    connection,
    state,
    namespaces,
    policy: createNamespacePolicy(config, 'pullpin'),
    secretNames: config.pullSecrets.map(r => r.name),
    injection: 'pod',
    serviceAccounts: new Map(),
    placeholders: undefined,
    webhook: undefined,
    caBundle: () => undefined,
    isLeader: () => true,
    logger: settings.logger,
    metrics: createMetrics({ defaultMetrics: false }).cluster,
  })
  const signal = new AbortController().signal
  await reconciler.reconcile('team-a', signal)
  t.ok(secretIn({ server } as World, 'team-a'), 'the copy of an opted-in namespace stays')
  t.equal(server.requests.filter(r => r.method === 'DELETE').length, 0)

  await label('disabled')
  await reconciler.reconcile('team-a', signal)
  t.equal(secretIn({ server } as World, 'team-a'), undefined, 'deleted once the namespace really opted out')
})

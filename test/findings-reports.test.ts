// Findings where people look (issue 18 parts 2 and 3): Events on the pod's controlling owner and
// PolicyReports, written by a real pullpin (over TLS, a real registry) into the in-test API
// server. Time is a manual clock: rate bounds, series flushes and debounce delays move only when
// the test moves it.
import t, { type Test } from 'tap'
import { AppsV1Api, EventsV1Api } from '@kubernetes/client-node'
import { admissionReview, loadWorkload, podFromWorkload } from './support/pods.js'
import { startPullpin, type RunningPullpin } from './support/pullpin.js'
import { startPinningEnv, type PinningEnv } from './support/pinning-env.js'
import { startFakeApiServer, type FakeApiServer } from './support/fake-apiserver.js'
import { ManualClock } from './support/manual-clock.js'
import { until } from './support/until.js'
import { connectCluster } from '../src/cluster/index.js'
import type { Pod } from '../src/mutate/pod.js'

let env: PinningEnv
t.before(async () => { env = await startPinningEnv() })
t.teardown(() => env.stop())

const IDENTITY = 'pullpin-7d9f8c-x2k4q'

interface World { server: FakeApiServer; p: RunningPullpin; clock: ManualClock }

async function world (t: Test, reports: string, crds: string[] = []): Promise<World> {
  const server = await startFakeApiServer({ namespaces: ['default', 'pullpin-system'], crds })
  t.teardown(() => server.stop())
  server.seed({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a', labels: { 'pullpin.io/inject': 'enabled' } } })
  server.seed({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-b', labels: { 'pullpin.io/inject': 'audit' } } })
  const clock = new ManualClock()
  const credentials = await env.credentialStore()
  // A lookup budget a loaded machine does not run out of: a slow lookup would be another finding.
  const p = await startPullpin(env.configYaml('', `reports:\n${reports}`, undefined, '  lookupBudgetMs: 6000'), {
    cluster: connectCluster({ kubeConfig: server.kubeConfig() }),
    identity: IDENTITY,
    credentials,
    clusterOptions: {
      backoff: { initialMs: 20, maxMs: 200 },
      leaderElection: { leaseDurationMs: 10_000, renewDeadlineMs: 8000, retryPeriodMs: 100 },
      events: { clock, flushIntervalMs: 30_000 },
    },
  })
  t.teardown(() => p.close())
  await p.app.cluster!.waitForSync()
  return { server, p, clock }
}

/** A pod of ReplicaSet `rs` (uid `uid`) running `image`. */
function pod (image: string, rs = 'web-5d9c7b', uid = 'rs-uid-1', namespace = 'team-a'): Pod {
  const p = podFromWorkload('deployment-web', { namespace, ownerUid: uid })
  p.metadata!.ownerReferences![0]!.name = rs
  p.spec!.containers = [{ ...p.spec!.containers![0]!, name: 'web', image }]
  return p
}

async function mutate (w: World, body: unknown): Promise<any> {
  const res = await w.p.post('/mutate', body)
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${res.text}`)
  return res.json.response
}

const events = (w: World, ns = 'team-a'): any[] => w.server.list('events', ns, 'events.k8s.io')
const writes = (w: World, method: string): number => w.server.requests.filter(r => r.method === method && r.path.startsWith('/apis/events.k8s.io/')).length

t.test('a 100-pod rollout makes one Event on the ReplicaSet, with a series count of 100', async t => {
  const w = await world(t, '  eventBurst: 1000')
  const recorder = w.p.app.cluster!.events!
  const ghost = `${env.host}/acme/ghost-rollout:main`
  for (let i = 0; i < 100; i += 10) {
    const batch = await Promise.all(Array.from({ length: 10 }, () => mutate(w, admissionReview(pod(ghost)))))
    t.ok(batch.every(r => r.allowed === true && /tag main not found in /.test(r.warnings?.[0] ?? '')), `pods ${i}–${i + 9} admitted with the warning`)
  }
  await recorder.idle()
  t.equal(writes(w, 'POST'), 1, 'one Event created')
  // The series is patched at most once per flush interval: move the clock past it.
  w.clock.advance(30_000)
  await until('series count 100', () => events(w)[0]?.series?.count === 100)
  await recorder.idle()
  t.ok(writes(w, 'PATCH') <= 1, `series patched ${writes(w, 'PATCH')} time(s) for 100 pods`)
  const list = events(w)
  t.equal(list.length, 1, 'one Event, not 100')
  const e = list[0]
  t.match(e, {
    apiVersion: 'events.k8s.io/v1',
    kind: 'Event',
    metadata: { namespace: 'team-a', name: /^web-5d9c7b\.[0-9a-f]+$/ },
    reportingController: 'pullpin.io/pullpin',
    reportingInstance: IDENTITY,
    action: 'Admit',
    reason: 'ImageNotFound',
    type: 'Warning',
    regarding: { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-5d9c7b', uid: 'rs-uid-1', namespace: 'team-a' },
    series: { count: 100, lastObservedTime: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/ },
  })
  t.match(e.note, new RegExp(`tag main not found in ${ghost.replace(/:main$/, '').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} `))
  t.ok(Buffer.byteLength(e.note) <= 1024)
})

t.test('an Event deleted meanwhile (the API server\'s event TTL): the series goes on as a new Event', async t => {
  const w = await world(t, '  eventBurst: 1000')
  const recorder = w.p.app.cluster!.events!
  // An uppercase owner: a finding without any registry I/O.
  const image = 'elsewhere.example/Acme/ttl:main'
  await mutate(w, admissionReview(pod(image)))
  await recorder.idle()
  const [first] = events(w)
  t.equal(first.series, undefined, 'a single occurrence has no series')
  await w.server.kubeConfig().makeApiClient(EventsV1Api).deleteNamespacedEvent({ name: first.metadata.name, namespace: 'team-a' })
  for (let i = 0; i < 3; i++) await mutate(w, admissionReview(pod(image)))
  w.clock.advance(30_000)
  await until('a new Event', () => events(w).length === 1 && events(w)[0].metadata.name !== first.metadata.name)
  await recorder.idle()
  t.match(events(w)[0], { reason: 'ReferenceInvalid', series: { count: 4 } }, 'the count goes on')
  t.same(w.server.requests.filter(r => r.path.startsWith('/apis/events.k8s.io/') && r.method !== 'DELETE').map(r => r.method), ['POST', 'PATCH', 'POST'], 'create, the patch that found it gone (404), create')
})

t.test('Event notes stay within 1 KiB; bare pods and dry runs make no Event', async t => {
  const w = await world(t, '  eventBurst: 1000')
  const recorder = w.p.app.cluster!.events!
  // A pod with 40 images whose owner is uppercase (a finding without any I/O): one Event for the
  // reason, its note cut to the API's limit.
  const many = pod('x')
  many.spec!.containers = Array.from({ length: 40 }, (_, i) => ({ name: `c${i}`, image: `elsewhere.example/Acme/long-${'x'.repeat(20)}-${i}:main` }))
  await mutate(w, admissionReview(many))
  // Dry run and a bare pod (no controlling owner): no Event.
  await mutate(w, admissionReview(pod('elsewhere.example/Acme/dry:main', 'dry-rs', 'rs-dry'), { dryRun: true }))
  const bare = pod('elsewhere.example/Acme/bare:main')
  delete bare.metadata!.ownerReferences
  await mutate(w, admissionReview(bare))
  await recorder.idle()
  const all = events(w)
  t.equal(all.length, 1, 'one Event: not for the dry run, not for the bare pod, one for 40 findings of a reason')
  t.match(all[0], { reason: 'ReferenceInvalid', regarding: { uid: 'rs-uid-1' } })
  t.ok(Buffer.byteLength(all[0].note) <= 1024, `note of ${Buffer.byteLength(all[0].note)} bytes`)
  t.match(all[0].note, /^pullpin: c0: use elsewhere\.example\/acme\/long-x+-0:main: repository names are lowercase[\s\S]*…$/, 'cut, and says so')
  t.notOk(recorder.series().some(s => s.regarding.uid === 'rs-dry'), 'the dry run was never queued')
})

t.test('Event writes are rate-bounded: a burst, then one per second of (manual) time', async t => {
  const w = await world(t, '  eventBurst: 3\n  eventsPerSecond: 1')
  const recorder = w.p.app.cluster!.events!
  const ghost = `${env.host}/acme/ghost-rate:main`
  for (let i = 0; i < 10; i++) await mutate(w, admissionReview(pod(ghost, `rs-${i}`, `rs-uid-${i}`)))
  await recorder.idle()
  t.equal(writes(w, 'POST'), 3, 'the burst: 3 writes, the other 7 wait')
  w.clock.advance(1000)
  await until('a fourth Event', () => writes(w, 'POST') === 4)
  await recorder.idle()
  t.equal(writes(w, 'POST'), 4, 'one more per second')
  for (let n = 5; n <= 10; n++) {
    w.clock.advance(1000)
    await until(`Event ${n}`, () => writes(w, 'POST') === n)
  }
  // Time moved 6 s at once: the bucket holds at most the burst.
  w.clock.advance(60_000)
  await recorder.idle()
  t.same(new Set(events(w).map(e => e.regarding.name)).size, 10, 'one Event per ReplicaSet')
})

t.test('PolicyReports: a result per workload and finding, kept current, results of gone workloads removed', async t => {
  const w = await world(t, '  policyReports: true\n  policyReportDelaySeconds: 5\n  events: false', ['policyreports.wgpolicyk8s.io'])
  const reports = w.p.app.cluster!.policyReports!
  await until('PolicyReport discovery', () => reports.available)
  t.match(w.p.logs.text, /PolicyReport CRD found/)
  await until('leadership', () => w.p.app.cluster!.isLeader())
  const web = w.server.seed({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'team-a' } })
  const rs = w.server.seed({ apiVersion: 'apps/v1', kind: 'ReplicaSet', metadata: { name: 'web-5d9c7b', namespace: 'team-a', ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid: web.metadata.uid, controller: true }] } })
  const api = w.server.seed({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'api', namespace: 'team-a' } })
  // Pods of web's ReplicaSet (the pod webhook) and the api Deployment itself (the workload webhook).
  for (let i = 0; i < 5; i++) await mutate(w, admissionReview(pod(`${env.host}/acme/ghost-web:main`, 'web-5d9c7b', rs.metadata.uid)))
  const deployment = loadWorkload('deployment-web')
  deployment.metadata = { name: 'api', namespace: 'team-a', uid: api.metadata.uid }
  deployment.spec.template.spec.containers = [{ name: 'api', image: `${env.host}/acme/ghost-api:main` }]
  const res = await w.p.post('/validate', admissionReview(deployment, { kind: { group: 'apps', version: 'v1', kind: 'Deployment' }, resource: { group: 'apps', version: 'v1', resource: 'deployments' } }))
  t.match(res.json.response.warnings, [/tag main not found in .*ghost-api /])
  t.equal(w.server.list('policyreports', 'team-a').length, 0, 'debounced: nothing written yet')
  w.clock.advance(5000)
  await until('the report', () => w.server.list('policyreports', 'team-a')[0]?.results?.length === 2)
  await reports.idle()
  const report = w.server.list('policyreports', 'team-a')[0]
  t.match(report, { apiVersion: 'wgpolicyk8s.io/v1alpha2', kind: 'PolicyReport', metadata: { name: 'pullpin', labels: { 'app.kubernetes.io/managed-by': 'pullpin' } }, summary: { warn: 2, fail: 0, pass: 0 } })
  t.match(report.results, [
    { source: 'pullpin', policy: 'pullpin', rule: 'ImageNotFound', result: 'warn', severity: 'high', message: /tag main not found in .*ghost-api /, resources: [{ kind: 'Deployment', name: 'api', uid: api.metadata.uid }], properties: { image: `${env.host}/acme/ghost-api:main` } },
    { source: 'pullpin', policy: 'pullpin', rule: 'ImageNotFound', result: 'warn', message: /tag main not found in .*ghost-web /, resources: [{ kind: 'Deployment', name: 'web', uid: web.metadata.uid }], properties: { mode: 'enforce' } },
  ], 'the ReplicaSet\'s pods are filed under its Deployment')
  const creates = w.server.requests.filter(r => r.method === 'POST' && r.path.includes('/policyreports')).length
  t.equal(creates, 1, 'one write for 5 pods and a workload')

  // api is deleted: the next resync removes its result.
  await w.server.kubeConfig().makeApiClient(AppsV1Api).deleteNamespacedDeployment({ name: 'api', namespace: 'team-a' })
  await reports.resync()
  w.clock.advance(5000)
  await until('api\'s result removed', () => w.server.list('policyreports', 'team-a')[0]?.results?.length === 1)
  t.match(w.server.list('policyreports', 'team-a')[0], { summary: { warn: 1 }, results: [{ resources: [{ name: 'web' }] }] })

  // A clean re-apply of web (the workload webhook) clears its results too.
  const clean = loadWorkload('deployment-web')
  clean.metadata = { name: 'web', namespace: 'team-a', uid: web.metadata.uid }
  clean.spec.template.spec.containers = [{ name: 'web', image: 'nginx@sha256:' + 'a'.repeat(64) }]
  await w.p.post('/validate', admissionReview(clean, { kind: { group: 'apps', version: 'v1', kind: 'Deployment' }, resource: { group: 'apps', version: 'v1', resource: 'deployments' } }))
  w.clock.advance(5000)
  await until('web\'s result removed', () => w.server.list('policyreports', 'team-a')[0]?.results?.length === 0)
})

t.test('PolicyReports without the CRD: said once at start, nothing written', async t => {
  const w = await world(t, '  policyReports: true\n  policyReportDelaySeconds: 0\n  events: false')
  await until('discovery log line', () => /PolicyReport CRD not installed/.test(w.p.logs.text))
  await mutate(w, admissionReview(pod(`${env.host}/acme/ghost-nocrd:main`)))
  await w.p.app.cluster!.policyReports!.idle()
  t.equal(w.server.requests.filter(r => r.path.includes('/policyreports')).length, 0)
})

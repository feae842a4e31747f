// One pin per rollout (issue 14), end to end: real pullpin servers over TLS, the real registry
// behind the counting proxy, and the in-test API server standing in for the cluster, where the
// test stores each admitted pod as the API server would after admission.
import t, { type Test } from 'tap'
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net'
import { KubeConfig } from '@kubernetes/client-node'
import { admissionReview, applyResponsePatch, podFromWorkload } from './support/pods.js'
import { startPullpin, type RunningPullpin } from './support/pullpin.js'
import { gitSha, startPinningEnv, type PinningEnv } from './support/pinning-env.js'
import { startFakeApiServer, type FakeApiServer } from './support/fake-apiserver.js'
import { connectCluster } from '../src/cluster/index.js'
import { createMetrics, type Metrics } from '../src/metrics.js'
import { staticNamespaceLabels } from '../src/policy/static-namespaces.js'
import { parseConfig } from '../src/policy/config.js'
import type { Pod } from '../src/mutate/pod.js'

let env: PinningEnv
t.before(async () => { env = await startPinningEnv() })
t.teardown(() => env.stop())

// Short TTLs so that one replica's cache does not hide a moved tag (the tests wait past them).
const CACHE = '  cache: { ttlSeconds: 1, staleWhileRevalidateSeconds: 0, tagListMinIntervalSeconds: 0 }'
const PODS_PATH = '/api/v1/namespaces/team-a/pods'

async function apiServer (t: Test): Promise<FakeApiServer> {
  const s = await startFakeApiServer({ namespaces: ['default', 'kube-system', 'pullpin-system', 'team-a'] })
  t.teardown(() => s.stop())
  return s
}

interface Replica { p: RunningPullpin; metrics: Metrics; close (): Promise<void> }

/** A pullpin replica on the cluster `kubeConfig` (namespace labels from the config: only the pins are read from the cluster). */
async function replica (t: Test, kubeConfig: KubeConfig | undefined, name: string, extra = CACHE): Promise<Replica> {
  const yaml = env.configYaml('', '', undefined, extra)
  const metrics = createMetrics({ defaultMetrics: false })
  // With a cluster, registry credentials come from pull-secret sources; these tests give them directly.
  const credentials = await env.credentialStore()
  const p = await startPullpin(yaml, {
    credentials,
    metrics,
    namespaces: staticNamespaceLabels(parseConfig(yaml, 'test')),
    ...(kubeConfig !== undefined ? { cluster: connectCluster({ kubeConfig }), identity: name } : {}),
  })
  let closed = false
  t.teardown(() => closed ? undefined : p.close())
  return { p, metrics, close: async () => { closed = true; await p.close() } }
}

let podNumber = 0
/** A pod of a rollout as its controller creates it: one container, the controller's revision label. */
function rolloutPod (image: string, owner: { kind: string; uid: string }, labels: Record<string, string>): Pod {
  const pod = podFromWorkload('deployment-web', { namespace: 'team-a' })
  pod.metadata!.name = `roll-${String(++podNumber).padStart(4, '0')}`
  pod.metadata!.labels = { ...pod.metadata!.labels, ...labels }
  pod.metadata!.ownerReferences = [{ apiVersion: 'apps/v1', kind: owner.kind, name: 'web', uid: owner.uid, controller: true, blockOwnerDeletion: true }]
  pod.spec!.containers = [{ ...pod.spec!.containers![0]!, name: 'app', image }]
  return pod
}

/** Admit on one replica; with a cluster, store the result as the API server would. */
async function admit (r: Replica, pod: Pod, s?: FakeApiServer): Promise<{ image: string; pod: any; response: any }> {
  const res = await r.p.post('/mutate', admissionReview(pod))
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${res.text}`)
  const stored = applyResponsePatch(pod, res.json.response)
  s?.seed(stored)
  return { image: stored.spec.containers[0].image, pod: stored, response: res.json.response }
}

async function pinsCount (m: Metrics, source: string): Promise<number | undefined> {
  const data = await m.registry.getSingleMetric('pullpin_pins_total')?.get()
  return data?.values.find(v => v.labels.source === source)?.value
}

const wait = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

t.test('three replicas, round robin: every pod of a ReplicaSet gets its first pod\'s pin after the tag moved', async t => {
  const s = await apiServer(t)
  const replicas = await Promise.all(['a', 'b', 'c'].map(n => replica(t, s.kubeConfig(), `pullpin-${n}`)))
  const sha1 = gitSha('rr-1')
  const digest1 = await env.registry.push({ seed: 'rr-1' }, 'acme/rr', ['latest', sha1])
  const image = `${env.host}/acme/rr:latest`
  const rs = { kind: 'ReplicaSet', uid: 'rs-web-1' }

  const first = await admit(replicas[0]!, rolloutPod(image, rs, { 'pod-template-hash': 'h1' }), s)
  t.equal(first.image, `${env.host}/acme/rr:${sha1}`)
  t.same(JSON.parse(first.pod.metadata.annotations?.['pullpin.io/pins'] ?? 'null'), { app: { image, pin: `${env.host}/acme/rr:${sha1}`, digest: digest1 } }, 'the pod records image as written, pin and digest')

  const sha2 = gitSha('rr-2')
  await env.registry.push({ seed: 'rr-2' }, 'acme/rr', ['latest', sha2])
  const listsBefore = s.requests.filter(r => r.path === PODS_PATH).length
  const rest = []
  for (let i = 1; i <= 6; i++) rest.push(await admit(replicas[i % 3]!, rolloutPod(image, rs, { 'pod-template-hash': 'h1' }), s))
  t.same(rest.map(r => r.image), rest.map(() => `${env.host}/acme/rr:${sha1}`), 'every pod of the ReplicaSet, on every replica, runs the first pod\'s build')
  t.equal(s.requests.filter(r => r.path === PODS_PATH).length - listsBefore, 2, 'one API request per revision per replica (b and c; a remembered)')
  t.equal(await pinsCount(replicas[1]!.metrics, 'cluster'), 1, 'b read the pins from the cluster once…')
  t.equal(await pinsCount(replicas[1]!.metrics, 'memory'), 1, '…and from memory after')

  // A new template revision of the Deployment gets the moved tag's build, on every replica.
  await wait(1100)
  const rs2 = { kind: 'ReplicaSet', uid: 'rs-web-2' }
  const next = []
  for (let i = 0; i < 3; i++) next.push(await admit(replicas[i]!, rolloutPod(image, rs2, { 'pod-template-hash': 'h2' }), s))
  t.same(next.map(r => r.image), next.map(() => `${env.host}/acme/rr:${sha2}`), 'a new pod-template-hash gets the new pin')
})

t.test('a DaemonSet rollout restart (new controller-revision-hash, same UID) gets the new pin', async t => {
  const s = await apiServer(t)
  const r = await replica(t, s.kubeConfig(), 'pullpin-a')
  const sha1 = gitSha('ds-1')
  await env.registry.push({ seed: 'ds-1' }, 'acme/ds', ['latest', sha1])
  const image = `${env.host}/acme/ds:latest`
  const ds = { kind: 'DaemonSet', uid: 'ds-agent' }
  t.equal((await admit(r, rolloutPod(image, ds, { 'controller-revision-hash': 'rev1' }), s)).image, `${env.host}/acme/ds:${sha1}`)
  const sha2 = gitSha('ds-2')
  await env.registry.push({ seed: 'ds-2' }, 'acme/ds', ['latest', sha2])
  await wait(1100)
  t.equal((await admit(r, rolloutPod(image, ds, { 'controller-revision-hash': 'rev1' }), s)).image, `${env.host}/acme/ds:${sha1}`, 'the running revision keeps its pin')
  t.equal((await admit(r, rolloutPod(image, ds, { 'controller-revision-hash': 'rev2' }), s)).image, `${env.host}/acme/ds:${sha2}`, 'the restarted revision gets the new build')
  t.equal((await admit(r, rolloutPod(image, ds, { 'controller-revision-hash': 'rev1' }), s)).image, `${env.host}/acme/ds:${sha1}`, 'a late pod of the old revision keeps the old pin')
})

t.test('without a cluster, the revision-keyed memory still separates a DaemonSet\'s revisions', async t => {
  const r = await replica(t, undefined, 'standalone')
  const sha1 = gitSha('dss-1')
  await env.registry.push({ seed: 'dss-1' }, 'acme/dss', ['latest', sha1])
  const image = `${env.host}/acme/dss:latest`
  const ds = { kind: 'DaemonSet', uid: 'ds-standalone' }
  t.equal((await admit(r, rolloutPod(image, ds, { 'controller-revision-hash': 'rev1' }))).image, `${env.host}/acme/dss:${sha1}`)
  const sha2 = gitSha('dss-2')
  await env.registry.push({ seed: 'dss-2' }, 'acme/dss', ['latest', sha2])
  await wait(1100)
  t.equal((await admit(r, rolloutPod(image, ds, { 'controller-revision-hash': 'rev1' }))).image, `${env.host}/acme/dss:${sha1}`)
  t.equal((await admit(r, rolloutPod(image, ds, { 'controller-revision-hash': 'rev2' }))).image, `${env.host}/acme/dss:${sha2}`)
  t.equal(await pinsCount(r.metrics, 'first'), 2, 'two revisions, each pinned first from the registry')
  t.equal(await pinsCount(r.metrics, 'memory'), 1)
})

t.test('a pullpin restart mid-rollout keeps the running revision\'s pin', async t => {
  const s = await apiServer(t)
  const before = await replica(t, s.kubeConfig(), 'pullpin-a')
  const sha1 = gitSha('restart-1')
  await env.registry.push({ seed: 'restart-1' }, 'acme/restart', ['latest', sha1])
  const image = `${env.host}/acme/restart:latest`
  const job = { kind: 'Job', uid: 'job-uid-1' }
  const labels = { 'batch.kubernetes.io/controller-uid': 'job-uid-1' }
  t.equal((await admit(before, rolloutPod(image, job, labels), s)).image, `${env.host}/acme/restart:${sha1}`)
  await before.close()
  await env.registry.push({ seed: 'restart-2' }, 'acme/restart', ['latest', gitSha('restart-2')])
  const after = await replica(t, s.kubeConfig(), 'pullpin-a')
  t.equal((await admit(after, rolloutPod(image, job, labels), s)).image, `${env.host}/acme/restart:${sha1}`, 'the restarted replica reads the pin back from the admitted pod')
  t.equal(await pinsCount(after.metrics, 'cluster'), 1)
})

t.test('API server gone or silent: the pod is pinned from the registry, counted, logged once, inside the deadline', async t => {
  const s = await apiServer(t)
  const r = await replica(t, s.kubeConfig(), 'pullpin-a')
  const sha = gitSha('paused-1')
  await env.registry.push({ seed: 'paused-1' }, 'acme/paused', ['latest', sha])
  const image = `${env.host}/acme/paused:latest`
  await s.pause()
  for (const hash of ['p1', 'p2']) {
    const out = await admit(r, rolloutPod(image, { kind: 'ReplicaSet', uid: `rs-${hash}` }, { 'pod-template-hash': hash }))
    t.equal(out.image, `${env.host}/acme/paused:${sha}`, 'pinned from the registry')
    t.equal(out.response.warnings, undefined)
  }
  t.equal(await pinsCount(r.metrics, 'registry'), 2, 'counted as source="registry"')
  t.equal(r.p.logs.records.filter(l => /rollout pins: the API server did not answer/.test(l.msg)).length, 1, 'logged once')

  // An API server that accepts connections and never answers: the cluster read gives up within
  // its share of the lookup budget and the registry still answers inside the review's deadline.
  const sockets = new Set<Socket>()
  const silent = createNetServer((sock) => { sockets.add(sock) })
  await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { for (const sock of sockets) sock.destroy(); silent.close() })
  const kc = new KubeConfig()
  kc.loadFromOptions({
    clusters: [{ name: 'silent', server: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'x' }],
    contexts: [{ name: 'silent', cluster: 'silent', user: 'u' }],
    currentContext: 'silent',
  })
  const q = await replica(t, kc, 'pullpin-q', `${CACHE}\n  lookupBudgetMs: 2000`)
  const out = await admit(q, rolloutPod(image, { kind: 'ReplicaSet', uid: 'rs-silent' }, { 'pod-template-hash': 's1' }))
  t.equal(out.image, `${env.host}/acme/paused:${sha}`, 'pinned from the registry')
  t.equal(out.response.warnings, undefined, 'no deadline warning')
  t.equal(await pinsCount(q.metrics, 'registry'), 1)
})

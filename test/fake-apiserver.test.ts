// Proves the in-test API server behaves like kube-apiserver where pullpin's cluster code depends on
// it, driven through the real @kubernetes/client-node 1.4 clients with pullpin's own call options.
// What pullpin calls (src/cluster, the only user of client-node), and so all the fake serves:
//   CoreV1Api        readNamespace, listNamespace                     (namespace-directory, informers)
//                    create/read/replaceNamespacedSecret              (copies, TLS Secret, placeholders)
//                    deleteNamespacedSecret + preconditions uid/rv    (copies no longer wanted)
//                    listNamespacedSecret, listSecretForAllNamespaces (informers: fieldSelector
//                      metadata.name= / type=; retired copies: labelSelector managed-by=pullpin)
//                    listServiceAccountForAllNamespaces               (informer, metadata.name=)
//                    patchNamespacedServiceAccount, merge patch carrying metadata.resourceVersion
//                    listNamespacedPod, labelSelector + limit, Accept PartialObjectMetadataList
//                      (admitted-pins: a pod of a rollout revision already admitted)
//   CoordinationV1Api read/create/replaceNamespacedLease, MicroTime times (leader election)
//   AdmissionregistrationV1Api listMutatingWebhookConfiguration (informer, metadata.name=),
//                    patchMutatingWebhookConfiguration, JSON patch with a test op on resourceVersion
//                    patchValidatingWebhookConfiguration (the workload webhook's caBundle)
//   EventsV1Api      createNamespacedEvent, patchNamespacedEvent (merge patch of series)
//   CustomObjectsApi getAPIResources wgpolicyk8s.io/v1alpha2 (discovery), get/create/replace
//                    policyreports, listCustomObjectForAllNamespaces (labelSelector), get of
//                    apps/v1 and batch/v1 workloads (do they still exist?)
//   Watch            every informer path with resourceVersion (of its list), allowWatchBookmarks,
//                    timeoutSeconds, fieldSelector; 410 (HTTP or ERROR event) means relist
//   CoreV1Api        readNamespacedServiceAccount, readNamespacedPod, listNamespacedEvent with
//                    fieldSelector involvedObject.name= (pullpin doctor --namespace --pod)
// Tests of pullpin also create namespaces and merge-patch their labels, create, read and replace a
// MutatingWebhookConfiguration and delete a Lease. Everything else is refused loudly (last test).
import t from 'tap'
import {
  AdmissionregistrationV1Api,
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  KubeConfig,
  Watch,
  type V1Lease,
  type V1Secret,
} from '@kubernetes/client-node'
import { METADATA_ONLY, callOptions, microTime } from '../src/cluster/kube-api.js'
import { ADMITTED_PODS_PAGE, createAdmittedPinsReader } from '../src/cluster/admitted-pins.js'
import { connectCluster } from '../src/cluster/connection.js'
import { startFakeApiServer, type FakeApiServer } from './support/fake-apiserver.js'
import { until } from './support/until.js'

interface Status { kind: string; code: number; reason: string; message: string; details?: Record<string, unknown> }

/** the Status a client-node call failed with (ApiException.body is the raw response text) */
async function failure (p: Promise<unknown>): Promise<{ code: number; status: Status | undefined }> {
  try {
    await p
  } catch (err) {
    if (!(err instanceof ApiException)) throw err
    const body = err.body as unknown
    return { code: err.code, status: typeof body === 'string' && body !== '' ? (JSON.parse(body) as Status) : undefined }
  }
  throw new Error('expected the call to fail')
}

async function withServer (t: { teardown(fn: () => unknown): void }, opts?: Parameters<typeof startFakeApiServer>[0]): Promise<FakeApiServer> {
  const s = await startFakeApiServer(opts)
  t.teardown(() => s.stop())
  return s
}

const b64 = (s: string): string => Buffer.from(s).toString('base64')
const secret = (name: string, labels?: Record<string, string>): V1Secret => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name, ...(labels ? { labels } : {}) },
  data: { k: b64('v') },
})
const merge = callOptions({ patch: 'merge' })
const json = callOptions({ patch: 'json' })

t.test('Secrets: create, read, 409 AlreadyExists, optimistic replace, validation, delete with preconditions', async (t) => {
  const s = await withServer(t, { namespaces: ['default', 'team-a'] })
  const core = s.kubeConfig().makeApiClient(CoreV1Api)

  const created = await core.createNamespacedSecret({ namespace: 'default', body: secret('a') })
  t.equal(created.metadata?.namespace, 'default', 'namespace taken from the URL')
  t.match(created.metadata?.uid, /^[0-9a-f-]{36}$/)
  t.equal(created.metadata?.resourceVersion, s.resourceVersion())
  t.equal(created.type, 'Opaque', 'type defaulted')
  t.match(s.requests.at(-1), { method: 'POST', path: '/api/v1/namespaces/default/secrets', body: { metadata: { name: 'a' } } })

  const got = await core.readNamespacedSecret({ name: 'a', namespace: 'default' })
  t.match(got, { kind: 'Secret', apiVersion: 'v1', metadata: { resourceVersion: created.metadata?.resourceVersion } })
  const missing = await failure(core.readNamespacedSecret({ name: 'zz', namespace: 'default' }))
  t.match(missing, { code: 404, status: { reason: 'NotFound', message: 'secrets "zz" not found', details: { name: 'zz', kind: 'secrets' } } })

  // create: 409 when the name is taken; 404 in a namespace that does not exist (NamespaceLifecycle)
  t.match(await failure(core.createNamespacedSecret({ namespace: 'default', body: secret('a') })),
    { code: 409, status: { kind: 'Status', code: 409, reason: 'AlreadyExists', message: 'secrets "a" already exists', details: { name: 'a', kind: 'secrets' } } })
  t.match(await failure(core.createNamespacedSecret({ namespace: 'nope', body: secret('a') })), { code: 404, status: { message: 'namespaces "nope" not found' } })
  t.equal((await failure(core.createNamespacedSecret({ namespace: 'default', body: { ...got, metadata: { ...got.metadata, name: 'copy' } } }))).code, 500,
    'a create carrying a resourceVersion is refused like the storage layer does')

  // validation
  t.match(await failure(core.createNamespacedSecret({ namespace: 'default', body: secret('Bad_Name') })),
    { code: 422, status: { reason: 'Invalid', details: { kind: 'Secret', causes: [{ field: 'metadata.name' }] } } })
  t.equal((await failure(core.createNamespacedSecret({ namespace: 'default', body: { metadata: {} } }))).code, 422, 'name required')
  t.equal((await failure(core.createNamespacedSecret({ namespace: 'default', body: { ...secret('b'), data: { k: 'not base64!' } } }))).code, 400)
  t.match(await failure(core.createNamespacedSecret({ namespace: 'default', body: { ...secret('b'), type: 'kubernetes.io/dockerconfigjson' } })),
    { code: 422, status: { details: { causes: [{ field: 'data[.dockerconfigjson]' }] } } })
  t.equal((await failure(core.createNamespacedSecret({ namespace: 'default', body: { ...secret('b'), metadata: { name: 'b', namespace: 'team-a' } } }))).code, 400, 'namespace in body and URL differ')

  // replace: the current resourceVersion wins and bumps it; a stale one or another uid is a 409
  const updated = await core.replaceNamespacedSecret({ name: 'a', namespace: 'default', body: { ...got, data: { k: b64('v2') } } })
  t.not(updated.metadata?.resourceVersion, got.metadata?.resourceVersion)
  t.equal(updated.metadata?.uid, created.metadata?.uid)
  t.match(await failure(core.replaceNamespacedSecret({ name: 'a', namespace: 'default', body: { ...got, data: {} } })),
    { code: 409, status: { reason: 'Conflict', message: /Operation cannot be fulfilled on secrets "a": the object has been modified/ } })
  t.match(await failure(core.replaceNamespacedSecret({ name: 'a', namespace: 'default', body: { ...updated, metadata: { ...updated.metadata, uid: 'other' } } })),
    { code: 409, status: { message: /Precondition failed: UID/ } })
  t.equal((await failure(core.replaceNamespacedSecret({ name: 'zz', namespace: 'default', body: secret('zz') }))).code, 404, 'no create on update')
  t.match(await failure(core.replaceNamespacedSecret({ name: 'a', namespace: 'default', body: { ...updated, type: 'kubernetes.io/tls' } })),
    { code: 422, status: { details: { causes: [{ field: 'type' }] } } }, 'type is immutable')
  t.equal((await failure(core.replaceNamespacedSecret({ name: 'a', namespace: 'default', body: { ...updated, metadata: { ...updated.metadata, name: 'b' } } }))).code, 400)
  const rvBefore = s.resourceVersion()
  const same = await core.replaceNamespacedSecret({ name: 'a', namespace: 'default', body: updated })
  t.equal(same.metadata?.resourceVersion, updated.metadata?.resourceVersion, 'an update that changes nothing is not written')
  t.equal(s.resourceVersion(), rvBefore)

  // delete: preconditions on uid and resourceVersion, then a Success Status
  t.match(await failure(core.deleteNamespacedSecret({ name: 'a', namespace: 'default', body: { preconditions: { uid: 'other' } } })),
    { code: 409, status: { message: /Precondition failed: UID in precondition: other/ } })
  t.match(await failure(core.deleteNamespacedSecret({ name: 'a', namespace: 'default', body: { preconditions: { resourceVersion: got.metadata?.resourceVersion } } })),
    { code: 409, status: { message: /Precondition failed: ResourceVersion in precondition/ } })
  const del = await core.deleteNamespacedSecret({ name: 'a', namespace: 'default', body: { preconditions: { uid: updated.metadata?.uid, resourceVersion: updated.metadata?.resourceVersion } } })
  t.match(del, { status: 'Success', details: { name: 'a', kind: 'secrets', uid: created.metadata?.uid } })
  t.equal(s.get({ resource: 'secrets', namespace: 'default', name: 'a' }), undefined)
  t.equal((await failure(core.deleteNamespacedSecret({ name: 'a', namespace: 'default' }))).code, 404)
})

t.test('patches: merge patch with a resourceVersion precondition, JSON patch with a test op', async (t) => {
  const s = await withServer(t)
  const kc = s.kubeConfig()
  const core = kc.makeApiClient(CoreV1Api)
  const adm = kc.makeApiClient(AdmissionregistrationV1Api)

  // ServiceAccount imagePullSecrets, as the reconciler writes them: the list is replaced whole.
  const sa = s.seed({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: 'default', annotations: { keep: 'me' } }, imagePullSecrets: [{ name: 'x' }] })
  const patched = await core.patchNamespacedServiceAccount({ name: 'default', namespace: 'default', body: { metadata: { resourceVersion: sa.metadata.resourceVersion, annotations: { 'pullpin.io/x': 'y' } }, imagePullSecrets: [{ name: 'ghcr' }] } }, merge)
  t.equal(s.requests.at(-1)?.contentType, 'application/merge-patch+json')
  t.same(patched.imagePullSecrets, [{ name: 'ghcr' }])
  t.same(patched.metadata?.annotations, { keep: 'me', 'pullpin.io/x': 'y' })
  const cleared = await core.patchNamespacedServiceAccount({ name: 'default', namespace: 'default', body: { metadata: { annotations: { 'pullpin.io/x': null } } } }, merge)
  t.same(cleared.metadata?.annotations, { keep: 'me' }, 'null removes a key (RFC 7386)')
  t.match(await failure(core.patchNamespacedServiceAccount({ name: 'default', namespace: 'default', body: { metadata: { resourceVersion: sa.metadata.resourceVersion }, imagePullSecrets: [] } }, merge)),
    { code: 409, status: { reason: 'Conflict' } }, 'a stale resourceVersion in the patch is a precondition')
  t.equal((await failure(core.patchNamespacedServiceAccount({ name: 'nope', namespace: 'default', body: {} }, merge))).code, 404)

  // Namespace labels (tests opt namespaces in this way); the server's own label stays.
  const ns = await core.patchNamespace({ name: 'default', body: { metadata: { labels: { 'pullpin.io/inject': 'enabled' } } } }, merge)
  t.same(ns.metadata?.labels, { 'kubernetes.io/metadata.name': 'default', 'pullpin.io/inject': 'enabled' })
  t.equal(ns.status?.phase, 'Active')
  // Namespaces created on the fly (tests of a namespace the informer has not seen yet)
  const fresh = await core.createNamespace({ body: { metadata: { name: 'fresh', labels: { 'pullpin.io/inject': 'enabled' } } } })
  t.match(fresh, { metadata: { labels: { 'kubernetes.io/metadata.name': 'fresh', 'pullpin.io/inject': 'enabled' } }, status: { phase: 'Active' } })
  t.match(await failure(core.createNamespace({ body: { metadata: { name: 'a.b' } } })), { code: 422, status: { message: /RFC 1123 label/ } }, 'a namespace name is a DNS label')
  await core.createNamespacedSecret({ namespace: 'fresh', body: secret('in-fresh') })

  // caBundle, as the leader writes it
  s.seed({ apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: 'pullpin' }, webhooks: [{ name: 'a.pullpin.io', clientConfig: {} }, { name: 'b.pullpin.io', clientConfig: {} }] })
  const mwc = await adm.readMutatingWebhookConfiguration({ name: 'pullpin' })
  const ca = b64('-----BEGIN CERTIFICATE-----')
  const ops = (rv: string | undefined): object[] => [{ op: 'test', path: '/metadata/resourceVersion', value: rv }, { op: 'add', path: '/webhooks/1/clientConfig/caBundle', value: ca }]
  const withCa = await adm.patchMutatingWebhookConfiguration({ name: 'pullpin', body: ops(mwc.metadata?.resourceVersion) }, json)
  t.equal(s.requests.at(-1)?.contentType, 'application/json-patch+json')
  t.equal(s.requests.at(-1)?.path, '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/pullpin')
  t.same(withCa.webhooks?.map(w => w.clientConfig.caBundle), [undefined, ca])
  t.equal((await failure(adm.patchMutatingWebhookConfiguration({ name: 'pullpin', body: ops(mwc.metadata?.resourceVersion) }, json))).code, 422, 'a failed test op is 422')
  t.equal((await failure(adm.patchMutatingWebhookConfiguration({ name: 'pullpin', body: [{ op: 'add', path: '/webhooks/0/clientConfig/caBundle', value: 'not base64!' }] }, json))).code, 400)
  t.equal((await failure(adm.patchMutatingWebhookConfiguration({ name: 'pullpin', body: {} }, json))).code, 400, 'a JSON patch is an array')
})

t.test('lists: equality selectors, items without kind, paging bound to the first page, 410 for an expired continue', async (t) => {
  const s = await withServer(t, { namespaces: ['default', 'team-a'] })
  const core = s.kubeConfig().makeApiClient(CoreV1Api)
  const adm = s.kubeConfig().makeApiClient(AdmissionregistrationV1Api)
  const managed = { 'app.kubernetes.io/managed-by': 'pullpin' }
  s.seed({ ...secret('ghcr'), metadata: { name: 'ghcr', namespace: 'default', labels: managed }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': b64('{}') } })
  s.seed({ ...secret('ghcr'), metadata: { name: 'ghcr', namespace: 'team-a' } })
  s.seed({ ...secret('tls'), metadata: { name: 'tls', namespace: 'team-a', labels: managed } })
  s.seed({ ...secret('other'), metadata: { name: 'other', namespace: 'team-a', labels: { 'app.kubernetes.io/managed-by': 'helm' } } })
  s.seed({ apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: 'pullpin' } })
  s.seed({ apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: 'else' } })
  s.seed({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: 'team-a' } })
  s.seed({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'builder', namespace: 'team-a' } })
  const names = (l: { items: Array<{ metadata?: { name?: string; namespace?: string } }> }): string[] => l.items.map(i => `${i.metadata?.namespace ?? ''}/${i.metadata?.name ?? ''}`)

  const all = await core.listSecretForAllNamespaces({ labelSelector: 'app.kubernetes.io/managed-by=pullpin' })
  t.equal(s.requests.at(-1)?.path, '/api/v1/secrets')
  t.same(names(all), ['default/ghcr', 'team-a/tls'])
  t.match(all, { kind: 'SecretList', apiVersion: 'v1', metadata: { resourceVersion: s.resourceVersion() } })
  t.equal(all.items[0]?.kind, undefined, 'as on the real server, list items carry no kind')
  t.same(names(await core.listSecretForAllNamespaces({ fieldSelector: 'metadata.name=ghcr' })), ['default/ghcr', 'team-a/ghcr'])
  t.same(names(await core.listSecretForAllNamespaces({ fieldSelector: 'type=kubernetes.io/dockerconfigjson' })), ['default/ghcr'])
  t.same(names(await core.listNamespacedSecret({ namespace: 'team-a', fieldSelector: 'metadata.name=ghcr' })), ['team-a/ghcr'])
  t.same(names(await core.listServiceAccountForAllNamespaces({ fieldSelector: 'metadata.name=default' })), ['team-a/default'])
  t.same(names(await adm.listMutatingWebhookConfiguration({ fieldSelector: 'metadata.name=pullpin' })), ['/pullpin'])
  t.same(names(await core.listNamespace()), ['/default', '/team-a'])
  // only equality is modelled: anything else is refused, not guessed at
  t.match(await failure(core.listSecretForAllNamespaces({ labelSelector: 'app in (web)' })), { code: 400, status: { message: /fake-apiserver: label selector term/ } })
  t.equal((await failure(core.listSecretForAllNamespaces({ fieldSelector: 'metadata.name!=ghcr' }))).code, 400)
  t.match(await failure(core.listSecretForAllNamespaces({ fieldSelector: 'data.k=x' })), { code: 400, status: { message: 'field label not supported: data.k' } })

  // pages: every page shows the state of the first one; a continue token dies with compaction
  const p1 = await core.listNamespacedSecret({ namespace: 'team-a', limit: 2 })
  t.same(names(p1), ['team-a/ghcr', 'team-a/other'])
  t.equal(p1.metadata?.remainingItemCount, 1)
  await core.deleteNamespacedSecret({ name: 'tls', namespace: 'team-a' })
  await core.createNamespacedSecret({ namespace: 'team-a', body: secret('zz') })
  const p2 = await core.listNamespacedSecret({ namespace: 'team-a', limit: 2, _continue: p1.metadata?._continue })
  t.same(names(p2), ['team-a/tls'], 'the continued list is consistent with the first page')
  t.equal(p2.metadata?._continue, undefined)
  t.equal(p2.metadata?.resourceVersion, p1.metadata?.resourceVersion)
  s.compact()
  t.match(await failure(core.listNamespacedSecret({ namespace: 'team-a', limit: 2, _continue: p1.metadata?._continue })), { code: 410, status: { reason: 'Expired' } })
  t.same(names(await core.listNamespacedSecret({ namespace: 'team-a' })), ['team-a/ghcr', 'team-a/other', 'team-a/zz'])
})

type Ev = { type: string; name: string; rv: string }

function collect (): { events: Ev[]; objects: any[]; cb: (type: string, obj: any) => void } {
  const events: Ev[] = []
  const objects: any[] = []
  return { events, objects, cb: (type, obj) => { events.push({ type, name: obj?.metadata?.name ?? obj?.code, rv: obj?.metadata?.resourceVersion }); objects.push(obj) } }
}

t.test('watches as the informer makes them: replay from a resourceVersion, live events, selectors, bookmarks, timeout, 410', async (t) => {
  const s = await withServer(t, { bookmarkIntervalMs: 50, namespaces: ['default', 'team-a'] })
  const kc = s.kubeConfig()
  const core = kc.makeApiClient(CoreV1Api)
  const watch = new Watch(kc)
  await core.createNamespacedSecret({ namespace: 'default', body: secret('pre') })
  const list = await core.listSecretForAllNamespaces({ fieldSelector: 'metadata.name=w' })
  const from = list.metadata?.resourceVersion as string

  // Live: ADDED, MODIFIED, DELETED of the selected name in any namespace, each with its resourceVersion.
  const a = collect()
  let doneA: unknown = 'not called'
  const ctrlA = await watch.watch('/api/v1/secrets', { resourceVersion: from, fieldSelector: 'metadata.name=w' }, a.cb, (err) => { doneA = err })
  await s.waitForWatches('secrets')
  const created = await core.createNamespacedSecret({ namespace: 'team-a', body: secret('w') })
  await core.createNamespacedSecret({ namespace: 'team-a', body: secret('not-w') })
  await core.replaceNamespacedSecret({ name: 'w', namespace: 'team-a', body: { ...created, data: { k: b64('v2') } } })
  await core.deleteNamespacedSecret({ name: 'w', namespace: 'team-a' })
  await until('three events', () => a.events.length === 3)
  t.same(a.events.map((e) => `${e.type} ${e.name}`), ['ADDED w', 'MODIFIED w', 'DELETED w'])
  t.equal(a.events[0]?.rv, created.metadata?.resourceVersion)
  t.equal(a.events[2]?.rv, s.resourceVersion(), 'DELETED carries the deletion resourceVersion')
  t.match(a.objects[0], { kind: 'Secret', apiVersion: 'v1', metadata: { namespace: 'team-a' } }, 'watch objects carry kind')
  ctrlA.abort()
  await until('watch A done', () => doneA !== 'not called')
  await until('watch A dropped', () => s.watchCount('secrets') === 0)

  // Resumed from the list's resourceVersion: history replayed, then bookmarks (allowWatchBookmarks)
  // with the current resourceVersion, then a clean end at timeoutSeconds; namespace-scoped path.
  const b = collect()
  let doneB: unknown = 'not called'
  await watch.watch('/api/v1/namespaces/team-a/secrets', { resourceVersion: from, allowWatchBookmarks: true, timeoutSeconds: 1 }, b.cb, (err) => { doneB = err })
  await until('timeoutSeconds ends the watch', () => doneB !== 'not called', 5000)
  t.equal(doneB, null, 'a server-side end is a clean done(null)')
  t.same(b.events.slice(0, 4).map((e) => `${e.type} ${e.name}`), ['ADDED w', 'ADDED not-w', 'MODIFIED w', 'DELETED w'], 'history replayed, this namespace only')
  t.ok(b.events.length > 4 && b.events.slice(4).every((e) => e.type === 'BOOKMARK' && e.rv === s.resourceVersion()), 'bookmarks with the current resourceVersion')

  // No bookmarks unless asked for: C, opened after F, has none once F has had two since (a whole
  // bookmark interval of C's lifetime). closeWatches() ends streams cleanly (the server's request timeout).
  const f = collect()
  await watch.watch('/api/v1/namespaces/default/secrets', { resourceVersion: s.resourceVersion(), allowWatchBookmarks: true }, f.cb, () => {})
  await s.waitForWatches('secrets')
  const c = collect()
  let doneC: unknown = 'not called'
  await watch.watch('/api/v1/namespaces/default/secrets', { resourceVersion: s.resourceVersion() }, c.cb, (err) => { doneC = err })
  await s.waitForWatches('secrets', 2)
  const fBookmarks = (): number => f.events.filter((e) => e.type === 'BOOKMARK').length
  const before = fBookmarks()
  await core.createNamespacedSecret({ namespace: 'default', body: secret('late') })
  await until('late seen and two bookmark intervals passed', () => c.events.length >= 1 && fBookmarks() >= before + 2)
  s.closeWatches()
  await until('watch C done', () => doneC !== 'not called')
  t.equal(doneC, null)
  t.same(c.events.map((e) => e.type), ['ADDED'])

  // A watch from before the compaction gets an in-band 410 Expired and the stream ends.
  s.compact()
  const d = collect()
  let doneD: unknown = 'not called'
  await watch.watch('/api/v1/secrets', { resourceVersion: from, allowWatchBookmarks: true }, d.cb, (err) => { doneD = err })
  await until('watch D done', () => doneD !== 'not called')
  t.same(d.events.map((e) => e.type), ['ERROR'])
  t.match(d.objects[0], { kind: 'Status', code: 410, reason: 'Expired', message: /too old resource version/ })
  t.equal(s.watchCount(), 0, 'the expired watch was closed')
  // ... while one from the compaction point on is valid.
  const e = collect()
  const ctrlE = await watch.watch('/api/v1/secrets', { resourceVersion: s.resourceVersion() }, e.cb, () => {})
  await s.waitForWatches('secrets')
  await core.createNamespacedSecret({ namespace: 'default', body: secret('after') })
  await until('after seen', () => e.events.length === 1)
  ctrlE.abort()

  // An HTTP error on the watch request reaches done() with its statusCode (the informer's isGone).
  s.failNext('GET', '/api/v1/secrets', 410)
  const failed = await new Promise<any>((resolve) => { void watch.watch('/api/v1/secrets', { resourceVersion: s.resourceVersion() }, () => {}, resolve) })
  t.equal(failed?.statusCode, 410)
})

t.test('doctor reads: a pod, a ServiceAccount, and events listed by involvedObject.name', async (t) => {
  const s = await withServer(t)
  const core = s.kubeConfig().makeApiClient(CoreV1Api)
  s.seed({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-1', namespace: 'default' }, spec: { serviceAccountName: 'builder', containers: [{ name: 'web', image: 'r.example/web:1' }] } })
  s.seed({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'builder', namespace: 'default' }, imagePullSecrets: [{ name: 'regcred' }] })
  for (const [name, pod] of [['e1', 'web-1'], ['e2', 'web-2'], ['e3', 'web-1']]) {
    s.seed({ apiVersion: 'v1', kind: 'Event', metadata: { name, namespace: 'default' }, involvedObject: { kind: 'Pod', name: pod, namespace: 'default' }, type: 'Warning', reason: 'Failed', message: `about ${pod}` })
  }
  t.equal((await core.readNamespacedPod({ name: 'web-1', namespace: 'default' })).spec?.serviceAccountName, 'builder')
  t.same((await core.readNamespacedServiceAccount({ name: 'builder', namespace: 'default' })).imagePullSecrets, [{ name: 'regcred' }])
  const events = await core.listNamespacedEvent({ namespace: 'default', fieldSelector: 'involvedObject.name=web-1' })
  t.same(events.items.map((e) => e.metadata?.name), ['e1', 'e3'], 'only the events about that object')
  t.equal((await failure(core.listNamespacedEvent({ namespace: 'default', fieldSelector: 'source=kubelet' }))).code, 400, 'other field labels are refused')
})

t.test('Leases: create, conflicting replaces between two clients, MicroTime, delete', async (t) => {
  const s = await withServer(t, { namespaces: ['default', 'pullpin'] })
  const a = s.kubeConfig().makeApiClient(CoordinationV1Api)
  // the second client loads the kubeconfig file body, as a separate process would
  const kc2 = new KubeConfig()
  kc2.loadFromString(s.kubeconfigYaml())
  const b = kc2.makeApiClient(CoordinationV1Api)
  const now = (): never => microTime(new Date()) as never

  const lease: V1Lease = { metadata: { name: 'pullpin-leader', namespace: 'pullpin' }, spec: { holderIdentity: 'a', leaseDurationSeconds: 15, acquireTime: now(), renewTime: now(), leaseTransitions: 0 } }
  await a.createNamespacedLease({ namespace: 'pullpin', body: lease })
  t.equal(s.requests.at(-1)?.path, '/apis/coordination.k8s.io/v1/namespaces/pullpin/leases')
  t.match(await failure(b.createNamespacedLease({ namespace: 'pullpin', body: lease })), { code: 409, status: { reason: 'AlreadyExists', message: 'leases.coordination.k8s.io "pullpin-leader" already exists' } })
  const seenByA = await a.readNamespacedLease({ name: 'pullpin-leader', namespace: 'pullpin' })
  const seenByB = await b.readNamespacedLease({ name: 'pullpin-leader', namespace: 'pullpin' })

  const renewed = await a.replaceNamespacedLease({ name: 'pullpin-leader', namespace: 'pullpin', body: { ...seenByA, spec: { ...seenByA.spec, renewTime: now() } } })
  t.not(renewed.metadata?.resourceVersion, seenByA.metadata?.resourceVersion)
  const takeover = await failure(b.replaceNamespacedLease({ name: 'pullpin-leader', namespace: 'pullpin', body: { ...seenByB, spec: { ...seenByB.spec, holderIdentity: 'b' } } }))
  t.match(takeover, { code: 409, status: { reason: 'Conflict', details: { name: 'pullpin-leader', group: 'coordination.k8s.io', kind: 'leases' }, message: /leases\.coordination\.k8s\.io "pullpin-leader"/ } })
  t.equal(s.get({ group: 'coordination.k8s.io', resource: 'leases', namespace: 'pullpin', name: 'pullpin-leader' })?.spec.holderIdentity, 'a')

  // A plain Date serialises with millisecond precision, which the real server rejects for MicroTime.
  t.equal((await failure(a.replaceNamespacedLease({ name: 'pullpin-leader', namespace: 'pullpin', body: { ...renewed, spec: { ...renewed.spec, renewTime: new Date() } } }))).code, 400)
  t.match(await failure(a.createNamespacedLease({ namespace: 'pullpin', body: { metadata: { name: 'bad' }, spec: { leaseDurationSeconds: 0 } } })),
    { code: 422, status: { details: { causes: [{ field: 'spec.leaseDurationSeconds' }] } } })
  t.match(await a.deleteNamespacedLease({ name: 'pullpin-leader', namespace: 'pullpin' }), { status: 'Success' })
})

t.test('test controls: auth, failNext, pause/resume, seed/get/list; what pullpin does not use is refused', async (t) => {
  const s = await withServer(t, { namespaces: ['default'] })
  const kc = s.kubeConfig()
  const core = kc.makeApiClient(CoreV1Api)

  // the bearer token of the kubeconfig is required
  const other = new KubeConfig()
  other.loadFromString(s.kubeconfigYaml().replace(/token: .*/, 'token: wrong'))
  t.equal((await failure(other.makeApiClient(CoreV1Api).listNamespace())).code, 401)
  const bare = await fetch(`${s.url}/api/v1/namespaces`)
  t.match(await bare.json(), { kind: 'Status', code: 401, reason: 'Unauthorized' })

  // injected failures hit only the matching requests, then stop
  s.seed({ ...secret('x'), metadata: { name: 'x', namespace: 'default' } })
  s.failNext('GET', '/api/v1/namespaces/default/secrets', 500, 2)
  t.match(await failure(core.listNamespacedSecret({ namespace: 'default' })), { code: 500, status: { reason: 'InternalError', message: /injected failure/ } })
  t.equal((await core.listNamespace()).items.length, 1, 'other paths unaffected')
  t.equal((await failure(core.readNamespacedSecret({ name: 'x', namespace: 'default' }))).code, 500)
  t.equal((await core.readNamespacedSecret({ name: 'x', namespace: 'default' })).metadata?.name, 'x')

  // seed() writes like a client would (resourceVersion, watch events), get()/list() read back
  const rv = Number(s.resourceVersion())
  const seeded = s.seed({ ...secret('x'), metadata: { name: 'x', namespace: 'default' }, data: { k: b64('v2') } })
  t.equal(seeded.metadata.resourceVersion, String(rv + 1))
  t.equal(s.get({ resource: 'secrets', namespace: 'default', name: 'x' })?.data.k, b64('v2'))
  t.same(s.list('secrets').map((o) => o.metadata.name), ['x'])
  t.same(s.list('namespaces').map((o) => o.metadata.labels), [{ 'kubernetes.io/metadata.name': 'default' }])

  // pause() refuses connections and drops watches; resume() serves on the same URL
  const url = s.url
  await new Watch(kc).watch('/api/v1/namespaces', { resourceVersion: s.resourceVersion() }, () => {}, () => {})
  await s.waitForWatches('namespaces')
  await s.pause()
  t.equal(s.watchCount(), 0)
  await t.rejects(fetch(`${url}/api/v1/namespaces`), 'connection refused while paused')
  await s.resume()
  t.equal(s.url, url)
  t.equal((await core.listNamespace()).items.length, 1)

  // refused, naming the fake: another patch type, query parameter, verb or path
  const strategic = await fetch(`${url}/api/v1/namespaces/default/secrets/x`, { method: 'PATCH', headers: { authorization: 'Bearer fake-apiserver-token', 'content-type': 'application/strategic-merge-patch+json' }, body: '{}' })
  t.equal(strategic.status, 415)
  t.match(await failure(core.listNamespacedSecret({ namespace: 'default', resourceVersion: '0' })), { code: 400, status: { message: /fake-apiserver: query parameter 'resourceVersion'/ } })
  t.equal((await failure(core.createNamespacedSecret({ namespace: 'default', body: secret('y'), dryRun: 'All' }))).code, 400)
  t.match(await new Promise<any>((resolve) => { void new Watch(kc).watch('/api/v1/secrets', {}, () => {}, resolve) }), { statusCode: 400 }, 'a watch without a resourceVersion')
  t.equal((await failure(core.deleteNamespace({ name: 'default' }))).code, 405)
  t.equal((await failure(core.deleteCollectionNamespacedSecret({ namespace: 'default' }))).code, 405)
  t.equal((await failure(core.listNamespacedConfigMap({ namespace: 'default' }))).code, 404)
  const unknown = await fetch(`${url}/apis/apps/v1/controllerrevisions`, { headers: { authorization: 'Bearer fake-apiserver-token' } })
  t.equal(unknown.status, 404)
})

t.test('pods: label selector and limit on a metadata-only list; the admitted-pins reader on top', async (t) => {
  const s = await withServer(t, { namespaces: ['default', 'team-a'] })
  const core = s.kubeConfig().makeApiClient(CoreV1Api)
  const owner = (uid: string) => [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web', uid, controller: true }]
  const pins = (tag: string) => JSON.stringify({ app: { image: 'ghcr.io/acme/web:latest', pin: `ghcr.io/acme/web:${tag}`, digest: `sha256:${'a'.repeat(64)}` } })
  const pod = (name: string, hash: string, extra: Record<string, unknown> = {}) => s.seed({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'team-a', labels: { 'pod-template-hash': hash }, ...extra }, spec: { containers: [{ name: 'app', image: 'x' }] } })
  const first = pod('web-a-0', 'a', { ownerReferences: owner('rs-a') }) // admitted while pullpin was off: no pins
  pod('web-a-1', 'a', { ownerReferences: owner('rs-a'), annotations: { 'pullpin.io/pins': pins('one') } })
  pod('web-a-2', 'a', { ownerReferences: owner('rs-other'), annotations: { 'pullpin.io/pins': pins('forged') } })
  pod('web-b-0', 'b', { ownerReferences: owner('rs-a'), annotations: { 'pullpin.io/pins': pins('two') } })
  t.match(first.metadata.creationTimestamp, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/, 'the server sets creationTimestamp')

  const list = await core.listNamespacedPod({ namespace: 'team-a', labelSelector: 'pod-template-hash=a', limit: 2 }, callOptions({ accept: METADATA_ONLY }))
  t.same(list.items.map(i => i.metadata?.name), ['web-a-0', 'web-a-1'])
  t.equal(list.metadata?.remainingItemCount, 1)
  t.equal(list.items[0]?.spec, undefined, 'metadata only')
  t.equal(list.items[1]?.metadata?.annotations?.['pullpin.io/pins'], pins('one'))
  t.match(s.requests.at(-1), { path: '/api/v1/namespaces/team-a/pods', accept: METADATA_ONLY })
  t.ok((await core.listNamespacedPod({ namespace: 'team-a' })).items[0]?.spec, 'full objects without the Accept parameters')
  t.match(await failure(core.listNamespacedPod({ namespace: 'team-a' }, callOptions({ accept: 'application/json;as=Table;g=meta.k8s.io;v=v1' }))), { code: 400 })

  const read = createAdmittedPinsReader(connectCluster({ kubeConfig: s.kubeConfig() }))
  const revision = (hash: string) => ({ key: hash, namespace: 'team-a', ownerUid: 'rs-a', label: { name: 'pod-template-hash', value: hash } })
  t.same(await read(revision('a'), AbortSignal.timeout(5000)), [pins('one')], 'the pod without pins and the other controller\'s pod are skipped')
  t.match(s.requests.at(-1), { query: `labelSelector=pod-template-hash%3Da&limit=${ADMITTED_PODS_PAGE}`, accept: METADATA_ONLY })
  t.same(await read(revision('c'), AbortSignal.timeout(5000)), [], 'no pod of the revision yet')
  await s.pause()
  await t.rejects(read(revision('a'), AbortSignal.timeout(5000)), 'the API server gone: the reader throws')
})

t.test('events.k8s.io Events: create (409 on a taken name), series patch, immutable fields, 404; PolicyReports only with their CRD', async (t) => {
  const server = await startFakeApiServer({ namespaces: ['default', 'team-a'] })
  t.teardown(() => server.stop())
  const kc = server.kubeConfig()
  const events = kc.makeApiClient(EventsV1Api)
  const now = microTime(new Date())
  const event = (name: string, extra: Record<string, unknown> = {}): any => ({ metadata: { name }, eventTime: now, reportingController: 'pullpin.io/pullpin', reportingInstance: 'r1', action: 'Admit', reason: 'ImageNotFound', type: 'Warning', note: 'n', regarding: { kind: 'ReplicaSet', name: 'web', namespace: 'team-a' }, ...extra })
  const created = await events.createNamespacedEvent({ namespace: 'team-a', body: event('web.1') })
  t.ok(created.metadata?.resourceVersion)
  t.equal((await failure(events.createNamespacedEvent({ namespace: 'team-a', body: event('web.1') }))).code, 409)
  t.match(await failure(events.createNamespacedEvent({ namespace: 'team-a', body: event('web.2', { eventTime: new Date().toISOString() }) })), { code: 400, status: { message: /RFC3339 with microseconds/ } })
  t.match(await failure(events.createNamespacedEvent({ namespace: 'team-a', body: event('web.3', { note: 'x'.repeat(1025) }) })), { code: 422 })
  t.match(await failure(events.createNamespacedEvent({ namespace: 'team-a', body: event('web.4', { reportingInstance: undefined }) })), { code: 422 })
  const merge = callOptions({ patch: 'merge' })
  const patched = await events.patchNamespacedEvent({ name: 'web.1', namespace: 'team-a', body: { series: { count: 2, lastObservedTime: now } } }, merge)
  t.equal((patched as any).series.count, 2)
  t.match(await failure(events.patchNamespacedEvent({ name: 'web.1', namespace: 'team-a', body: { note: 'changed' } }, merge)), { code: 422, status: { message: /note/ } })
  t.match(await failure(events.patchNamespacedEvent({ name: 'web.1', namespace: 'team-a', body: { series: { count: 1, lastObservedTime: now } } }, merge)), { code: 422 })
  t.equal((await failure(events.patchNamespacedEvent({ name: 'gone', namespace: 'team-a', body: { series: { count: 2, lastObservedTime: now } } }, merge))).code, 404)
  t.equal((await failure(events.patchNamespacedEvent({ name: 'web.1', namespace: 'team-a', body: { metadata: { resourceVersion: '1' }, series: { count: 3, lastObservedTime: now } } }, merge))).code, 409, 'a stale resourceVersion')

  const custom = kc.makeApiClient(CustomObjectsApi)
  const report = { apiVersion: 'wgpolicyk8s.io/v1alpha2', kind: 'PolicyReport', metadata: { name: 'pullpin' }, results: [{ policy: 'pullpin', result: 'warn' }] }
  t.equal((await failure(custom.getAPIResources({ group: 'wgpolicyk8s.io', version: 'v1alpha2' }))).code, 404, 'no CRD: no discovery')
  t.equal((await failure(custom.createNamespacedCustomObject({ group: 'wgpolicyk8s.io', version: 'v1alpha2', namespace: 'team-a', plural: 'policyreports', body: report }))).code, 404, 'no CRD: no resource')
  const withCrd = await startFakeApiServer({ namespaces: ['team-a'], crds: ['policyreports.wgpolicyk8s.io'] })
  t.teardown(() => withCrd.stop())
  const custom2 = withCrd.kubeConfig().makeApiClient(CustomObjectsApi)
  t.same((await custom2.getAPIResources({ group: 'wgpolicyk8s.io', version: 'v1alpha2' })).resources.map(r => r.name), ['policyreports'])
  const made = await custom2.createNamespacedCustomObject({ group: 'wgpolicyk8s.io', version: 'v1alpha2', namespace: 'team-a', plural: 'policyreports', body: report })
  t.match(await failure(custom2.replaceNamespacedCustomObject({ group: 'wgpolicyk8s.io', version: 'v1alpha2', namespace: 'team-a', plural: 'policyreports', name: 'pullpin', body: { ...report, metadata: { name: 'pullpin', resourceVersion: '1' } } })), { code: 409 })
  t.match(await failure(custom2.replaceNamespacedCustomObject({ group: 'wgpolicyk8s.io', version: 'v1alpha2', namespace: 'team-a', plural: 'policyreports', name: 'pullpin', body: { ...report, metadata: { name: 'pullpin', resourceVersion: made.metadata.resourceVersion }, results: [{ policy: 'pullpin', result: 'bad' }] } })), { code: 422 })
})

// Proves the in-test API server behaves like kube-apiserver where pullpin's cluster code depends on
// it, driven through the real @kubernetes/client-node 1.4 clients.
import t from 'tap'
import {
  AdmissionregistrationV1Api,
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  type KubernetesObject,
  PatchStrategy,
  V1MicroTime,
  Watch,
  makeInformer,
  setHeaderOptions,
  type V1Lease,
  type V1Secret,
} from '@kubernetes/client-node'
import { parseLabelSelector, startFakeApiServer, type FakeApiServer } from './support/fake-apiserver.js'
import { until } from './support/until.js'

interface Status { kind: string; code: number; reason: string; message: string; details?: Record<string, unknown> }

/** the Status a client-node call failed with (ApiException.body is the raw response text) */
async function failure(p: Promise<unknown>): Promise<{ code: number; status: Status | undefined }> {
  try {
    await p
  } catch (err) {
    if (!(err instanceof ApiException)) throw err
    const body = err.body as unknown
    return { code: err.code, status: typeof body === 'string' && body !== '' ? (JSON.parse(body) as Status) : undefined }
  }
  throw new Error('expected the call to fail')
}


async function withServer(t: { teardown(fn: () => unknown): void }, opts?: Parameters<typeof startFakeApiServer>[0]): Promise<FakeApiServer> {
  const s = await startFakeApiServer(opts)
  t.teardown(() => s.stop())
  return s
}

const secret = (name: string, labels?: Record<string, string>, data: Record<string, string> = { k: Buffer.from('v').toString('base64') }): V1Secret => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name, ...(labels ? { labels } : {}) },
  data,
})

t.test('CRUD through CoreV1Api: create, get, list, 409s, patch, delete', async (t) => {
  const s = await withServer(t)
  const core = s.kubeConfig().makeApiClient(CoreV1Api)

  const created = await core.createNamespacedSecret({ namespace: 'default', body: { ...secret('a'), stringData: { plain: 'text' } } })
  t.equal(created.metadata?.namespace, 'default')
  t.match(created.metadata?.uid, /^[0-9a-f-]{36}$/)
  t.match(created.metadata?.resourceVersion, /^\d+$/)
  t.ok(created.metadata?.creationTimestamp instanceof Date, 'creationTimestamp deserialises as a Date')
  t.equal(created.metadata?.generation, 1)
  t.equal(created.type, 'Opaque', 'type defaulted')
  t.same(created.data, { k: 'dg==', plain: Buffer.from('text').toString('base64') }, 'stringData folded into data')
  t.equal(created.stringData, undefined)
  t.equal(s.requests.at(-1)?.method, 'POST')
  t.equal(s.requests.at(-1)?.path, '/api/v1/namespaces/default/secrets')

  const got = await core.readNamespacedSecret({ name: 'a', namespace: 'default' })
  t.equal(got.metadata?.resourceVersion, created.metadata?.resourceVersion)
  t.equal(got.kind, 'Secret')
  t.equal(got.apiVersion, 'v1')

  await core.createNamespacedSecret({ namespace: 'default', body: secret('b', { app: 'x' }) })
  await core.createNamespace({ body: { metadata: { name: 'other' } } })
  await core.createNamespacedSecret({ namespace: 'other', body: secret('c', { app: 'y' }) })
  const list = await core.listNamespacedSecret({ namespace: 'default' })
  t.equal(list.kind, 'SecretList')
  t.equal(list.apiVersion, 'v1')
  t.same(list.items.map((i) => i.metadata?.name), ['a', 'b'])
  t.equal(list.items[0]?.kind, undefined, 'as on the real server, list items carry no kind')
  t.equal(list.metadata?.resourceVersion, s.resourceVersion(), 'list carries the current resourceVersion')
  const all = await core.listSecretForAllNamespaces()
  t.same(all.items.map((i) => `${i.metadata?.namespace}/${i.metadata?.name}`), ['default/a', 'default/b', 'other/c'])
  t.equal(s.requests.at(-1)?.path, '/api/v1/secrets')

  // 409 AlreadyExists
  const dup = await failure(core.createNamespacedSecret({ namespace: 'default', body: secret('a') }))
  t.equal(dup.code, 409)
  t.match(dup.status, { kind: 'Status', code: 409, reason: 'AlreadyExists', message: 'secrets "a" already exists', details: { name: 'a', kind: 'secrets' } })

  // update with the current resourceVersion succeeds and bumps it; the stale one is a 409 Conflict
  const updated = await core.replaceNamespacedSecret({ name: 'a', namespace: 'default', body: { ...got, data: { k: Buffer.from('v2').toString('base64') } } })
  t.not(updated.metadata?.resourceVersion, got.metadata?.resourceVersion)
  t.equal(updated.metadata?.generation, 2)
  t.equal(updated.metadata?.uid, created.metadata?.uid)
  const stale = await failure(core.replaceNamespacedSecret({ name: 'a', namespace: 'default', body: { ...got, data: {} } }))
  t.equal(stale.code, 409)
  t.match(stale.status, { reason: 'Conflict', message: /Operation cannot be fulfilled on secrets "a": the object has been modified/ })
  t.equal((await failure(core.replaceNamespacedSecret({ name: 'zz', namespace: 'default', body: secret('zz') }))).code, 404)

  // a no-op update writes nothing
  const rvBefore = s.resourceVersion()
  const same = await core.replaceNamespacedSecret({ name: 'a', namespace: 'default', body: updated })
  t.equal(same.metadata?.resourceVersion, updated.metadata?.resourceVersion)
  t.equal(s.resourceVersion(), rvBefore)

  // client-node 1.4 picks the first JSON-like media type of the operation: json-patch
  const jp = await core.patchNamespacedSecret({ name: 'a', namespace: 'default', body: [{ op: 'add', path: '/metadata/labels', value: { via: 'json-patch' } }] })
  t.same(jp.metadata?.labels, { via: 'json-patch' })
  t.equal(s.requests.at(-1)?.contentType, 'application/json-patch+json')

  // merge patch needs the Content-Type set through a middleware option
  const mp = await core.patchNamespacedSecret(
    { name: 'a', namespace: 'default', body: { metadata: { labels: { via: null, merged: 'yes' } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  )
  t.same(mp.metadata?.labels, { merged: 'yes' })
  t.equal(s.requests.at(-1)?.contentType, PatchStrategy.MergePatch)
  // a resourceVersion inside a patch is a precondition
  const stalePatch = await failure(core.patchNamespacedSecret(
    { name: 'a', namespace: 'default', body: { metadata: { resourceVersion: got.metadata?.resourceVersion, labels: { x: 'y' } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  ))
  t.equal(stalePatch.code, 409)
  t.equal(stalePatch.status?.reason, 'Conflict')
  // a failing json-patch test op is 422
  const testOp = await failure(core.patchNamespacedSecret({ name: 'a', namespace: 'default', body: [{ op: 'test', path: '/type', value: 'nope' }] }))
  t.equal(testOp.code, 422)

  const del = await core.deleteNamespacedSecret({ name: 'a', namespace: 'default' })
  t.match(del, { status: 'Success', details: { name: 'a', kind: 'secrets', uid: created.metadata?.uid } })
  t.equal(s.get({ resource: 'secrets', namespace: 'default', name: 'a' }), undefined)
  const gone = await failure(core.readNamespacedSecret({ name: 'a', namespace: 'default' }))
  t.equal(gone.code, 404)
  t.match(gone.status, { reason: 'NotFound', message: 'secrets "a" not found', details: { name: 'a', kind: 'secrets' } })
  t.equal((await failure(core.deleteNamespacedSecret({ name: 'a', namespace: 'default' }))).code, 404)
})

t.test('create rules: generateName, dryRun, missing namespace, validation, resourceVersion on create', async (t) => {
  const s = await withServer(t)
  const core = s.kubeConfig().makeApiClient(CoreV1Api)

  const gen = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { generateName: 'cm-' }, data: { a: 'b' } } })
  t.match(gen.metadata?.name, /^cm-[bcdfghjklmnpqrstvwxz2456789]{5}$/)

  const rv = s.resourceVersion()
  const dry = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'dry' } }, dryRun: 'All' })
  t.equal(dry.metadata?.name, 'dry')
  t.equal(s.get({ resource: 'configmaps', namespace: 'default', name: 'dry' }), undefined, 'dry run does not persist')
  t.equal(s.resourceVersion(), rv, 'dry run does not bump the resourceVersion')
  t.equal((await failure(core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'x' } }, dryRun: 'Some' }))).code, 400)

  const noNs = await failure(core.createNamespacedServiceAccount({ namespace: 'nope', body: { metadata: { name: 'sa' } } }))
  t.equal(noNs.code, 404)
  t.equal(noNs.status?.message, 'namespaces "nope" not found')

  const bad = await failure(core.createNamespacedSecret({ namespace: 'default', body: secret('Bad_Name') }))
  t.equal(bad.code, 422)
  t.match(bad.status, { reason: 'Invalid', details: { kind: 'Secret', causes: [{ field: 'metadata.name' }] } })
  t.equal((await failure(core.createNamespacedSecret({ namespace: 'default', body: secret('b64', undefined, { k: 'not base64!' }) }))).code, 400)
  t.equal((await failure(core.createNamespacedSecret({ namespace: 'default', body: { metadata: {} } }))).code, 422)

  const fromGet = await core.readNamespacedConfigMap({ name: gen.metadata?.name as string, namespace: 'default' })
  const copy = await failure(core.createNamespacedConfigMap({ namespace: 'default', body: { ...fromGet, metadata: { ...fromGet.metadata, name: 'copy' } } }))
  t.equal(copy.code, 500, 'a create carrying a resourceVersion is refused like the storage layer does')

  const wrongNs = await failure(core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'w', namespace: 'kube-system' } } }))
  t.equal(wrongNs.code, 400)

  // namespaces get the kubernetes.io/metadata.name label and phase Active; deleting one empties it
  const ns = await core.createNamespace({ body: { metadata: { name: 'doomed' } } })
  t.equal(ns.metadata?.labels?.['kubernetes.io/metadata.name'], 'doomed')
  t.equal(ns.status?.phase, 'Active')
  await core.createNamespacedSecret({ namespace: 'doomed', body: secret('in-doomed') })
  await core.deleteNamespace({ name: 'doomed' })
  t.same(s.list('secrets', 'doomed'), [])
  t.equal(s.get({ resource: 'namespaces', name: 'doomed' }), undefined)
})

t.test('label and field selectors, pagination, exact lists', async (t) => {
  const s = await withServer(t)
  const core = s.kubeConfig().makeApiClient(CoreV1Api)
  await core.createNamespacedSecret({ namespace: 'default', body: secret('s1', { app: 'web', tier: 'front' }) })
  await core.createNamespacedSecret({ namespace: 'default', body: secret('s2', { app: 'db', tier: 'back' }) })
  await core.createNamespacedSecret({ namespace: 'default', body: secret('s3', { app: 'web' }) })
  await core.createNamespacedSecret({ namespace: 'default', body: { ...secret('s4'), type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': Buffer.from('{}').toString('base64') } } })
  const names = async (labelSelector?: string, fieldSelector?: string): Promise<string[]> =>
    (await core.listNamespacedSecret({ namespace: 'default', ...(labelSelector !== undefined ? { labelSelector } : {}), ...(fieldSelector !== undefined ? { fieldSelector } : {}) })).items.map((i) => i.metadata?.name ?? '')
  t.same(await names('app=web'), ['s1', 's3'])
  t.same(await names('app==web,tier=front'), ['s1'])
  t.same(await names('app!=web'), ['s2', 's4'])
  t.same(await names('app in (db, web),tier'), ['s1', 's2'])
  t.same(await names('app notin (web)'), ['s2', 's4'])
  t.same(await names('!tier'), ['s3', 's4'])
  t.same(await names('tier'), ['s1', 's2'])
  t.same(await names(undefined, 'metadata.name=s2'), ['s2'])
  t.same(await names(undefined, 'metadata.name!=s2,metadata.namespace=default'), ['s1', 's3', 's4'])
  t.same(await names(undefined, 'type=kubernetes.io/dockerconfigjson'), ['s4'])
  t.equal((await failure(names('app in web'))).code, 400)
  t.equal((await failure(names(undefined, 'data.k=x'))).code, 400)
  t.same(parseLabelSelector('a=,b<3'), [{ key: 'a', op: 'in', values: [''] }, { key: 'b', op: 'lt', values: ['3'] }])

  const p1 = await core.listNamespacedSecret({ namespace: 'default', limit: 3 })
  t.same(p1.items.map((i) => i.metadata?.name), ['s1', 's2', 's3'])
  t.equal(p1.metadata?.remainingItemCount, 1)
  const rvAtFirstPage = p1.metadata?.resourceVersion
  await core.deleteNamespacedSecret({ name: 's4', namespace: 'default' })
  const p2 = await core.listNamespacedSecret({ namespace: 'default', limit: 3, _continue: p1.metadata?._continue as string })
  t.same(p2.items.map((i) => i.metadata?.name), ['s4'], 'continued list is consistent with the first page')
  t.equal(p2.metadata?._continue, undefined)
  t.equal(p2.metadata?.resourceVersion, rvAtFirstPage)

  const exact = await core.listNamespacedSecret({ namespace: 'default', resourceVersion: rvAtFirstPage as string, resourceVersionMatch: 'Exact' })
  t.same(exact.items.map((i) => i.metadata?.name), ['s1', 's2', 's3', 's4'], 'exact list reconstructs history')
  s.compact()
  const expired = await failure(core.listNamespacedSecret({ namespace: 'default', resourceVersion: rvAtFirstPage as string, resourceVersionMatch: 'Exact' }))
  t.equal(expired.code, 410)
  t.equal(expired.status?.reason, 'Expired')
  t.equal((await failure(core.listNamespacedSecret({ namespace: 'default', limit: 3, _continue: p1.metadata?._continue as string }))).code, 410)
  const notOlder = await core.listNamespacedSecret({ namespace: 'default', resourceVersion: rvAtFirstPage as string })
  t.same(notOlder.items.map((i) => i.metadata?.name), ['s1', 's2', 's3'], 'NotOlderThan is served from the latest state')
  t.equal((await failure(core.listNamespacedSecret({ namespace: 'default', resourceVersion: '999999' }))).code, 504)
})

type Ev = { type: string; name: string; rv: string }

function collect(): { events: Ev[]; cb: (type: string, obj: any) => void } {
  const events: Ev[] = []
  return { events, cb: (type, obj) => events.push({ type, name: obj?.metadata?.name ?? obj?.code, rv: obj?.metadata?.resourceVersion }) }
}

t.test('Watch: events after a resourceVersion, initial ADDED, bookmarks, timeout, 410, selectors', async (t) => {
  const s = await withServer(t, { bookmarkIntervalMs: 50 })
  const kc = s.kubeConfig()
  const core = kc.makeApiClient(CoreV1Api)
  const watch = new Watch(kc)
  await core.createNamespacedSecret({ namespace: 'default', body: secret('pre') })
  const list = await core.listNamespacedSecret({ namespace: 'default' })

  const a = collect()
  let doneA: unknown = 'not called'
  const ctrlA = await watch.watch('/api/v1/namespaces/default/secrets', { resourceVersion: list.metadata?.resourceVersion }, a.cb, (err) => { doneA = err })
  await s.waitForWatches('secrets')
  const created = await core.createNamespacedSecret({ namespace: 'default', body: secret('w') })
  await core.patchNamespacedSecret({ name: 'w', namespace: 'default', body: [{ op: 'add', path: '/metadata/labels', value: { a: 'b' } }] })
  await core.deleteNamespacedSecret({ name: 'w', namespace: 'default' })
  await until('three events', () => a.events.length === 3)
  t.same(a.events.map((e) => `${e.type} ${e.name}`), ['ADDED w', 'MODIFIED w', 'DELETED w'])
  t.equal(a.events[0]?.rv, created.metadata?.resourceVersion)
  t.equal(a.events[2]?.rv, s.resourceVersion(), 'DELETED carries the deletion resourceVersion')
  ctrlA.abort()
  await until('watch A done', () => doneA !== 'not called')

  // resourceVersion unset: synthetic ADDED for what exists, then live events
  const b = collect()
  const ctrlB = await watch.watch('/api/v1/namespaces/default/secrets', {}, b.cb, () => {})
  await until('initial ADDED', () => b.events.length === 1)
  t.same(b.events.map((e) => `${e.type} ${e.name}`), ['ADDED pre'])
  ctrlB.abort()

  // replay from an old resourceVersion, bookmarks, timeoutSeconds
  const c = collect()
  let doneC: unknown = 'not called'
  const started = Date.now()
  await watch.watch('/api/v1/namespaces/default/secrets', { resourceVersion: list.metadata?.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: 1 }, c.cb, (err) => { doneC = err })
  await until('timeout ends the watch', () => doneC !== 'not called', 3000)
  t.equal(doneC, null, 'a server-side end is a clean done(null)')
  t.ok(Date.now() - started >= 900, 'stream stayed open for timeoutSeconds')
  t.same(c.events.slice(0, 3).map((e) => `${e.type} ${e.name}`), ['ADDED w', 'MODIFIED w', 'DELETED w'], 'history replayed')
  t.ok(c.events.slice(3).every((e) => e.type === 'BOOKMARK' && e.rv === s.resourceVersion()) && c.events.length > 4, 'bookmarks with the current resourceVersion')

  // a watch from before the compaction gets an in-band 410 Expired and the stream ends
  s.compact()
  const d = collect()
  const objs: any[] = []
  let doneD: unknown = 'not called'
  await watch.watch('/api/v1/namespaces/default/secrets', { resourceVersion: list.metadata?.resourceVersion }, (type, obj) => { d.cb(type, obj); objs.push(obj) }, (err) => { doneD = err })
  await until('watch D done', () => doneD !== 'not called')
  t.same(d.events.map((e) => e.type), ['ERROR'])
  t.match(objs[0], { kind: 'Status', code: 410, reason: 'Expired', message: /too old resource version/ })
  t.equal(s.watchCount(), 0, 'the expired watch was closed')

  // label-selector transitions: entering is ADDED, leaving is DELETED (this watch starts exactly at the
  // compaction point, which is still valid)
  const e = collect()
  const ctrlE = await watch.watch('/api/v1/namespaces/default/secrets', { resourceVersion: s.resourceVersion(), labelSelector: 'watched=yes' }, e.cb, () => {})
  await s.waitForWatches('secrets')
  const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch)
  await core.patchNamespacedSecret({ name: 'pre', namespace: 'default', body: { metadata: { labels: { watched: 'yes' } } } }, merge)
  await core.patchNamespacedSecret({ name: 'pre', namespace: 'default', body: { data: { k2: 'dg==' } } }, merge)
  await core.patchNamespacedSecret({ name: 'pre', namespace: 'default', body: { metadata: { labels: { watched: 'no' } } } }, merge)
  await core.createNamespacedSecret({ namespace: 'default', body: secret('unwatched') })
  await until('three filtered events', () => e.events.length === 3)
  await new Promise((r) => setTimeout(r, 50))
  t.same(e.events.map((x) => `${x.type} ${x.name}`), ['ADDED pre', 'MODIFIED pre', 'DELETED pre'])
  ctrlE.abort()

  // a server-side 4xx/5xx on the watch request reaches done() with statusCode
  s.failNext('GET', '/api/v1/namespaces/default/secrets', 503)
  const failed = await new Promise<any>((resolve) => { void watch.watch('/api/v1/namespaces/default/secrets', {}, () => {}, resolve) })
  t.equal(failed?.statusCode, 503)
})

t.test('makeInformer stays in sync through changes, compaction (410 → relist) and pause/resume', async (t) => {
  const s = await withServer(t)
  const kc = s.kubeConfig()
  const core = kc.makeApiClient(CoreV1Api)
  await core.createNamespacedSecret({ namespace: 'default', body: secret('one') })
  const informer = makeInformer(kc, '/api/v1/namespaces/default/secrets', () => core.listNamespacedSecret({ namespace: 'default' }))
  const seen: string[] = []
  const errors: unknown[] = []
  informer.on('add', (o) => seen.push(`add ${o.metadata?.name}`))
  informer.on('update', (o) => seen.push(`update ${o.metadata?.name}`))
  informer.on('delete', (o) => seen.push(`delete ${o.metadata?.name}`))
  // ListWatch does not restart itself after an error other than 410: its owner must call start()
  // again. Every failed attempt reports another error, so one pending timer is the whole retry loop.
  // stop() itself reports an AbortError, hence the `active` guard.
  let active = true
  let retry: NodeJS.Timeout | undefined
  informer.on('error', (err) => {
    errors.push(err)
    if (!active || retry) return
    retry = setTimeout(() => {
      retry = undefined
      if (active) void informer.start()
    }, 20)
  })
  t.teardown(async () => {
    active = false
    clearTimeout(retry)
    await informer.stop()
  })
  const names = (): string[] => informer.list('default').map((o) => o.metadata?.name ?? '').sort()

  await informer.start()
  t.same(names(), ['one'])
  await s.waitForWatches('secrets')

  await core.createNamespacedSecret({ namespace: 'default', body: secret('two') })
  await core.patchNamespacedSecret({ name: 'one', namespace: 'default', body: [{ op: 'add', path: '/metadata/labels', value: { v: '2' } }] })
  await core.deleteNamespacedSecret({ name: 'two', namespace: 'default' })
  await until('informer caught up', () => seen.length === 4)
  t.same(seen, ['add one', 'add two', 'update one', 'delete two'])
  t.same(names(), ['one'])
  t.equal(informer.get('one', 'default')?.metadata?.labels?.v, '2')

  // The API server goes away; changes happen that the informer cannot see; history is compacted.
  seen.length = 0
  const listsBefore = s.requests.filter((r) => r.method === 'GET' && !r.query.includes('watch')).length
  await s.pause()
  // ... long enough for several failed reconnects (ECONNREFUSED) while it is down
  await until('informer retried during the outage', () => errors.length >= 3)
  s.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'three', namespace: 'default' }, data: {} })
  const one = s.get({ resource: 'secrets', namespace: 'default', name: 'one' })
  s.seed({ ...one, metadata: { ...one.metadata, labels: { v: '3' } } })
  s.compact()
  await s.resume()
  // It reconnects with its old resourceVersion, gets 410 Expired, relists and resumes watching.
  await until('informer relisted', () => names().join() === 'one,three' && informer.get('one', 'default')?.metadata?.labels?.v === '3', 8000)
  t.ok(s.requests.filter((r) => r.method === 'GET' && !r.query.includes('watch')).length > listsBefore, 'a relist happened')
  t.same(seen.sort(), ['add three', 'update one'])
  await s.waitForWatches('secrets')
  t.match(s.requests.at(-1), { method: 'GET', query: `watch=true&resourceVersion=${s.resourceVersion()}` }, 'watching from the relisted resourceVersion')

  // Outage without compaction: the watch resumes from its resourceVersion, no relist.
  seen.length = 0
  const lists = s.requests.filter((r) => r.method === 'GET' && !r.query.includes('watch')).length
  const errorsBefore = errors.length
  await s.pause()
  await until('informer retried during the second outage', () => errors.length >= errorsBefore + 3)
  s.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'four', namespace: 'default' }, data: {} })
  await s.resume()
  await until('informer saw the change made during the outage', () => names().includes('four'), 8000)
  t.same(seen, ['add four'])
  t.equal(s.requests.filter((r) => r.method === 'GET' && !r.query.includes('watch')).length, lists, 'resumed by watch alone')
  await s.waitForWatches('secrets')
  await core.deleteNamespacedSecret({ name: 'three', namespace: 'default' })
  await until('live again', () => !names().includes('three'))
  t.same(names(), ['four', 'one'])
})

t.test('Lease update conflict between two clients; MicroTime format', async (t) => {
  const s = await withServer(t)
  const a = s.kubeConfig().makeApiClient(CoordinationV1Api)
  // the second client loads the kubeconfig file body, as a separate process would
  const kc2 = new KubeConfig()
  kc2.loadFromString(s.kubeconfigYaml())
  const b = kc2.makeApiClient(CoordinationV1Api)

  const lease: V1Lease = { metadata: { name: 'pullpin-leader' }, spec: { holderIdentity: 'a', leaseDurationSeconds: 15, renewTime: new V1MicroTime() } }
  await a.createNamespacedLease({ namespace: 'kube-system', body: lease })
  t.equal(s.requests.at(-1)?.path, '/apis/coordination.k8s.io/v1/namespaces/kube-system/leases')
  const seenByA = await a.readNamespacedLease({ name: 'pullpin-leader', namespace: 'kube-system' })
  const seenByB = await b.readNamespacedLease({ name: 'pullpin-leader', namespace: 'kube-system' })
  t.equal(typeof seenByA.spec?.renewTime, 'string', 'client-node 1.4 leaves MicroTime fields as strings on read')

  const renewed = await a.replaceNamespacedLease({ name: 'pullpin-leader', namespace: 'kube-system', body: { ...seenByA, spec: { ...seenByA.spec, renewTime: new V1MicroTime() } } })
  t.not(renewed.metadata?.resourceVersion, seenByA.metadata?.resourceVersion)
  const takeover = await failure(b.replaceNamespacedLease({ name: 'pullpin-leader', namespace: 'kube-system', body: { ...seenByB, spec: { ...seenByB.spec, holderIdentity: 'b' } } }))
  t.equal(takeover.code, 409)
  t.match(takeover.status, { reason: 'Conflict', details: { name: 'pullpin-leader', group: 'coordination.k8s.io', kind: 'leases' }, message: /leases\.coordination\.k8s\.io "pullpin-leader"/ })
  t.equal(s.get({ group: 'coordination.k8s.io', resource: 'leases', namespace: 'kube-system', name: 'pullpin-leader' })?.spec.holderIdentity, 'a')

  // A plain Date serialises with millisecond precision, which the real server rejects for MicroTime.
  const msDate = await failure(a.replaceNamespacedLease({ name: 'pullpin-leader', namespace: 'kube-system', body: { ...renewed, spec: { ...renewed.spec, renewTime: new Date() as V1MicroTime } } }))
  t.equal(msDate.code, 400)
  t.equal((await failure(a.createNamespacedLease({ namespace: 'kube-system', body: { metadata: { name: 'bad' }, spec: { leaseDurationSeconds: 0 } } }))).code, 422)
})

t.test('MutatingWebhookConfiguration: defaults, validation, json-patch of caBundle', async (t) => {
  const s = await withServer(t)
  const adm = s.kubeConfig().makeApiClient(AdmissionregistrationV1Api)
  const body = {
    metadata: { name: 'pullpin' },
    webhooks: [{
      name: 'pullpin.example.com',
      admissionReviewVersions: ['v1'],
      sideEffects: 'None',
      clientConfig: { service: { name: 'pullpin', namespace: 'pullpin', path: '/mutate' } },
      rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] }],
    }],
  }
  const created = await adm.createMutatingWebhookConfiguration({ body })
  t.equal(s.requests.at(-1)?.path, '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations')
  t.match(created.webhooks?.[0], { failurePolicy: 'Fail', matchPolicy: 'Equivalent', timeoutSeconds: 10, reinvocationPolicy: 'Never', clientConfig: { service: { port: 443 } }, rules: [{ scope: '*' }] })
  t.equal(created.metadata?.namespace, undefined)

  const ca = Buffer.from('-----BEGIN CERTIFICATE-----').toString('base64')
  const patched = await adm.patchMutatingWebhookConfiguration({ name: 'pullpin', body: [{ op: 'add', path: '/webhooks/0/clientConfig/caBundle', value: ca }] })
  t.equal(patched.webhooks?.[0]?.clientConfig.caBundle, ca)
  t.equal(patched.metadata?.generation, 2)

  const bad = await failure(adm.createMutatingWebhookConfiguration({ body: { metadata: { name: 'bad' }, webhooks: [{ name: 'short', clientConfig: {} } as any] } }))
  t.equal(bad.code, 422)
  t.match(bad.status, { reason: 'Invalid', details: { kind: 'MutatingWebhookConfiguration', group: 'admissionregistration.k8s.io' } })
  const fields = (bad.status?.details?.causes as Array<{ field: string }>).map((c) => c.field)
  t.same(fields.sort(), ['webhooks[0].admissionReviewVersions', 'webhooks[0].clientConfig', 'webhooks[0].name', 'webhooks[0].sideEffects'])

  const deleted = await adm.deleteMutatingWebhookConfiguration({ name: 'pullpin' })
  t.match(deleted, { status: 'Success', details: { name: 'pullpin', group: 'admissionregistration.k8s.io', kind: 'mutatingwebhookconfigurations' } })
})

t.test('generic KubernetesObjectApi (discovery), apply and strategic patches, auth, failNext', async (t) => {
  const s = await withServer(t)
  const kc = s.kubeConfig()
  const objects = KubernetesObjectApi.makeApiClient(kc)
  const created = await objects.create<KubernetesObject>({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'pullpin', namespace: 'default' } })
  t.equal(created.metadata?.uid, s.get({ resource: 'serviceaccounts', namespace: 'default', name: 'pullpin' })?.metadata.uid)
  t.ok(s.requests.some((r) => r.path === '/api/v1'), 'discovery used')
  const lease = await objects.create({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'l', namespace: 'default' } })
  t.equal(lease.kind, 'Lease')

  // server-side apply (approximated): creates, then merges
  const applied = await objects.patch(
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'applied', namespace: 'default' }, data: { a: '1' } } as any,
    undefined, undefined, 'pullpin', true, PatchStrategy.ServerSideApply,
  )
  t.equal(applied.metadata?.name, 'applied')
  t.equal(s.requests.at(-1)?.contentType, 'application/apply-patch+yaml')
  await objects.patch({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'applied', namespace: 'default' }, data: { b: '2' } } as any, undefined, undefined, 'pullpin', true, PatchStrategy.ServerSideApply)
  t.same(s.get({ resource: 'configmaps', namespace: 'default', name: 'applied' })?.data, { a: '1', b: '2' })
  const noManager = await failure(objects.patch({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'applied', namespace: 'default' } } as any, undefined, undefined, undefined, undefined, PatchStrategy.ServerSideApply))
  t.equal(noManager.code, 422)

  // strategic merge patch behaves as a merge patch with lists replaced
  const sm = await objects.patch({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'pullpin', namespace: 'default' }, imagePullSecrets: [{ name: 'x' }] } as any, undefined, undefined, undefined, undefined, PatchStrategy.StrategicMergePatch)
  t.same((sm as any).imagePullSecrets, [{ name: 'x' }])

  // the bearer token is required
  const other = new KubeConfig()
  other.loadFromString(s.kubeconfigYaml().replace(/token: .*/, 'token: wrong'))
  t.equal((await failure(other.makeApiClient(CoreV1Api).listNamespace())).code, 401)

  // injected failures hit only the matching requests, then stop
  const core = kc.makeApiClient(CoreV1Api)
  s.failNext('GET', '/api/v1/namespaces/default/configmaps', 500, 2)
  const f1 = await failure(core.listNamespacedConfigMap({ namespace: 'default' }))
  t.match(f1, { code: 500, status: { reason: 'InternalError' } })
  t.equal((await core.listNamespace()).items.length, 3, 'other paths unaffected')
  t.equal((await failure(core.readNamespacedConfigMap({ name: 'applied', namespace: 'default' }))).code, 500)
  t.equal((await core.readNamespacedConfigMap({ name: 'applied', namespace: 'default' })).metadata?.name, 'applied')

  const ver = await fetch(`${s.url}/version`, { headers: { authorization: 'Bearer fake-apiserver-token' } })
  t.equal(ver.status, 200)
  const unknown = await fetch(`${s.url}/apis/apps/v1/deployments`, { headers: { authorization: 'Bearer fake-apiserver-token' } })
  t.equal(unknown.status, 404)
})

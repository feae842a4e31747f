// Manifests and config blobs read from the real registry (RegistryClient.getManifest/getConfig),
// and the immutable cache over them: what pull-readiness checks and revision lookups read.
import t from 'tap'
import { Keyring } from '../src/registry/keyring.js'
import { RegistryClient, type RegistryEvent } from '../src/registry/client.js'
import { ImmutableCache, type ImmutableCacheEvent } from '../src/cache/immutable-cache.js'
import { buildImage, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST } from './support/oci-layout.js'
import { createTestCa, startRegistry } from './support/registry.js'
import { startRegistryProxy, type ProxyRequestInfo } from './support/registry-proxy.js'

const ca = await createTestCa()
const basic = await startRegistry({ ca })
t.teardown(() => basic.stop())
// Stands in for blob storage: it needs no credentials, as a signed storage URL needs none.
const storage = await startRegistry({ ca, auth: 'none' })
t.teardown(() => storage.stop())

const LABELED = {
  seed: 'documents-labeled',
  platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
  labels: { 'org.opencontainers.image.revision': 'c6cd88ef1f2a0e4cb5b8a7f8b1c0d2e3f4a5b6c7', ['__proto__']: 'kept as data' },
  annotations: { 'org.opencontainers.image.source': 'https://github.com/acme/web' }
}
const INDEX = {
  kind: 'index' as const,
  seed: 'documents-index',
  platforms: [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm', variant: 'v7' }],
  annotations: { 'org.opencontainers.image.revision': '0123456789abcdef0123456789abcdef01234567' }
}
const [labeledDigest, indexDigest] = await Promise.all([
  basic.push(LABELED, 'web', ['latest']),
  basic.push(INDEX, 'multi', ['latest']),
  storage.push(LABELED, 'web', ['latest'])
])
const configDigest = buildImage(LABELED).config.digest

const storageProxy = await startRegistryProxy({ upstream: storage })
t.teardown(() => storageProxy.stop())
const proxy = await startRegistryProxy({ upstream: basic })
t.teardown(() => proxy.stop())

function makeClient (): { client: RegistryClient, events: RegistryEvent[] } {
  const events: RegistryEvent[] = []
  const keyring = Keyring.fromDockerConfigs([{
    source: 'test',
    json: { auths: { [basic.host]: { username: basic.username, password: basic.password }, [proxy.host]: { username: basic.username, password: basic.password } } }
  }])
  const client = new RegistryClient({
    isAllowed: () => true,
    isPrivateAllowed: () => true,
    hostOptions: () => ({ caPem: ca.certPem, timeoutMs: 5000, retries: 1, maxConcurrency: 8, tokenRealmHosts: [] }),
    credentials: (image) => keyring.lookup(image),
    onEvent: (e) => events.push(e)
  })
  t.teardown(() => client.close())
  return { client, events }
}

const ref = (r: { host: string }, repository: string): { registry: string, repository: string } => ({ registry: r.host, repository })

t.test('an image manifest: annotations and config descriptor; its config: platform and labels', async (t) => {
  const { client, events } = makeClient()
  const m = await client.getManifest(ref(basic, 'web'), 'latest')
  t.equal(m.kind, 'image')
  t.equal(m.digest, labeledDigest)
  t.equal(m.mediaType, MEDIA_TYPE_OCI_MANIFEST)
  t.same({ ...m.annotations }, LABELED.annotations)
  t.equal(m.config?.digest, configDigest)
  t.same(m.manifests, [])

  const byDigest = await client.getManifest(ref(basic, 'web'), labeledDigest)
  t.equal(byDigest.digest, labeledDigest, 'by digest too')

  const c = await client.getConfig(ref(basic, 'web'), configDigest)
  t.equal(c.os, 'linux')
  t.equal(c.architecture, 'arm64')
  t.equal(c.variant, 'v8')
  t.equal(c.labels['org.opencontainers.image.revision'], LABELED.labels['org.opencontainers.image.revision'])
  t.ok(Object.hasOwn(c.labels, '__proto__'), 'a "__proto__" label is an own key, not a prototype')
  t.equal(Object.getPrototypeOf(c.labels), null)
  t.ok(events.some((e) => e.op === 'blob' && e.status === 200), 'blob GETs are their own op in events')
})

t.test('an index: its annotations and the platform of each entry', async (t) => {
  const { client } = makeClient()
  const m = await client.getManifest(ref(basic, 'multi'), 'latest')
  t.equal(m.kind, 'index')
  t.equal(m.digest, indexDigest)
  t.equal(m.mediaType, MEDIA_TYPE_OCI_INDEX)
  t.equal(m.annotations['org.opencontainers.image.revision'], INDEX.annotations['org.opencontainers.image.revision'])
  t.same(m.manifests.map((d) => d.platform), INDEX.platforms)
  t.ok(m.manifests.every((d) => d.mediaType === MEDIA_TYPE_OCI_MANIFEST && d.digest.startsWith('sha256:')))
  t.equal(m.config, undefined)
})

t.test('bytes that do not match the digest, and documents that are not manifests, are refused', async (t) => {
  const { client } = makeClient()
  proxy.fault = (req) => req.method === 'GET' && req.pathname.includes('/manifests/') ? { action: 'garbage', body: '{"schemaVersion":2}' } : undefined
  t.teardown(() => { proxy.fault = undefined })
  await t.rejects(client.getManifest(ref(proxy, 'web'), labeledDigest), { code: 'PULLPIN_DIGEST_MISMATCH' })
  await t.rejects(client.getManifest(ref(proxy, 'web'), 'latest'), { code: 'PULLPIN_DIGEST_MISMATCH' }, 'the registry\'s digest header is checked against the bytes')

  proxy.fault = (req) => req.pathname.includes('/blobs/') ? { action: 'garbage', body: '{"os":"linux"}' } : undefined
  await t.rejects(client.getConfig(ref(proxy, 'web'), configDigest), { code: 'PULLPIN_DIGEST_MISMATCH' })

  proxy.fault = undefined
  await t.rejects(client.getManifest(ref(basic, 'web'), 'no-such-tag'), { code: 'PULLPIN_REGISTRY_NOT_FOUND' })
  await t.rejects(client.getConfig(ref(basic, 'web'), `sha256:${'0'.repeat(64)}`), { code: 'PULLPIN_REGISTRY_NOT_FOUND' })
  await t.rejects(client.getConfig(ref(basic, 'web'), 'latest'), { code: 'PULLPIN_REFERENCE_INVALID' }, 'a blob is named by its digest')
})

t.test('a blob redirect to storage is followed without the registry\'s credentials', async (t) => {
  const { client } = makeClient()
  const seen: ProxyRequestInfo[] = []
  storageProxy.fault = (req) => { seen.push(req) }
  proxy.fault = (req) => req.pathname.includes('/blobs/')
    ? { action: 'status', status: 307, headers: { location: `${storageProxy.url.replace('127.0.0.1', 'localhost')}${req.pathname}?signature=x` } }
    : undefined
  t.teardown(() => { proxy.fault = undefined; storageProxy.fault = undefined })
  const c = await client.getConfig(ref(proxy, 'web'), configDigest)
  t.equal(c.architecture, 'arm64', 'the config came from storage')
  t.equal(seen.length, 1)
  t.equal(seen[0]?.query.get('signature'), 'x', 'the signed URL as given')
  t.equal(seen[0]?.headers.authorization, undefined, 'no Authorization header leaves for another host')

  proxy.fault = (req) => req.pathname.includes('/blobs/') ? { action: 'status', status: 302, headers: { location: `http://localhost:1${req.pathname}` } } : undefined
  await t.rejects(client.getConfig(ref(proxy, 'web'), configDigest), { code: 'PULLPIN_REGISTRY_BAD_RESPONSE', message: /non-https/ })
  proxy.fault = (req) => req.pathname.includes('/blobs/') ? { action: 'status', status: 307, headers: { location: req.path } } : undefined
  await t.rejects(client.getConfig(ref(proxy, 'web'), configDigest), { code: 'PULLPIN_REGISTRY_BAD_RESPONSE', message: /more than 3 redirects/ })
})

t.test('the immutable cache: one request per digest, shared by concurrent callers, failures not kept', async (t) => {
  const { client } = makeClient()
  const events: ImmutableCacheEvent[] = []
  const cache = new ImmutableCache({ registry: client, maxEntries: 10, onEvent: (e) => events.push(e) })
  const r = ref(proxy, 'web')
  proxy.resetCounts()
  const [a, b] = await Promise.all([cache.manifest(r, labeledDigest), cache.manifest(r, labeledDigest)])
  t.equal(a, b, 'one answer for both callers')
  t.equal(cache.peekManifest(r, labeledDigest), a, 'kept')
  await cache.manifest(r, labeledDigest)
  t.equal(proxy.count(`GET /v2/web/manifests/${labeledDigest}`), 1, 'one GET for three calls')
  t.equal(cache.peekConfig(r, configDigest), undefined)
  t.equal((await cache.config(r, configDigest)).architecture, 'arm64')
  t.equal(cache.peekConfig(r, configDigest)?.architecture, 'arm64')
  t.equal(proxy.count(`GET /v2/web/blobs/${configDigest}`), 1)
  t.equal(cache.peekManifest(ref(basic, 'web'), labeledDigest), undefined, 'kept per repository (registries serve blobs per repository)')

  let failures = 1
  proxy.fault = (req) => req.pathname.includes('/manifests/') && failures-- > 0 ? { action: 'status', status: 404 } : undefined
  t.teardown(() => { proxy.fault = undefined })
  const idx = ref(proxy, 'multi')
  await t.rejects(cache.manifest(idx, indexDigest), { code: 'PULLPIN_REGISTRY_NOT_FOUND' })
  t.equal((await cache.manifest(idx, indexDigest)).kind, 'index', 'the failure was not kept')
  t.same(events.map((e) => `${e.kind}:${e.result}`), ['manifest:miss', 'manifest:hit', 'config:miss', 'manifest:error', 'manifest:miss'])

  const controller = new AbortController()
  proxy.fault = (req) => req.pathname.includes('/blobs/') ? { action: 'delay', ms: 300 } : undefined
  const other = buildImage(INDEX.platforms[0] === undefined ? LABELED : { seed: `${INDEX.seed}/linux/amd64`, platform: INDEX.platforms[0] })
  const platformManifest = (await cache.manifest(idx, indexDigest)).manifests[0]
  t.equal(platformManifest?.digest, other.digest)
  const waiting = cache.config(idx, other.config.digest, controller.signal)
  controller.abort()
  await t.rejects(waiting, { name: 'AbortError' }, 'the caller stops waiting')
  t.equal((await cache.config(idx, other.config.digest)).architecture, 'amd64', 'the shared fetch went on')
  t.equal(proxy.count(`GET /v2/multi/blobs/${other.config.digest}`), 1)
})

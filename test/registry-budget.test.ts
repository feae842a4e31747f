// The registry budget (issue 15): a 429 pauses every request to that registry (Retry-After, or a
// growing backoff), a Retry-After too long to wait makes requests fail without being sent, and the
// registry's own quota headers feed a gauge. Requests are counted at the registry (the counting
// proxy of test/support/registry-proxy.ts in front of the real docker-registry).
import t from 'tap'
import { Keyring } from '../src/registry/keyring.js'
import { RegistryClient, type RegistryEvent } from '../src/registry/client.js'
import { parseRateLimit } from '../src/registry/transport.js'
import { createMetrics } from '../src/metrics.js'
import { startRegistry } from './support/registry.js'
import { startRegistryProxy } from './support/registry-proxy.js'
import { until } from './support/until.js'

const registry = await startRegistry()
t.teardown(() => registry.stop())
const proxy = await startRegistryProxy({ upstream: registry })
t.teardown(() => proxy.stop())
const digest = await registry.push({ seed: 'budget' }, 'app', ['latest', 'v1'])
await registry.push({ seed: 'budget-other' }, 'other', ['latest'])
t.afterEach(() => { proxy.fault = undefined })

function makeClient (onEvent?: (e: RegistryEvent) => void): RegistryClient {
  const keyring = Keyring.fromDockerConfigs([{ source: 'test', json: { auths: { [proxy.host]: { username: registry.username, password: registry.password ?? '' } } } }])
  const client = new RegistryClient({
    isAllowed: () => true,
    isPrivateAllowed: () => true,
    hostOptions: () => ({ caPem: registry.caPem, timeoutMs: 10_000, retries: 2, maxConcurrency: 8, tokenRealmHosts: [] }),
    credentials: (image) => keyring.lookup(image),
    ...(onEvent === undefined ? {} : { onEvent }),
  })
  t.teardown(() => client.close())
  return client
}

const app = { registry: proxy.host, repository: 'app' }
const other = { registry: proxy.host, repository: 'other' }

t.test('a 429 with Retry-After pauses every request to that registry, not only the one that got it', async (t) => {
  const events: RegistryEvent[] = []
  const client = makeClient((e) => events.push(e))
  await client.headManifest(app, 'v1') // authenticated before the fault
  proxy.resetCounts()
  let throttledAt: number | undefined
  const early: string[] = []
  proxy.fault = (req) => {
    if (req.key === 'HEAD /v2/app/manifests/latest' && req.seen === 1) {
      throttledAt = Date.now()
      return { action: 'status', status: 429, headers: { 'retry-after': '1' } }
    }
    // Timer rounding may fire a pause's end a millisecond early; anything sooner was not paused.
    if (throttledAt !== undefined && Date.now() < throttledAt + 990) early.push(req.key)
    return undefined
  }
  const first = client.headManifest(app, 'latest')
  // The pause starts when the client reads the 429 (its event is emitted just before).
  await until('the client got the 429', () => events.some((e) => e.status === 429))
  const second = await client.headManifest(other, 'latest')
  t.equal(second.digest, await registry.inspectDigest('other', 'latest'), 'the other repository answered after the pause')
  t.equal((await first).digest, digest, 'the throttled request retried after the pause')
  t.same(early, [], 'nothing reached the registry during the pause')
  t.equal(proxy.count('HEAD /v2/other/manifests/latest'), 1)
  t.equal(proxy.count('HEAD /v2/app/manifests/latest'), 2)
})

t.test('a Retry-After too long to wait: requests to that registry fail at once, without being sent', async (t) => {
  const client = makeClient()
  await client.headManifest(app, 'v1')
  proxy.resetCounts()
  proxy.fault = (req) => req.key === 'HEAD /v2/app/manifests/latest' ? { action: 'status', status: 429, headers: { 'retry-after': '120' } } : undefined
  await t.rejects(client.headManifest(app, 'latest'), { code: 'PULLPIN_REGISTRY_UNAVAILABLE', message: /HTTP 429 with Retry-After 120 s/ })
  await t.rejects(client.headManifest(other, 'latest'), { code: 'PULLPIN_REGISTRY_UNAVAILABLE', message: /rate limited \(HTTP 429\): no request sent for another 1[12]\d s/ })
  await t.rejects(client.listTags(other), { code: 'PULLPIN_REGISTRY_UNAVAILABLE', message: /rate limited/ })
  t.equal(proxy.count('HEAD /v2/app/manifests/latest'), 1, 'the 429 itself')
  t.equal(proxy.count('HEAD /v2/other/manifests/latest'), 0, 'not sent')
  t.equal(proxy.count('GET /v2/other/tags/list'), 0, 'not sent')

  // Another registry client (another replica) has its own view: it asks, and gets its own answer.
  proxy.fault = undefined
  t.equal((await makeClient().headManifest(other, 'latest')).digest, await registry.inspectDigest('other', 'latest'))
})

t.test('429s without Retry-After: retried after a backoff, and the registry answers in the end', async (t) => {
  const client = makeClient()
  await client.headManifest(app, 'v1')
  proxy.resetCounts()
  proxy.fault = (req) => req.key === 'HEAD /v2/app/manifests/latest' && req.seen <= 2 ? { action: 'status', status: 429 } : undefined
  t.equal((await client.headManifest(app, 'latest')).digest, digest)
  t.equal(proxy.count('HEAD /v2/app/manifests/latest'), 3)
})

t.test('the registry\'s quota headers feed pullpin_registry_ratelimit_remaining', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false })
  const client = makeClient((e) => metrics.registryEvent({ ...e, allowlistEntry: 'hub-like' }))
  proxy.fault = (req) => req.method === 'HEAD' ? { action: 'headers', headers: { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '97;w=21600' } } : undefined
  await client.headManifest(app, 'latest')
  let text = await metrics.registry.metrics()
  t.match(text, /pullpin_registry_ratelimit_remaining\{registry="hub-like"\} 97\n/)
  t.match(text, /pullpin_registry_ratelimit_limit\{registry="hub-like"\} 100\n/)
  proxy.fault = (req) => req.method === 'HEAD' ? { action: 'headers', headers: { 'x-ratelimit-limit': '5000', 'x-ratelimit-remaining': '4321' } } : undefined
  await client.headManifest(app, 'v1')
  text = await metrics.registry.metrics()
  t.match(text, /pullpin_registry_ratelimit_remaining\{registry="hub-like"\} 4321\n/, 'the x-ratelimit-* pair too')

  t.same(parseRateLimit({ 'ratelimit-remaining': '0;w=21600' }), { remaining: 0, windowSeconds: 21600 })
  t.same(parseRateLimit({ 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '76;w=21600' }), { remaining: 76, limit: 100, windowSeconds: 21600 })
  t.equal(parseRateLimit({}), undefined, 'no header, no value')
  t.equal(parseRateLimit({ 'ratelimit-remaining': 'lots' }), undefined, 'not a number')
})

// RegistryClient against the real registry (Debian docker-registry over TLS, htpasswd and token
// auth), with skopeo as the ground truth for digests and the paging / fault-injecting proxy for
// what a healthy registry does not do on its own.
import t from 'tap'
import { createServer as createNetServer, connect as netConnect, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { Keyring } from '../src/registry/keyring.js'
import { RegistryClient, MANIFEST_MEDIA_TYPES, type RegistryClientOptions, type RegistryEvent, type RegistryHostOptions } from '../src/registry/client.js'
import { parseRetryAfter } from '../src/registry/transport.js'
import { parseChallenges } from '../src/registry/challenge.js'
import { checkRealm, manifestUrl, parseLinkHeader, resolveEndpoint } from '../src/registry/endpoint.js'
import { buildImage, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST } from './support/oci-layout.js'
import { createTestCa, freePort, sha256, startRegistry } from './support/registry.js'
import { startRegistryProxy } from './support/registry-proxy.js'

const ca = await createTestCa()
const basic = await startRegistry({ ca })
t.teardown(() => basic.stop())
const token = await startRegistry({ ca, auth: 'token', tokenServer: { allowAnonymous: true } })
t.teardown(() => token.stop())
if (token.tokenServer === undefined) throw new Error('token server missing')
const ts = token.tokenServer

const SINGLE = { seed: 'client-single' }
const [singleDigest, multiDigest, teamDigest] = await Promise.all([
  basic.push(SINGLE, 'app', ['latest', 'v1']),
  basic.push({ kind: 'index', seed: 'client-multi' }, 'multi', ['latest']),
  token.push({ seed: 'client-token' }, 'team/app', ['latest'])
])
const extraTags = Array.from({ length: 25 }, (_, i) => `sha-${String(i).padStart(3, '0')}`)
await basic.tag('app', 'latest', extraTags)

const proxy = await startRegistryProxy({ upstream: basic })
t.teardown(() => proxy.stop())

function keyringFor (...configs: Array<{ host: string; username?: string; password?: string }>): Keyring {
  return Keyring.fromDockerConfigs(configs.map((c, i) => ({
    source: `test-${i}`,
    json: { auths: c.username === undefined ? {} : { [c.host]: { username: c.username, password: c.password ?? '' } } }
  })))
}

interface Harness {
  client: RegistryClient
  events: RegistryEvent[]
}

function makeClient (opts: {
  keyring?: Keyring
  host?: Partial<RegistryHostOptions>
  extra?: Partial<RegistryClientOptions>
} = {}): Harness {
  const events: RegistryEvent[] = []
  const keyring = opts.keyring ?? keyringFor(
    { host: basic.host, username: basic.username, password: basic.password },
    { host: proxy.host, username: basic.username, password: basic.password },
    { host: token.host, username: token.username, password: token.password }
  )
  const client = new RegistryClient({
    isAllowed: () => true,
    isPrivateAllowed: () => true,
    hostOptions: () => ({ caPem: ca.certPem, timeoutMs: 5000, retries: 2, maxConcurrency: 8, tokenRealmHosts: [], ...opts.host }),
    credentials: (image) => keyring.lookup(image),
    onEvent: (e) => events.push(e),
    ...opts.extra
  })
  t.teardown(() => client.close())
  return { client, events }
}

const reg = (r: { host: string }, repository: string): { registry: string; repository: string } => ({ registry: r.host, repository })

/** A TCP pass-through in front of a TLS server that counts connections (= TLS handshakes). */
async function countingForwarder (target: { host: string }): Promise<{ host: string; connections: () => number; stop: () => Promise<void> }> {
  const [, portText] = target.host.split(':')
  let connections = 0
  const sockets = new Set<Socket>()
  const server: Server = createNetServer((client) => {
    connections++
    const upstream = netConnect(Number(portText), '127.0.0.1')
    sockets.add(client).add(upstream)
    client.pipe(upstream).pipe(client)
    const close = (): void => { client.destroy(); upstream.destroy() }
    client.on('error', close).on('close', close)
    upstream.on('error', close).on('close', close)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => connections,
    stop: () => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()) })
  }
}

t.test('digests match skopeo: single-arch manifest and multi-arch index', async (t) => {
  const { client } = makeClient()
  const single = await client.headManifest(reg(basic, 'app'), 'latest')
  t.equal(single.digest, await basic.inspectDigest('app', 'latest'))
  t.equal(single.digest, singleDigest)
  t.equal(single.mediaType, MEDIA_TYPE_OCI_MANIFEST)
  t.equal(single.size, buildImage(SINGLE).manifest.length)

  const multi = await client.headManifest(reg(basic, 'multi'), 'latest')
  t.equal(multi.digest, await basic.inspectDigest('multi', 'latest'), 'the index digest, not a platform manifest')
  t.equal(multi.digest, multiDigest)
  t.equal(multi.mediaType, MEDIA_TYPE_OCI_INDEX)

  const byDigest = await client.headManifest(reg(basic, 'app'), singleDigest)
  t.equal(byDigest.digest, singleDigest, 'HEAD by digest')
  t.same(MANIFEST_MEDIA_TYPES.slice(0, 2), ['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json'])
})

t.test('404: missing tag, missing repository, missing tag list', async (t) => {
  const { client } = makeClient()
  await t.rejects(client.headManifest(reg(basic, 'app'), 'no-such-tag'), { code: 'PULLPIN_REGISTRY_NOT_FOUND', message: /app:no-such-tag not found on 127\.0\.0\.1/ })
  await t.rejects(client.headManifest(reg(basic, 'nope/nothing'), 'latest'), { code: 'PULLPIN_REGISTRY_NOT_FOUND' })
  await t.rejects(client.listTags(reg(basic, 'nope/nothing')), { code: 'PULLPIN_REGISTRY_NOT_FOUND' })
  await t.rejects(client.headManifest(reg(basic, 'app'), 'bad tag!'), { code: 'PULLPIN_REFERENCE_INVALID' }, 'invalid references never reach the network')
})

t.test('htpasswd Basic auth: challenge once, then credentials up front', async (t) => {
  proxy.resetCounts()
  const { client } = makeClient()
  const ref = reg(proxy, 'app')
  for (let i = 0; i < 5; i++) t.equal((await client.headManifest(ref, 'v1')).digest, singleDigest)
  t.equal(proxy.count('GET /v2/'), 1, 'one ping learns the Basic challenge')
  t.equal(proxy.count('HEAD /v2/app/manifests/v1'), 5, 'then 5 HEADs, each sent once with credentials')
  t.ok(proxy.log.slice(1).every((e) => e.status === 200))

  const anonymous = makeClient({ keyring: keyringFor() })
  proxy.resetCounts()
  await t.rejects(anonymous.client.headManifest(ref, 'v1'), { code: 'PULLPIN_REGISTRY_UNAUTHORIZED', message: /answered 401/ })
  await t.rejects(anonymous.client.headManifest(ref, 'v1'), { code: 'PULLPIN_REGISTRY_UNAUTHORIZED' })
  t.equal(proxy.count('HEAD /v2/app/manifests/v1'), 2, 'without credentials: one unauthenticated request each, no repeats')
  const wrong = makeClient({ keyring: keyringFor({ host: proxy.host, username: basic.username, password: 'wrong-password' }) })
  await t.rejects(wrong.client.headManifest(ref, 'v1'), { code: 'PULLPIN_REGISTRY_UNAUTHORIZED' })

  // Several credentials for one image: tried in order, the working one remembered.
  const two = makeClient({
    keyring: Keyring.fromDockerConfigs([
      { source: 'stale', json: { auths: { [proxy.host]: { username: basic.username, password: 'old-password' } } } },
      { source: 'current', json: { auths: { [proxy.host]: { username: basic.username, password: basic.password } } } }
    ])
  })
  t.equal((await two.client.headManifest(ref, 'v1')).digest, singleDigest)
  proxy.resetCounts()
  await two.client.headManifest(ref, 'v1')
  t.equal(proxy.count('HEAD /v2/app/manifests/v1'), 1, 'the credential that worked goes first next time')
})

t.test('token auth: one token for many HEADs, coalesced, anonymous, expiry', async (t) => {
  const ref = reg(token, 'team/app')
  ts.reset()
  const { client } = makeClient()
  for (let i = 0; i < 5; i++) t.equal((await client.headManifest(ref, 'latest')).digest, teamDigest)
  t.equal(ts.requests, 1, '5 HEADs, 1 token request')
  t.equal(ts.log[0]?.authenticated, true)
  t.same(ts.log[0]?.scopes, ['repository:team/app:pull'])
  t.equal(ts.log[0]?.service, ts.service)

  ts.reset()
  const concurrent = makeClient()
  const results = await Promise.all(Array.from({ length: 6 }, () => concurrent.client.headManifest(ref, 'latest')))
  t.ok(results.every((r) => r.digest === teamDigest))
  t.equal(ts.requests, 1, 'concurrent requests share one token fetch')

  ts.reset()
  const anon = makeClient({ keyring: keyringFor() })
  t.equal((await anon.client.headManifest(ref, 'latest')).digest, teamDigest)
  t.equal(ts.requests, 1)
  t.equal(ts.log[0]?.anonymous, true, 'no credentials: anonymous token')

  const wrong = makeClient({ keyring: keyringFor({ host: token.host, username: token.username, password: 'wrong-password' }) })
  await t.rejects(wrong.client.headManifest(ref, 'latest'), { code: 'PULLPIN_REGISTRY_UNAUTHORIZED', message: /token realm/ })

  // expires_in absent → 60 s; access_token only.
  let now = Date.now()
  const clock = (): number => now
  ts.reset()
  ts.hook = () => ({ action: 'body', body: { access_token: ts.mint([{ type: 'repository', name: 'team/app', actions: ['pull'] }]) } })
  t.teardown(() => { ts.hook = undefined })
  const timed = makeClient({ extra: { clock } })
  await timed.client.headManifest(ref, 'latest')
  now += 30_000
  await timed.client.headManifest(ref, 'latest')
  t.equal(ts.requests, 1, 'still cached after 30 s')
  now += 31_000
  await timed.client.headManifest(ref, 'latest')
  t.equal(ts.requests, 2, 'without expires_in the token is renewed before 60 s')

  ts.hook = undefined
  ts.reset()
  now = Date.now()
  const longer = makeClient({ extra: { clock } })
  await longer.client.headManifest(ref, 'latest')
  now += 120_000
  await longer.client.headManifest(ref, 'latest')
  t.equal(ts.requests, 1, 'expires_in 300: still cached after 120 s')
  now += 200_000
  await longer.client.headManifest(ref, 'latest')
  t.equal(ts.requests, 2, 'renewed before 300 s')
})

t.test('a cached token the registry refuses is replaced once; a fresh refused token is final', async (t) => {
  const ref = reg(token, 'team/app')
  const access = [{ type: 'repository', name: 'team/app', actions: ['pull'] }]
  t.teardown(() => { ts.hook = undefined })
  ts.reset()
  // An already expired token that claims 300 s: the registry refuses it, the cache keeps it.
  ts.hook = () => ({ action: 'body', body: { token: ts.mint(access, { expiresIn: -3600 }), expires_in: 300 } })
  const { client } = makeClient()
  await t.rejects(client.headManifest(ref, 'latest'), { code: 'PULLPIN_REGISTRY_UNAUTHORIZED', message: /answered 401/ })
  t.equal(ts.requests, 1, 'a freshly fetched token that is refused is not fetched again')
  ts.hook = undefined
  t.equal((await client.headManifest(ref, 'latest')).digest, teamDigest, 'the cached, refused token was dropped and replaced')
  t.equal(ts.requests, 2)
  await client.headManifest(ref, 'latest')
  t.equal(ts.requests, 2, 'and the new one is cached')
})

t.test('custom CA per registry; TLS failures are not retried; a CA change takes effect', async (t) => {
  let caPem: string | undefined
  const events: RegistryEvent[] = []
  const keyring = keyringFor({ host: basic.host, username: basic.username, password: basic.password })
  const client = new RegistryClient({
    isAllowed: () => true,
    isPrivateAllowed: () => true,
    hostOptions: () => ({ ...(caPem === undefined ? {} : { caPem }), timeoutMs: 5000, retries: 3, maxConcurrency: 4, tokenRealmHosts: [] }),
    credentials: (image) => keyring.lookup(image),
    onEvent: (e) => events.push(e)
  })
  t.teardown(() => client.close())
  await t.rejects(client.headManifest(reg(basic, 'app'), 'v1'), { code: 'PULLPIN_REGISTRY_UNAVAILABLE', message: /certificate/i })
  t.equal(events.length, 1, 'a certificate error is not retried')
  caPem = ca.certPem
  t.equal((await client.headManifest(reg(basic, 'app'), 'v1')).digest, singleDigest, 'new CA, new pool')
  caPem = (await createTestCa('another CA')).certPem
  await t.rejects(client.headManifest(reg(basic, 'app'), 'v1'), { code: 'PULLPIN_REGISTRY_UNAVAILABLE' }, 'a CA that did not sign the registry certificate fails again')
})

t.test('endpoints: Docker Hub, ports, realms', async (t) => {
  const hub = resolveEndpoint('docker.io')
  t.equal(hub.origin, 'https://registry-1.docker.io')
  t.equal(manifestUrl(hub, 'library/nginx', 'latest').href, 'https://registry-1.docker.io/v2/library/nginx/manifests/latest')
  t.equal(checkRealm(hub, 'https://auth.docker.io/token', []).host, 'auth.docker.io', 'auth.docker.io is built in for Docker Hub')
  t.throws(() => checkRealm(resolveEndpoint('ghcr.io'), 'https://auth.docker.io/token', []), { code: 'PULLPIN_REGISTRY_REALM_REFUSED' })
  t.equal(checkRealm(resolveEndpoint('ghcr.io'), 'https://ghcr.io/token?x=1', []).pathname, '/token')
  t.equal(checkRealm(resolveEndpoint('r.example:5000'), 'https://auth.example:8443/t', ['auth.example:8443']).port, '8443')
  t.throws(() => checkRealm(resolveEndpoint('r.example:5000'), 'https://auth.example:9443/t', ['auth.example:8443']), { code: 'PULLPIN_REGISTRY_REALM_REFUSED' })
  t.equal(resolveEndpoint('[::1]:5000').hostname, '::1')
  t.equal(resolveEndpoint('r.example:443').origin, 'https://r.example')
  for (const bad of ['', 'a/b', 'user@host', 'host:99999', 'http://host', 'host:', 'ho st']) {
    t.throws(() => resolveEndpoint(bad), { code: 'PULLPIN_REFERENCE_INVALID' }, JSON.stringify(bad))
  }
  t.throws(() => manifestUrl(hub, '../etc', 'latest'), { code: 'PULLPIN_REFERENCE_INVALID' })
  t.throws(() => manifestUrl(hub, 'library/nginx', '../../x'), { code: 'PULLPIN_REFERENCE_INVALID' })
})

t.test('tag paging follows Link rel="next" to the full list', async (t) => {
  proxy.resetCounts()
  const { client } = makeClient({ extra: { tagsPageSize: 10 } })
  const tags = await client.listTags(reg(proxy, 'app'))
  const all = await basic.listTags('app')
  t.same([...tags].sort(), [...all].sort())
  t.equal(tags.length, extraTags.length + 2)
  t.equal(proxy.count('GET /v2/app/tags/list'), Math.ceil(tags.length / 10), 'one request per page (the challenge was learnt by the ping)')

  const unpaged = makeClient()
  t.same((await unpaged.client.listTags(reg(basic, 'app'))).sort(), [...all].sort(), 'direct, one page')
})

t.test('a Link to another origin is refused', async (t) => {
  proxy.resetCounts()
  const other = await countingForwarder(basic)
  t.teardown(() => other.stop())
  proxy.fault = (req) => req.key === 'GET /v2/app/tags/list'
    ? { action: 'status', status: 200, headers: { link: `<https://${other.host}/v2/app/tags/list?n=10&last=a>; rel="next"` }, body: { name: 'app', tags: ['a'] } }
    : undefined
  t.teardown(() => { proxy.fault = undefined })
  const { client } = makeClient()
  await t.rejects(client.listTags(reg(proxy, 'app')), { code: 'PULLPIN_REGISTRY_BAD_RESPONSE', message: /another origin/ })
  t.equal(other.connections(), 0, 'nothing was sent to the other origin')
})

t.test('missing Docker-Content-Digest: GET fallback, digest verified', async (t) => {
  const manifest = buildImage(SINGLE).manifest
  const headWithoutDigest = { action: 'status' as const, status: 200, headers: { 'content-type': MEDIA_TYPE_OCI_MANIFEST, 'content-length': String(manifest.length) } }
  t.teardown(() => { proxy.fault = undefined })
  const ref = reg(proxy, 'app')
  const { client } = makeClient()

  proxy.resetCounts()
  proxy.fault = (req) => (req.method === 'HEAD' ? headWithoutDigest : undefined)
  const viaGet = await client.headManifest(ref, 'latest')
  t.equal(viaGet.digest, singleDigest, 'GET fallback: header checked against the bytes')
  t.equal(viaGet.mediaType, MEDIA_TYPE_OCI_MANIFEST)
  t.ok(proxy.count('GET /v2/app/manifests/latest') >= 1)

  proxy.fault = (req) => (req.method === 'HEAD'
    ? headWithoutDigest
    : { action: 'status', status: 200, headers: { 'content-type': MEDIA_TYPE_OCI_MANIFEST }, body: manifest.toString('utf8') })
  t.equal((await client.headManifest(ref, 'latest')).digest, sha256(manifest), 'no digest header anywhere: sha256 of the bytes')

  proxy.fault = (req) => (req.method === 'HEAD' ? headWithoutDigest : { action: 'wrong-digest' })
  await t.rejects(client.headManifest(ref, 'latest'), { code: 'PULLPIN_DIGEST_MISMATCH' })

  proxy.fault = (req) => (req.method === 'HEAD' ? headWithoutDigest : { action: 'garbage', body: '{"not":"the manifest"}' })
  await t.rejects(client.headManifest(ref, 'latest'), { code: 'PULLPIN_DIGEST_MISMATCH' }, 'bytes changed under a correct header')

  proxy.fault = (req) => (req.method === 'HEAD' ? { action: 'wrong-digest' } : undefined)
  await t.rejects(client.headManifest(ref, singleDigest), { code: 'PULLPIN_DIGEST_MISMATCH' }, 'HEAD by digest answering another digest')
})

t.test('429 with Retry-After, then success', async (t) => {
  proxy.resetCounts()
  const { client, events } = makeClient()
  await client.headManifest(reg(proxy, 'app'), 'v1') // authenticate first
  proxy.fault = (req) => (req.key === 'HEAD /v2/app/manifests/latest' && req.seen === 1 ? { action: 'status', status: 429, headers: { 'retry-after': '1' } } : undefined)
  t.teardown(() => { proxy.fault = undefined })
  const started = Date.now()
  t.equal((await client.headManifest(reg(proxy, 'app'), 'latest')).digest, singleDigest)
  t.ok(Date.now() - started >= 950, `waited for Retry-After (${Date.now() - started} ms)`)
  t.equal(proxy.count('HEAD /v2/app/manifests/latest'), 2)
  t.ok(events.some((e) => e.status === 429 && e.op === 'manifest'))

  t.equal(parseRetryAfter('3', 0), 3000)
  t.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4000), 6000, 'HTTP-date form')
  t.equal(parseRetryAfter('soon', 0), undefined)
})

t.test('500 retried, then ERR_REGISTRY_UNAVAILABLE', async (t) => {
  proxy.resetCounts()
  proxy.fault = (req) => (req.key === 'HEAD /v2/app/manifests/latest' ? { action: 'status', status: 500 } : undefined)
  t.teardown(() => { proxy.fault = undefined })
  const { client } = makeClient({ host: { retries: 2 } })
  await t.rejects(client.headManifest(reg(proxy, 'app'), 'latest'), { code: 'PULLPIN_REGISTRY_UNAVAILABLE', message: /HTTP 500 \(3 attempts\)/ })
  t.equal(proxy.count('HEAD /v2/app/manifests/latest'), 3, '1 + 2 retries')
})

t.test('registry down: ERR_REGISTRY_UNAVAILABLE quickly', async (t) => {
  const gone = await startRegistryProxy({ upstream: basic })
  const { client } = makeClient({ keyring: keyringFor({ host: gone.host, username: basic.username, password: basic.password }) })
  t.equal((await client.headManifest(reg(gone, 'app'), 'v1')).digest, singleDigest, 'up')
  await gone.stop()
  let started = Date.now()
  await t.rejects(client.headManifest(reg(gone, 'app'), 'v1'), { code: 'PULLPIN_REGISTRY_UNAVAILABLE', message: /ECONNREFUSED/ })
  t.ok(Date.now() - started < 2000, `stopped registry fails fast (${Date.now() - started} ms)`)

  const port = await freePort()
  started = Date.now()
  await t.rejects(makeClient().client.listTags({ registry: `127.0.0.1:${port}`, repository: 'app' }), { code: 'PULLPIN_REGISTRY_UNAVAILABLE' })
  t.ok(Date.now() - started < 2000, 'nothing listening fails fast')
})

t.test('slow registry: ERR_REGISTRY_TIMEOUT; abort signal honoured', async (t) => {
  proxy.resetCounts()
  proxy.fault = (req) => (req.key === 'HEAD /v2/app/manifests/slow' ? { action: 'delay', ms: 3000 } : undefined)
  t.teardown(() => { proxy.fault = undefined })
  const { client } = makeClient({ host: { timeoutMs: 300, retries: 2 } })
  let started = Date.now()
  await t.rejects(client.headManifest(reg(proxy, 'app'), 'slow'), { code: 'PULLPIN_REGISTRY_TIMEOUT', message: /within 300 ms/ })
  t.ok(Date.now() - started < 1500, `timed out promptly (${Date.now() - started} ms)`)
  t.equal(proxy.count('HEAD /v2/app/manifests/slow'), 1, 'a timeout is not retried')

  const slow = makeClient()
  const ac = new AbortController()
  setTimeout(() => ac.abort(), 150)
  started = Date.now()
  await t.rejects(slow.client.headManifest(reg(proxy, 'app'), 'slow', ac.signal), { name: 'AbortError' })
  t.ok(Date.now() - started < 1000, `aborted promptly (${Date.now() - started} ms)`)
  await t.rejects(slow.client.headManifest(reg(proxy, 'app'), 'slow', AbortSignal.timeout(100)), { name: 'TimeoutError' })
  const pre = new AbortController()
  pre.abort()
  await t.rejects(slow.client.listTags(reg(proxy, 'app'), pre.signal), { name: 'AbortError' })
})

t.test('keep-alive: HEADs reuse one TLS connection', async (t) => {
  const fwd = await countingForwarder(basic)
  t.teardown(() => fwd.stop())
  const { client } = makeClient({ keyring: keyringFor({ host: fwd.host, username: basic.username, password: basic.password }) })
  for (let i = 0; i < 20; i++) await client.headManifest(reg(fwd, 'app'), 'v1')
  await client.listTags(reg(fwd, 'app'))
  t.equal(fwd.connections(), 1, '20 sequential HEADs (and a tag list) over one connection')
  await Promise.all(Array.from({ length: 16 }, () => client.headManifest(reg(fwd, 'app'), 'v1')))
  t.ok(fwd.connections() <= 8, `concurrent HEADs stay within maxConcurrency connections (${fwd.connections()})`)
})

t.test('per-registry concurrency limit', async (t) => {
  let inflight = 0
  let peak = 0
  const { client } = makeClient({ host: { maxConcurrency: 2 } })
  await client.headManifest(reg(proxy, 'app'), 'v1') // authenticate first
  proxy.fault = async (req) => {
    if (req.method !== 'HEAD') return undefined
    inflight++
    peak = Math.max(peak, inflight)
    await new Promise((resolve) => setTimeout(resolve, 60))
    inflight--
    return undefined
  }
  t.teardown(() => { proxy.fault = undefined })
  await Promise.all(Array.from({ length: 8 }, () => client.headManifest(reg(proxy, 'app'), 'v1')))
  t.equal(peak, 2, 'never more than maxConcurrency requests in flight, and the limit is used')
})

t.test('WWW-Authenticate and Link parsing', async (t) => {
  t.same(parseChallenges('Bearer realm="https://auth.example/token?a=1,b=2",service="r,s",scope="repository:a/b:pull", Basic realm="x\\"y"'), [
    { scheme: 'bearer', params: { realm: 'https://auth.example/token?a=1,b=2', service: 'r,s', scope: 'repository:a/b:pull' } },
    { scheme: 'basic', params: { realm: 'x"y' } }
  ])
  t.same(parseChallenges(['Negotiate', 'NTLM abc==', 'BEARER Realm=realm-token']).map((c) => [c.scheme, c.token68 ?? c.params.realm]),
    [['negotiate', undefined], ['ntlm', 'abc=='], ['bearer', 'realm-token']])
  t.equal(parseChallenges('Bearer realm=https://r/t,service="s"')[0]?.params.realm, undefined, 'an unquoted URL is not a token: not guessed at')
  t.same(parseLinkHeader('</v2/a/tags/list?n=2&last=x,y>; rel="next", <https://o/p>; rel=prev').map((l) => [l.target, l.params.rel]),
    [['/v2/a/tags/list?n=2&last=x,y', 'next'], ['https://o/p', 'prev']])
})

t.test('events carry no secrets and describe each request', async (t) => {
  const { client, events } = makeClient()
  await client.headManifest(reg(token, 'team/app'), 'latest')
  await client.listTags(reg(basic, 'app'))
  t.ok(events.some((e) => e.op === 'token' && e.status === 200))
  t.ok(events.some((e) => e.op === 'manifest' && e.method === 'HEAD' && e.status === 200))
  t.ok(events.some((e) => e.op === 'tags' && e.status === 200))
  const text = JSON.stringify(events)
  for (const secret of [basic.password, token.password]) t.notOk(text.includes(String(secret)))
  t.notMatch(text, /Bearer|Basic/)
})

// What the registry client refuses to do, against the real registry and token server: talk to
// registries that are not allowed, connect to private/loopback/metadata addresses (resolved or
// literal, checked at connect time), send credentials to a realm or origin the registry does
// not own, or leak a password into an error or event.
import t, { type Test } from 'tap'
import { createServer as createNetServer, connect as netConnect, type AddressInfo, type LookupFunction, type Server, type Socket } from 'node:net'
import type { LookupAddress } from 'node:dns'
import { Keyring } from '../src/registry/keyring.js'
import { RegistryClient, type RegistryClientOptions, type RegistryEvent, type RegistryHostOptions } from '../src/registry/client.js'
import { classifyAddress } from '../src/registry/address-guard.js'
import { createTestCa, startRegistry } from './support/registry.js'
import { startRegistryProxy, type ProxyRequestInfo } from './support/registry-proxy.js'

const ca = await createTestCa()
const tokenReg = await startRegistry({ ca, auth: 'token' })
t.teardown(() => tokenReg.stop())
const openReg = await startRegistry({ ca, auth: 'none' })
t.teardown(() => openReg.stop())
if (tokenReg.tokenServer === undefined) throw new Error('token server missing')
const ts = tokenReg.tokenServer
const tsPort = new URL(ts.url).port
const [teamDigest, openDigest] = await Promise.all([
  tokenReg.push({ seed: 'safety-token' }, 'team/app', ['latest']),
  openReg.push({ seed: 'safety-open' }, 'open/app', ['latest'])
])
// Fronts the token registry so tests can rewrite its challenge (realm) for unauthenticated requests.
const tokenProxy = await startRegistryProxy({ upstream: tokenReg })
t.teardown(() => tokenProxy.stop())
const openProxy = await startRegistryProxy({ upstream: openReg })
t.teardown(() => openProxy.stop())

const PASSWORD = String(tokenReg.password)
const WRONG_PASSWORD = 'Wr0ng-pa55word-that-must-not-leak'
const SECRETS = [
  PASSWORD, WRONG_PASSWORD,
  Buffer.from(`${tokenReg.username}:${PASSWORD}`).toString('base64'),
  Buffer.from(`${tokenReg.username}:${WRONG_PASSWORD}`).toString('base64')
]

// Every error and event of this file, checked for secrets at the end.
const errors: unknown[] = []
const events: RegistryEvent[] = []

async function refused (t: Test, p: Promise<unknown>, code: string, message?: RegExp): Promise<Error> {
  try {
    await p
  } catch (err) {
    errors.push(err)
    t.equal((err as { code?: string }).code, code, `${code}: ${(err as Error).message}`)
    if (message !== undefined) t.match((err as Error).message, message)
    return err as Error
  }
  t.fail(`expected ${code}, but it succeeded`)
  return new Error('did not reject')
}

function creds (host: string, password = PASSWORD): Keyring {
  return Keyring.fromDockerConfigs([{ source: 'test', json: { auths: { [host]: { username: tokenReg.username, password } } } }])
}

/** node:dns-style lookup answering from a table, recording every name asked. */
function fakeLookup (table: (hostname: string) => LookupAddress[]): LookupFunction & { calls: string[] } {
  const calls: string[] = []
  const fn = (hostname: string, options: { all?: boolean }, cb: (err: NodeJS.ErrnoException | null, a: string | LookupAddress[], f?: number) => void): void => {
    calls.push(hostname)
    const list = table(hostname)
    if (list.length === 0) {
      cb(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), options.all === true ? [] : '')
      return
    }
    if (options.all === true) cb(null, list)
    else cb(null, list[0]?.address ?? '', list[0]?.family ?? 4)
  }
  return Object.assign(fn, { calls })
}
const v4 = (address: string): LookupAddress => ({ address, family: 4 })
const v6 = (address: string): LookupAddress => ({ address, family: 6 })

function makeClient (opts: {
  keyring?: Keyring
  allowed?: (registry: string) => boolean
  privateAllowed?: (registry: string) => boolean
  host?: Partial<RegistryHostOptions>
  lookup?: LookupFunction
} = {}): RegistryClient {
  const keyring = opts.keyring ?? creds(tokenProxy.host)
  const options: RegistryClientOptions = {
    isAllowed: opts.allowed ?? (() => true),
    isPrivateAllowed: opts.privateAllowed ?? (() => true),
    hostOptions: () => ({ caPem: ca.certPem, timeoutMs: 3000, retries: 1, maxConcurrency: 4, tokenRealmHosts: [], ...opts.host }),
    credentials: (image) => keyring.lookup(image),
    onEvent: (e) => events.push(e),
    ...(opts.lookup === undefined ? {} : { lookup: opts.lookup })
  }
  const client = new RegistryClient(options)
  t.teardown(() => client.close())
  return client
}

/** A TCP pass-through to a TLS server that counts connections. */
async function countingForwarder (targetHost: string): Promise<{ port: string; connections: () => number; stop: () => Promise<void> }> {
  const targetPort = Number(targetHost.split(':')[1])
  let connections = 0
  const sockets = new Set<Socket>()
  const server: Server = createNetServer((c) => {
    connections++
    const up = netConnect(targetPort, '127.0.0.1')
    sockets.add(c).add(up)
    c.pipe(up).pipe(c)
    const close = (): void => { c.destroy(); up.destroy() }
    c.on('error', close).on('close', close)
    up.on('error', close).on('close', close)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const stop = (): Promise<void> => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()) })
  t.teardown(stop)
  return { port: String((server.address() as AddressInfo).port), connections: () => connections, stop }
}

/** A proxy fault hook that answers unauthenticated requests with a Bearer challenge naming `realm`. */
function challengeWith (realm: string, before?: () => void) {
  return (req: ProxyRequestInfo) => {
    if (req.headers.authorization !== undefined) return undefined
    before?.()
    return {
      action: 'status' as const,
      status: 401,
      headers: { 'www-authenticate': `Bearer realm="${realm}",service="${ts.service}",scope="repository:team/app:pull"` }
    }
  }
}

t.test('a registry that is not allowed is never contacted', async (t) => {
  const fwd = await countingForwarder(openReg.host)
  const lookup = fakeLookup(() => [v4('127.0.0.1')])
  const client = makeClient({ allowed: (r) => r === 'only.example', lookup })
  await refused(t, client.headManifest({ registry: `127.0.0.1:${fwd.port}`, repository: 'open/app' }, 'latest'), 'PULLPIN_REGISTRY_NOT_ALLOWED', /127\.0\.0\.1:\d+ is not on registry\.hosts/)
  await refused(t, client.listTags({ registry: `localhost:${fwd.port}`, repository: 'open/app' }), 'PULLPIN_REGISTRY_NOT_ALLOWED')
  t.equal(fwd.connections(), 0)
  t.same(lookup.calls, [], 'not even resolved')
})

t.test('host names resolving to private, loopback, link-local or metadata addresses are refused', async (t) => {
  const fwd = await countingForwarder(openReg.host)
  const registry = `localhost:${fwd.port}`
  const ref = { registry, repository: 'open/app' }
  for (const bad of [v4('127.0.0.1'), v4('169.254.169.254'), v4('10.1.2.3'), v6('::ffff:127.0.0.1'), v6('fe80::1'),
    v6('fd00:ec2::254'), v4('100.64.1.1'), v4('192.168.1.1'), v4('172.20.0.1'), v6('::1'), v4('0.0.0.0'), v6('::'),
    // The whole IPv4 link-local block, not only the metadata address: the ECS task-metadata endpoint
    // (169.254.170.2) and any other link-local service, also IPv4-mapped.
    v4('169.254.1.1'), v4('169.254.170.2'), v6('::ffff:169.254.1.1'), v6('::ffff:169.254.170.2')]) {
    const lookup = fakeLookup(() => [bad])
    const client = makeClient({ privateAllowed: () => false, lookup })
    const err = await refused(t, client.headManifest(ref, 'latest'), 'PULLPIN_REGISTRY_PRIVATE_ADDRESS')
    t.ok(err.message.includes(registry) && err.message.includes(bad.address), `names registry and address: ${err.message}`)
    t.same(lookup.calls, ['localhost'], 'resolved once, by the connection itself')
  }
  // Any refused address among several refuses the host.
  const mixed = makeClient({ privateAllowed: () => false, lookup: fakeLookup(() => [v4('8.8.8.8'), v4('127.0.0.1')]) })
  await refused(t, mixed.headManifest(ref, 'latest'), 'PULLPIN_REGISTRY_PRIVATE_ADDRESS', /127\.0\.0\.1 \(loopback\)/)
  t.equal(fwd.connections(), 0, 'no connection was made')

  // allowPrivateRegistries: the same name now works.
  const allowed = makeClient({ privateAllowed: (r) => r === registry, lookup: fakeLookup(() => [v4('127.0.0.1')]) })
  t.equal((await allowed.headManifest(ref, 'latest')).digest, openDigest)
  t.equal(fwd.connections(), 1)

  for (const [address, why] of [['::ffff:169.254.169.254', 'cloud metadata endpoint (IPv4-mapped)'], ['::ffff:7f00:1', 'loopback (IPv4-mapped)'],
    ['64:ff9b::a9fe:a9fe', 'cloud metadata endpoint (via NAT64)'], ['172.32.0.1', undefined], ['2606:4700::1111', undefined],
    ['64:ff9b::10.9.8.7', 'private (via NAT64)'], ['64:ff9b::808:808', undefined], ['64:ff9b:1::1', 'local-use NAT64'],
    ['2002:7f00:1::5', 'loopback (via 6to4)'], ['2002:c0a8:101::', 'private (via 6to4)'], ['2002:808:808::1', undefined],
    ['::ffff:8.8.8.8', undefined], ['::ffff:c0a8:1', 'private (IPv4-mapped)'], ['::7f00:1', 'IPv4-compatible (deprecated)'],
    ['fe80::1%eth0', 'link-local'], ['fd12:3456::1', 'private (unique local)'], ['ff02::1', 'multicast'],
    ['100.63.255.255', undefined], ['100.64.0.0', 'carrier-grade NAT'], ['100.127.255.255', 'carrier-grade NAT'], ['100.128.0.0', undefined],
    ['172.15.255.255', undefined], ['172.31.255.255', 'private'], ['198.19.255.255', 'benchmarking'], ['255.255.255.255', 'reserved'],
    ['1.2.3', 'not an IP address'], ['10.0.0.1%eth0', 'not an IP address'], ['1.2.3.4%x', 'not an IP address'], ['127.0.0.1%', 'not an IP address'], ['registry.example', 'not an IP address'], ['::ffff:1.2.3.256', 'not an IP address']] as const) {
    t.equal(classifyAddress(address), why, address)
  }
  // IPv4 link-local (RFC 3927) beyond the metadata address, which has its own rule.
  for (const [address, why] of [['169.254.1.1', 'link-local'], ['169.254.170.2', 'link-local'], ['169.254.0.0', 'link-local'], ['169.254.255.255', 'link-local'],
    ['::ffff:169.254.1.1', 'link-local (IPv4-mapped)'], ['::ffff:a9fe:aa02', 'link-local (IPv4-mapped)'], ['169.253.255.255', undefined], ['169.255.0.0', undefined]] as const) {
    t.equal(classifyAddress(address), why, address)
  }
})

t.test('checked at connect time: a rebinding DNS answer cannot reach loopback', async (t) => {
  const fwd = await countingForwarder(openReg.host)
  // First answer public (a pre-check would pass), every later answer loopback.
  let n = 0
  const lookup = fakeLookup(() => (n++ === 0 ? [v4('192.0.2.1')] : [v4('127.0.0.1')]))
  const client = makeClient({ privateAllowed: () => false, lookup, host: { timeoutMs: 400, retries: 2 } })
  try {
    await client.headManifest({ registry: `localhost:${fwd.port}`, repository: 'open/app' }, 'latest')
    t.fail('must not succeed')
  } catch (err) {
    errors.push(err)
    t.match((err as { code?: string }).code, /^PULLPIN_REGISTRY_(PRIVATE_ADDRESS|TIMEOUT|UNAVAILABLE)$/, (err as Error).message)
  }
  t.equal(fwd.connections(), 0, 'never connected to the loopback answer')
})

t.test('literal IP registries are checked the same way', async (t) => {
  const fwd = await countingForwarder(openReg.host)
  const client = makeClient({ privateAllowed: () => false })
  await refused(t, client.headManifest({ registry: `127.0.0.1:${fwd.port}`, repository: 'open/app' }, 'latest'), 'PULLPIN_REGISTRY_PRIVATE_ADDRESS', /127\.0\.0\.1.*loopback/)
  await refused(t, client.listTags({ registry: `[::1]:${fwd.port}`, repository: 'open/app' }), 'PULLPIN_REGISTRY_PRIVATE_ADDRESS')
  await refused(t, client.listTags({ registry: `[::ffff:127.0.0.1]:${fwd.port}`, repository: 'open/app' }), 'PULLPIN_REGISTRY_PRIVATE_ADDRESS', /IPv4-mapped/)
  await refused(t, client.headManifest({ registry: '169.254.169.254', repository: 'latest/meta-data' }, 'latest'), 'PULLPIN_REGISTRY_PRIVATE_ADDRESS', /metadata/)
  t.equal(fwd.connections(), 0)
  const allowed = makeClient({ privateAllowed: () => true })
  t.equal((await allowed.headManifest({ registry: `127.0.0.1:${fwd.port}`, repository: 'open/app' }, 'latest')).digest, openDigest)
})

t.test('token realms: only https on the registry host or a delegated host; nothing sent otherwise', async (t) => {
  t.teardown(() => { tokenProxy.fault = undefined })
  const ref = { registry: tokenProxy.host, repository: 'team/app' }
  const lookup = fakeLookup((h) => (h === 'localhost' ? [v4('127.0.0.1')] : []))

  ts.reset()
  tokenProxy.fault = challengeWith(`https://localhost:${tsPort}/token`)
  await refused(t, makeClient({ lookup }).headManifest(ref, 'latest'), 'PULLPIN_REGISTRY_REALM_REFUSED',
    /token realm https:\/\/localhost:\d+\/token refused for registry 127\.0\.0\.1:\d+: realm host localhost is neither/)
  t.equal(ts.requests, 0, 'the token server received nothing')

  tokenProxy.fault = challengeWith('https://auth.evil.example/token')
  await refused(t, makeClient({ lookup }).headManifest(ref, 'latest'), 'PULLPIN_REGISTRY_REALM_REFUSED')
  t.notOk(lookup.calls.includes('auth.evil.example'), 'the foreign realm was not even resolved')

  tokenProxy.fault = challengeWith(`http://127.0.0.1:${tsPort}/token`)
  await refused(t, makeClient({ lookup }).headManifest(ref, 'latest'), 'PULLPIN_REGISTRY_REALM_REFUSED', /only https/)
  t.equal(ts.requests, 0)

  // Delegated: tokenRealmHosts lists localhost → the token is fetched there, with credentials.
  tokenProxy.fault = challengeWith(`https://localhost:${tsPort}/token`)
  const delegated = makeClient({ lookup, host: { tokenRealmHosts: ['localhost'] } })
  t.equal((await delegated.headManifest(ref, 'latest')).digest, teamDigest)
  t.equal(ts.requests, 1)
  t.equal(ts.log[0]?.authenticated, true)
  t.ok(lookup.calls.includes('localhost'))

  // The realm's address is checked like the registry's: here private access is switched off once
  // the registry connection exists, so only the realm connection meets the guard.
  ts.reset()
  let privateOk = true
  tokenProxy.fault = challengeWith(`https://localhost:${tsPort}/token`, () => { privateOk = false })
  const guarded = makeClient({ lookup, privateAllowed: () => privateOk, host: { tokenRealmHosts: ['localhost'] } })
  await refused(t, guarded.headManifest(ref, 'latest'), 'PULLPIN_REGISTRY_PRIVATE_ADDRESS', /via localhost/)
  privateOk = true
  tokenProxy.fault = challengeWith(`https://127.0.0.1:${tsPort}/token`, () => { privateOk = false })
  await refused(t, makeClient({ privateAllowed: () => privateOk }).headManifest(ref, 'latest'), 'PULLPIN_REGISTRY_PRIVATE_ADDRESS')
  t.equal(ts.requests, 0, 'a private realm received nothing')
})

t.test('credentials never go to an unrelated host', async (t) => {
  t.teardown(() => { openProxy.fault = undefined })
  const seen: Array<string | undefined> = []
  openProxy.fault = (req) => { seen.push(req.headers.authorization); return undefined }
  // The keyring only holds credentials for the token registry.
  const client = makeClient({ keyring: creds(tokenProxy.host) })
  t.equal((await client.headManifest({ registry: openProxy.host, repository: 'open/app' }, 'latest')).digest, openDigest)
  await client.listTags({ registry: openProxy.host, repository: 'open/app' })
  t.ok(seen.length >= 2)
  t.ok(seen.every((a) => a === undefined), 'no Authorization header reached the other registry')

  // Redirects are not followed (they could point anywhere).
  const fwd = await countingForwarder(openReg.host)
  openProxy.fault = () => ({ action: 'status', status: 307, headers: { location: `https://localhost:${fwd.port}/v2/open/app/manifests/latest` } })
  await refused(t, makeClient({ keyring: creds(openProxy.host) }).headManifest({ registry: openProxy.host, repository: 'open/app' }, 'latest'),
    'PULLPIN_REGISTRY_BAD_RESPONSE', /redirect/)
  // A next page on another origin is refused before it is requested.
  openProxy.fault = (req) => req.pathname.endsWith('/tags/list')
    ? { action: 'status', status: 200, headers: { link: `<https://localhost:${fwd.port}/v2/open/app/tags/list?last=a>; rel="next"` }, body: { name: 'open/app', tags: ['a'] } }
    : undefined
  await refused(t, makeClient({ keyring: creds(openProxy.host) }).listTags({ registry: openProxy.host, repository: 'open/app' }), 'PULLPIN_REGISTRY_BAD_RESPONSE', /another origin/)
  t.equal(fwd.connections(), 0)
})

t.test('wrong credentials: unauthorized, and the password is in no error or event', async (t) => {
  ts.reset()
  const client = makeClient({ keyring: creds(tokenProxy.host, WRONG_PASSWORD) })
  await refused(t, client.headManifest({ registry: tokenProxy.host, repository: 'team/app' }, 'latest'), 'PULLPIN_REGISTRY_UNAUTHORIZED', /check the pull credentials/)
  t.equal(ts.log[0]?.authenticated, false)
  const good = makeClient()
  t.equal((await good.headManifest({ registry: tokenProxy.host, repository: 'team/app' }, 'latest')).digest, teamDigest)

  t.ok(errors.length >= 10, `${errors.length} errors collected`)
  t.ok(events.length >= 5, `${events.length} events collected`)
  const texts = errors.map((e) => {
    const err = e as Error & { cause?: unknown }
    return [err.message, err.stack, JSON.stringify(err), String(err.cause), JSON.stringify(err.cause)].join('\n')
  })
  texts.push(JSON.stringify(events))
  const all = texts.join('\n')
  for (const secret of SECRETS) t.notOk(all.includes(secret), 'a secret leaked into an error or event')
  t.notMatch(all, /eyJ[A-Za-z0-9_-]{10,}/, 'no token either')
  t.notMatch(all, /authorization/i)
})

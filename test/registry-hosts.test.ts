// Per-host state under a wildcard allowlist entry (issue 11, item 4): every distinct host a pod
// names must not get registry-client state (agent, limiter, auth scheme) forever, nor its own
// metric series. A real TLS "registry" in the test serves any *.pinhost.test name (wildcard
// certificate from the project's own CA code); an injected DNS lookup sends every name to it.
import t from 'tap'
import { createServer, type Server, type TLSSocket } from 'node:tls'
import type { LookupFunction } from 'node:net'
import { issueCa, issueServing } from '../src/certs/self-signed.js'
import { RegistryClient, MAX_REGISTRY_HOSTS, type RegistryEvent } from '../src/registry/client.js'
import { startPullpin } from './support/pullpin.js'
import { admissionReview, podFromWorkload } from './support/pods.js'
import { until } from './support/until.js'

const DIGEST = `sha256:${'ab'.repeat(32)}`

const ca = await issueCa('hosts test CA', new Date(), 2)
const serving = await issueServing(ca, { dnsNames: ['*.pinhost.test'], ipAddresses: [] })

/** Answers GET /v2/ and manifest HEADs with 200, keeps connections alive, counts open sockets. */
const open = new Set<TLSSocket>()
const server: Server = createServer({ cert: serving.cert, key: serving.key }, (socket) => {
  open.add(socket)
  socket.on('close', () => open.delete(socket))
  socket.on('error', () => socket.destroy())
  let buffered = ''
  socket.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('latin1')
    let end: number
    while ((end = buffered.indexOf('\r\n\r\n')) >= 0) {
      const head = buffered.slice(0, end)
      buffered = buffered.slice(end + 4)
      const isHead = head.startsWith('HEAD ')
      socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n' +
        `Docker-Content-Digest: ${DIGEST}\r\nContent-Length: ${isHead ? 10 : 2}\r\nConnection: keep-alive\r\n\r\n${isHead ? '' : '{}'}`)
    }
  })
})
await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
const port = (server.address() as { port: number }).port
t.teardown(() => {
  for (const s of open) s.destroy()
  server.close()
})

const toLoopback = ((_host: string, options: { all?: boolean }, cb: (err: null, a: unknown, f?: number) => void): void => {
  if (options.all === true) cb(null, [{ address: '127.0.0.1', family: 4 }])
  else cb(null, '127.0.0.1', 4)
}) as unknown as LookupFunction

t.test('many hosts under one wildcard: bounded client state, evicted pools closed, events name the entry', async t => {
  const events: RegistryEvent[] = []
  const client = new RegistryClient({
    isAllowed: () => true,
    isPrivateAllowed: () => true,
    allowlistEntry: () => `*.pinhost.test:${port}`,
    hostOptions: () => ({ caPem: ca.cert, timeoutMs: 5000, retries: 0, maxConcurrency: 2, tokenRealmHosts: [] }),
    credentials: () => [],
    lookup: toLoopback,
    onEvent: (e) => events.push(e),
    maxHosts: 4,
  })
  t.teardown(() => client.close())
  for (let i = 0; i < 20; i++) {
    const info = await client.headManifest({ registry: `h${i}.pinhost.test:${port}`, repository: 'acme/app' }, 'latest')
    t.equal(info.digest, DIGEST)
  }
  t.equal(client.hostCount, 4, 'at most maxHosts registries keep state')
  // Each registry used kept one keep-alive connection; the evicted ones must be closed, not left to idle out.
  await until('evicted pools closed', () => open.size <= 4)
  t.ok(events.length >= 20)
  t.same([...new Set(events.map(e => e.allowlistEntry))], [`*.pinhost.test:${port}`], 'every event carries the matched allowlist entry')
  t.equal(new Set(events.map(e => e.registry)).size, 20, 'the concrete host stays in the event (for logs)')
  // An evicted host works again (state made anew).
  t.equal((await client.headManifest({ registry: `h0.pinhost.test:${port}`, repository: 'acme/app' }, 'latest')).digest, DIGEST)
})

t.test('through the real server: /metrics registry series are per allowlist entry, state stays bounded', async t => {
  const glob = `*.pinhost.test:${port}`
  // pullpin does not trust the test CA here: every host fails its TLS handshake, which is still a
  // request with an event (status "error") for each distinct host.
  const p = await startPullpin(`
namespaces:
  labels:
    team-a: { pullpin.io/inject: enabled }
registry:
  hosts: ["${glob}", "ghcr.io"]
  allowPrivate: ["${glob}"]
pinning:
  enabled: true
`, { lookup: toLoopback })
  t.teardown(() => p.close())
  const hosts = MAX_REGISTRY_HOSTS + 72
  const perPod = 40
  for (let first = 0; first < hosts; first += perPod) {
    const pod = podFromWorkload('deployment-web', { namespace: 'team-a' })
    const template = pod.spec!.containers![0]!
    pod.spec!.containers = Array.from({ length: Math.min(perPod, hosts - first) }, (_, i) =>
      ({ ...template, name: `c${i}`, image: `h${first + i}.pinhost.test:${port}/acme/app:latest` }))
    const res = await p.post('/mutate', admissionReview(pod))
    t.equal(res.status, 200)
    t.equal(res.json.response.allowed, true)
  }
  t.ok(p.app.pinning!.client.hostCount <= MAX_REGISTRY_HOSTS, `client state for ${p.app.pinning!.client.hostCount} of ${hosts} hosts`)
  const metrics = (await p.get('/metrics')).text
  const requestSeries = metrics.split('\n').filter(l => l.startsWith('pullpin_registry_requests_total{'))
  const durationSeries = metrics.split('\n').filter(l => l.startsWith('pullpin_registry_request_duration_seconds_count{'))
  t.ok(requestSeries.length > 0, 'requests were counted')
  t.ok(requestSeries.length <= 4, `${requestSeries.length} request series for ${hosts} hosts`)
  t.ok(durationSeries.length <= 4, `${durationSeries.length} duration series for ${hosts} hosts`)
  for (const line of [...requestSeries, ...durationSeries]) t.match(line, `registry="${glob}"`, 'labelled by the glob, not the host')
  t.notMatch(metrics, /registry="h\d+\.pinhost\.test/, 'no concrete host in any label')
})

// Under a bounded loopback load, the two events a webhook sees in production lose no request:
//  1. the serving certificate is rotated (app.server.reloadTls): first renewed by the same CA,
//     then replaced by one from a new CA, with kept-alive and brand-new connections running;
//  2. a replica gets a real SIGTERM (a child process running `pullpin serve --shutdown-delay-ms`)
//     while a second instance takes over: the client is a small round-robin balancer that drops a
//     backend as soon as its /readyz stops answering 200, as Kubernetes endpoints would.
// A failure is any network error, any status but 200, or an answer that is not the AdmissionReview
// for the request sent.
import t from 'tap'
import { spawn } from 'node:child_process'
import { connect as tlsConnect } from 'node:tls'
import { X509Certificate } from 'node:crypto'
import { generate } from 'selfsigned'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { admissionReview, richPod } from './support/pods.js'
import { startPullpin } from './support/pullpin.js'
import { freePort } from './support/registry.js'
import { until } from './support/until.js'
import { issueSelfSigned, issueServing } from '../src/certs/self-signed.js'
import type { CertificateSource, TlsMaterial } from '../src/certs/certificate-source.js'

const CONFIG = `
namespaces:
  labels:
    team-a: { pullpin.io/inject: enabled }
pullSecrets:
  - name: ghcr-credentials
    registries: [ghcr.io]
  - name: hub-credentials
    registries: [docker.io]
`
const NAMES = { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] }
const BODY_POD = richPod('team-a')

interface Tally { ok: number; failures: string[] }

/** One review; throws on anything but a 200 AdmissionReview answering this very request. */
async function reviewOnce (url: string, agent: Agent): Promise<void> {
  const review = admissionReview(BODY_POD)
  const res = await request(`${url}/mutate`, {
    method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body: JSON.stringify(review), headersTimeout: 5000, bodyTimeout: 5000,
  })
  const text = await res.body.text()
  if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`)
  const json = JSON.parse(text)
  if (json.kind !== 'AdmissionReview' || json.response?.uid !== review.request.uid || json.response?.allowed !== true || json.response?.patch === undefined) {
    throw new Error(`unexpected answer ${text.slice(0, 200)}`)
  }
}

/** SHA-256 fingerprint of the certificate a new TLS connection to `url` is served. */
function servedFingerprint (url: string, ca: string[]): Promise<string> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: u.hostname, port: Number(u.port), ca, servername: 'localhost' }, () => {
      const fp = socket.getPeerX509Certificate()?.fingerprint256 ?? ''
      socket.end()
      resolve(fp)
    })
    socket.once('error', reject)
  })
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

t.test('certificate rotation under load: renewed by the same CA, then a new CA; 0 failed requests', async t => {
  const first = await issueSelfSigned(NAMES)
  const renewed = await issueServing({ cert: first.ca!, key: first.caKey }, NAMES)
  // A new CA must not share its subject with the old one: with two CAs of the same name in one
  // bundle and no key identifiers, OpenSSL (Node's TLS, curl) checks the leaf against the first
  // and fails with "certificate signature failure" (issueSelfSigned names every CA alike).
  const nextCa = await generate([{ name: 'commonName', value: 'pullpin webhook CA (next)' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(Date.now() - 60_000),
    notAfterDate: new Date(Date.now() + 86_400_000),
    extensions: [{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true }],
  })
  const newCa = await issueServing({ cert: nextCa.cert, key: nextCa.private }, NAMES)
  const certificates: CertificateSource = { description: 'test certificates', load: async () => first }
  const p = await startPullpin(CONFIG, { certificates })
  t.teardown(() => p.close())
  // The API server's caBundle holds both CAs while the serving certificate changes (how a CA is rotated).
  const trusted = [first.ca!, nextCa.cert]
  const keptAlive = new Agent({ connect: { ca: trusted, servername: 'localhost' }, connections: 4 })
  t.teardown(() => keptAlive.close())

  const tally: Tally = { ok: 0, failures: [] }
  const perPhase = [0, 0, 0]
  let phase = 0
  const stop = new AbortController()
  const loop = async (fresh: boolean): Promise<void> => {
    while (!stop.signal.aborted) {
      // Half the loops open a new connection (a full TLS handshake) for every request.
      const agent = fresh ? new Agent({ connect: { ca: trusted, servername: 'localhost' } }) : keptAlive
      const at = phase
      try {
        await reviewOnce(p.url, agent)
        tally.ok++
        perPhase[at]!++
      } catch (err) {
        tally.failures.push(`phase ${at}: ${(err as Error).message}`)
      } finally {
        if (fresh) await agent.close()
      }
    }
  }
  const loops = [...Array.from({ length: 3 }, () => loop(false)), ...Array.from({ length: 3 }, () => loop(true))]
  const fingerprint = (m: TlsMaterial): string => new X509Certificate(m.cert).fingerprint256

  try {
    // Each phase lasts until it has carried traffic (a fixed sleep would count on the machine's speed).
    const traffic = (n: number) => until(`requests in phase ${n}`, () => perPhase[n]! > 20, 15_000)
    await traffic(0)
    t.equal(await servedFingerprint(p.url, trusted), fingerprint(first), 'the first certificate is served')
    p.app.server.reloadTls(renewed)
    phase = 1
    await traffic(1)
    t.equal(await servedFingerprint(p.url, trusted), fingerprint(renewed), 'new connections get the renewed certificate')
    p.app.server.reloadTls(newCa)
    phase = 2
    await traffic(2)
    t.equal(await servedFingerprint(p.url, trusted), fingerprint(newCa), 'new connections get the certificate of the new CA')
  } finally {
    stop.abort()
    await Promise.all(loops)
  }

  t.same(tally.failures, [], '0 failed requests')
  // Every phase carried traffic: traffic(n) waited for it, so this only reports how much.
  t.comment(`${tally.ok} requests answered; before, between and after the rotations: ${perPhase.join(', ')}`)
})

t.test('SIGTERM with a second instance taking over: 0 failed requests', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-takeover-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const material = await issueSelfSigned(NAMES)
  const configFile = join(dir, 'pullpin.yaml')
  const certFile = join(dir, 'tls.crt')
  const keyFile = join(dir, 'tls.key')
  await writeFile(configFile, CONFIG)
  await writeFile(certFile, material.cert)
  await writeFile(keyFile, material.key, { mode: 0o600 })

  // Instance A: a real `pullpin serve` process; it will get the SIGTERM.
  const portA = await freePort()
  const a = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve', '--config', configFile, '--host', '127.0.0.1', '--port', String(portA),
    '--tls-cert', certFile, '--tls-key', keyFile, '--shutdown-delay-ms', '3000', '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let logA = ''
  a.stdout.on('data', (d: Buffer) => { logA += d.toString() })
  a.stderr.on('data', (d: Buffer) => { logA += d.toString() })
  const exitedA = new Promise<number | null>(resolve => a.once('exit', resolve))
  t.teardown(() => { if (a.exitCode === null && a.signalCode === null) a.kill('SIGKILL') })
  // Instance B: the replica that stays, same certificate (one Service, one caBundle).
  const b = await startPullpin(CONFIG, { certificates: { description: 'shared certificate', load: async () => material } })
  t.teardown(() => b.close())

  const agentOptions = { connect: { ca: material.ca!, servername: 'localhost' }, keepAliveTimeout: 30_000 }
  const backends = [
    { name: 'A', url: `https://127.0.0.1:${portA}`, agent: new Agent(agentOptions), ready: false, served: 0, servedAfterSigterm: 0, sawUnready: false },
    { name: 'B', url: b.url, agent: new Agent(agentOptions), ready: false, served: 0, servedAfterSigterm: 0, sawUnready: false },
  ]
  t.teardown(() => Promise.all(backends.map(x => x.agent.close())))
  const probe = new Agent({ ...agentOptions, pipelining: 0 })
  t.teardown(() => probe.close())

  // Readiness probes, as the kubelet sends them, decide which backends get traffic: one prober
  // per backend, so a slow answer from one never delays noticing the other's change. A's drain
  // window (3 s) is many probe periods long, even on a loaded machine.
  const probing = new AbortController()
  const prober = Promise.all(backends.map(async (x) => {
    while (!probing.signal.aborted) {
      try {
        const res = await request(`${x.url}/readyz`, { dispatcher: probe, headersTimeout: 1000, bodyTimeout: 1000 })
        await res.body.dump()
        x.ready = res.statusCode === 200
        if (res.statusCode === 503) x.sawUnready = true
      } catch {
        x.ready = false
      }
      await sleep(50)
    }
  }))
  for (let i = 0; i < 300 && !backends.every(x => x.ready); i++) await sleep(50)
  if (backends.every(x => x.ready)) t.pass('both instances ready')
  else t.fail(`an instance is not ready:\n${logA}`)

  const failures: string[] = []
  let next = 0
  let sigtermSent = false
  const stop = new AbortController()
  const loop = async (): Promise<void> => {
    while (!stop.signal.aborted) {
      const ready = backends.filter(x => x.ready)
      const x = ready[next++ % Math.max(1, ready.length)]
      if (x === undefined) { failures.push('no ready backend'); await sleep(10); continue }
      try {
        await reviewOnce(x.url, x.agent)
        x.served++
        if (sigtermSent) x.servedAfterSigterm++
      } catch (err) {
        failures.push(`${x.name}${sigtermSent ? ' after SIGTERM' : ''}: ${(err as Error).message}`)
      }
    }
  }
  const loops = Array.from({ length: 4 }, loop)
  let servedByABefore = 0
  let code: number | null | 'timeout' = 'timeout'
  try {
    await until('both instances serving', () => backends.every(x => x.served > 10), 15_000)
    servedByABefore = backends[0]!.served
    a.kill('SIGTERM')
    sigtermSent = true
    let timer: NodeJS.Timeout | undefined
    code = await Promise.race([exitedA, new Promise<'timeout'>(resolve => { timer = setTimeout(() => resolve('timeout'), 10_000) })])
    clearTimeout(timer)
    await until('B serving after the SIGTERM', () => backends[1]!.servedAfterSigterm > 10, 15_000).catch(() => {})
  } finally {
    stop.abort()
    await Promise.all(loops)
    probing.abort()
    await prober
  }

  t.equal(code, 0, 'instance A exits 0 after SIGTERM')
  t.same(failures, [], '0 failed requests')
  t.ok(servedByABefore > 5, `A served ${servedByABefore} reviews before the SIGTERM`)
  t.ok(backends[0]!.sawUnready, 'A reported unready (503) before going away')
  t.ok(backends[1]!.servedAfterSigterm > 10, `B took over: ${backends[1]!.servedAfterSigterm} reviews after the SIGTERM`)
  t.match(logA, /"msg":"stopped"/, 'A drained and stopped')
})

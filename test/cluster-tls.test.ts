// Self-managed TLS in the cluster (a Secret shared by replicas, renewed before expiry, reloaded
// without dropping requests), the caBundle the leader keeps patched, CA rotation, and provided
// certificate files reloaded on a Kubernetes-style symlink swap.
import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { request as httpsRequest } from 'node:https'
import { mkdtemp, mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import { AdmissionregistrationV1Api, KubeConfig } from '@kubernetes/client-node'
import { generate } from 'selfsigned'
import { startFakeApiServer, type FakeApiServer } from './support/fake-apiserver.js'
import { LogCapture, startPullpin } from './support/pullpin.js'
import { admissionReview, podFromWorkload } from './support/pods.js'
import { connectCluster, createClusterIntegration, SecretCertificateSource } from '../src/cluster/index.js'
import { planTls, splitPem, type TlsSecretData } from '../src/cluster/tls-rotation.js'
import { FileCertificateSource } from '../src/certs/file-source.js'
import { issueSelfSigned } from '../src/certs/self-signed.js'
import type { TlsMaterial } from '../src/certs/certificate-source.js'
import { parseConfig } from '../src/policy/config.js'
import { createLogger } from '../src/server/logger.js'
import { until } from './support/until.js'

const DAY = 86_400_000

const fingerprint = (pem: string): string => new X509Certificate(pem).fingerprint256

function secretSource (s: FakeApiServer, logs: LogCapture, now: () => Date, extra: Partial<ConstructorParameters<typeof SecretCertificateSource>[0]> = {}): SecretCertificateSource {
  const kc = new KubeConfig()
  kc.loadFromString(s.kubeconfigYaml())
  return new SecretCertificateSource({
    connection: connectCluster({ kubeConfig: kc }),
    namespace: 'pullpin',
    secretName: 'pullpin-tls',
    dnsNames: ['localhost', 'pullpin.pullpin.svc'],
    ipAddresses: ['127.0.0.1'],
    validityDays: 1,
    renewBeforeDays: 0.5,
    logger: createLogger({ level: 'debug', destination: logs }),
    informer: { backoff: { initialMs: 20, maxMs: 200 } },
    now,
    ...extra,
  })
}

const CONFIG = `
namespaces: { labels: { team-a: { pullpin.io/inject: enabled } } }
pullSecrets: [{ name: ghcr-credentials, registries: [ghcr.io] }]
`

t.test('replicas starting together share one TLS Secret (create race settled by 409)', async (t) => {
  const s = await startFakeApiServer({ namespaces: ['default', 'pullpin'] })
  t.teardown(() => s.stop())
  const logs = new LogCapture()
  const sources = [secretSource(s, logs, () => new Date()), secretSource(s, logs, () => new Date()), secretSource(s, logs, () => new Date())]
  const loaded = await Promise.all(sources.map(x => x.load()))
  t.equal(new Set(loaded.map(m => m.cert)).size, 1, 'every replica serves the same certificate')
  t.equal(s.list('secrets', 'pullpin').length, 1, 'one Secret')
  const secret = s.get({ resource: 'secrets', namespace: 'pullpin', name: 'pullpin-tls' })
  t.equal(secret.type, 'kubernetes.io/tls')
  t.same(Object.keys(secret.data).sort(), ['ca.crt', 'ca.key', 'tls.crt', 'tls.key'])
  const cert = new X509Certificate(loaded[0]!.cert)
  t.ok(cert.checkHost('pullpin.pullpin.svc'), 'in-cluster service name covered')
  t.ok(cert.verify(new X509Certificate(loaded[0]!.ca!).publicKey), 'signed by the CA in ca.crt')
  // All three read "no Secret" before any of them had made its certificate, so all three created.
  t.equal(s.requests.filter(r => r.method === 'POST').length, 3, 'three creates: one won, two got 409 and re-read')
  // A restart reuses it.
  const again = await secretSource(s, logs, () => new Date()).load()
  t.equal(again.cert, loaded[0]!.cert)
  t.notOk(logs.text.includes(loaded[0]!.key.split('\n')[1] ?? 'x'), 'the private key is never logged')
})

t.test('the leader patches the caBundle of pullpin\'s MutatingWebhookConfiguration and keeps it', async (t) => {
  const s = await startFakeApiServer({ namespaces: ['default', 'pullpin'] })
  t.teardown(() => s.stop())
  const adm = s.kubeConfig().makeApiClient(AdmissionregistrationV1Api)
  const webhook = (name: string) => ({
    name,
    admissionReviewVersions: ['v1'],
    sideEffects: 'NoneOnDryRun',
    clientConfig: { service: { name: 'pullpin', namespace: 'pullpin', path: '/mutate' } },
    rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] }],
  })
  await adm.createMutatingWebhookConfiguration({ body: { metadata: { name: 'pullpin' }, webhooks: [webhook('pods.pullpin.io'), webhook('pods-update.pullpin.io')] } })
  await adm.createMutatingWebhookConfiguration({ body: { metadata: { name: 'someone-else' }, webhooks: [webhook('other.example.com')] } })
  const logs = new LogCapture()
  const material = await secretSource(s, logs, () => new Date()).load()
  const integration = createClusterIntegration({
    connection: connectCluster({ kubeConfig: s.kubeConfig() }),
    config: parseConfig(''),
    ownNamespace: 'pullpin',
    logger: createLogger({ level: 'debug', destination: logs }),
    backoff: { initialMs: 20, maxMs: 200 },
    // No failover here: a lease long enough that a stalled CI machine never loses it by accident.
    leaderElection: { leaseDurationMs: 10_000, renewDeadlineMs: 8000, retryPeriodMs: 100 },
  })
  t.teardown(() => integration.stop())
  integration.setCaBundle(material.ca)
  integration.start()
  const expected = Buffer.from(material.ca!).toString('base64')
  const bundles = (name: string): unknown[] => s.get({ group: 'admissionregistration.k8s.io', resource: 'mutatingwebhookconfigurations', name }).webhooks.map((w: any) => w.clientConfig.caBundle)
  await until('caBundle patched', () => bundles('pullpin').every(b => b === expected))
  t.same(bundles('pullpin'), [expected, expected], 'every webhook of the configuration')
  t.same(bundles('someone-else'), [undefined], 'other configurations untouched')

  // `helm upgrade` resets it: the leader notices through its watch and patches it again.
  const current = await adm.readMutatingWebhookConfiguration({ name: 'pullpin' })
  await adm.replaceMutatingWebhookConfiguration({ name: 'pullpin', body: { ...current, webhooks: current.webhooks!.map(w => ({ ...w, clientConfig: { ...w.clientConfig, caBundle: undefined } })) } })
  await until('re-patched', () => bundles('pullpin').every(b => b === expected))
  await integration.idle()
  t.equal(logs.records.filter(r => r.msg === 'caBundle patched').length, 2, 'patched once at start, once after the reset')
})

t.test('a renewed certificate is served without a failed request (requests in flight)', async (t) => {
  const s = await startFakeApiServer({ namespaces: ['default', 'pullpin'] })
  t.teardown(() => s.stop())
  const logs = new LogCapture()
  // Issued "0.6 days ago" with 1 day of validity; renewal is due 0.5 day before expiry, so once
  // the clock moves to the real time, renewal is due. (notBefore stays in the past: real clients
  // check it against the real clock.)
  let offset = -0.6 * DAY
  const source = secretSource(s, logs, () => new Date(Date.now() + offset), { checkIntervalMs: 60_000 })
  const run = await startPullpin(CONFIG, { certificates: source })
  t.teardown(() => run.close())
  const firstCert = (await source.load()).cert
  const caBundle = run.ca
  const review = JSON.stringify(admissionReview(podFromWorkload('deployment-web', { namespace: 'team-a' })))
  const port = Number(new URL(run.url).port)

  // One request on a new TLS connection: the certificate presented and the outcome.
  const freshRequest = (): Promise<{ ok: boolean; fingerprint: string | undefined }> => new Promise((resolve) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path: '/mutate', method: 'POST', agent: false, ca: caBundle, servername: 'localhost', headers: { 'content-type': 'application/json', connection: 'close' } }, (res) => {
      const fp = (res.socket as TLSSocket).getPeerCertificate().fingerprint256
      res.resume()
      res.on('end', () => resolve({ ok: res.statusCode === 200, fingerprint: fp }))
      res.on('error', () => resolve({ ok: false, fingerprint: fp }))
    })
    req.on('error', () => resolve({ ok: false, fingerprint: undefined }))
    req.end(review)
  })

  let inFlight = 0
  let maxInFlightAtRenewal = 0
  let renewing = false
  let total = 0
  let failures = 0
  const seen = new Map<string, number>()
  const stop = new AbortController()
  const worker = async (kind: 'fresh' | 'keepalive'): Promise<void> => {
    while (!stop.signal.aborted) {
      inFlight++
      if (renewing) maxInFlightAtRenewal = Math.max(maxInFlightAtRenewal, inFlight)
      try {
        if (kind === 'fresh') {
          const r = await freshRequest()
          if (!r.ok) failures++
          if (r.fingerprint !== undefined) seen.set(r.fingerprint, (seen.get(r.fingerprint) ?? 0) + 1)
        } else {
          const r = await run.post('/mutate', review)
          if (r.status !== 200 || r.json?.response?.allowed !== true) failures++
        }
      } catch {
        failures++
      } finally {
        inFlight--
        total++
      }
    }
  }
  const workers = [...Array.from({ length: 6 }, () => worker('fresh')), ...Array.from({ length: 4 }, () => worker('keepalive'))]
  await until('traffic flowing', () => total > 50)

  offset = 0
  renewing = true
  maxInFlightAtRenewal = inFlight
  const started = performance.now()
  t.ok(await source.renewIfDue(), 'renewal written')
  await until('new certificate served', () => seen.size > 1)
  const switchMs = performance.now() - started
  renewing = false
  const totalAtSwitch = total
  await until('more traffic on the new certificate', () => total > totalAtSwitch + 50)
  stop.abort()
  await Promise.all(workers)

  const secret = s.get({ resource: 'secrets', namespace: 'pullpin', name: 'pullpin-tls' })
  const newCert = Buffer.from(secret.data['tls.crt'], 'base64').toString()
  t.not(newCert, firstCert, 'the Secret holds a new certificate')
  t.equal(Buffer.from(secret.data['ca.crt'], 'base64').toString(), caBundle, 'same CA: the caBundle does not change')
  t.same([...seen.keys()].sort(), [fingerprint(firstCert), fingerprint(newCert)].sort(), 'new connections got the old, then the new certificate')
  t.ok(new Date(new X509Certificate(newCert).validTo).getTime() > Date.now() + 0.9 * DAY, 'renewed for a full validity period')
  t.equal(failures, 0, `no failed request out of ${total}`)
  t.ok(maxInFlightAtRenewal >= 5, `requests in flight during the renewal: up to ${maxInFlightAtRenewal}`)
  t.comment(`${total} requests, ${failures} failed; up to ${maxInFlightAtRenewal} in flight during renewal; new certificate served ${switchMs.toFixed(0)} ms after the renewal started`)
  t.ok(run.logs.records.some(r => r.msg === 'serving certificate reloaded'), 'the server logged the reload')
  t.notOk(await source.renewIfDue(), 'not due again')
})

t.test('CA rotation: the next CA is published in the bundle first and signs only later', async (t) => {
  const opts = (now: number) => ({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validityDays: 10, renewBeforeDays: 2, caValidityDays: 20, now: () => new Date(now) })
  const t0 = Date.now()
  const first = await planTls(undefined, opts(t0))
  t.ok(first, 'created')
  let data: TlsSecretData = first!.data
  t.equal(splitPem(data['ca.crt']).length, 1)
  t.equal(await planTls(data, opts(t0 + 1 * DAY)), undefined, 'nothing to do while fresh')

  // Day 7: the CA (20 days) has less than validity + 2 × renewBefore (14 days) left: publish the next.
  const prep = await planTls(data, opts(t0 + 7 * DAY))
  t.match(prep?.reason, /next CA published/)
  data = prep!.data
  t.equal(splitPem(data['ca.crt']).length, 2, 'bundle: current + next')
  t.ok(data['next-ca.key'], 'next key kept')
  t.equal(data['tls.crt'], first!.data['tls.crt'], 'still served by the current CA')

  // Day 8.5: serving certificate due (less than 2 days left): renewed by the next CA, which has been
  // in the bundle long enough; the old CA stays in the bundle until it expires.
  const renew = await planTls(data, opts(t0 + 8.5 * DAY))
  t.match(renew?.reason, /signing CA rotated, serving certificate renewed/)
  const after = renew!.data
  const [signing, old] = splitPem(after['ca.crt']).map(p => new X509Certificate(p))
  t.ok(new X509Certificate(after['tls.crt']).verify(signing!.publicKey), 'signed by the new CA')
  t.equal(splitPem(after['ca.crt']).length, 2, 'old CA still trusted')
  t.ok(new X509Certificate(first!.data['tls.crt']).verify(old!.publicKey), 'the old CA is the one that signed the previous certificate')
  t.equal(after['next-ca.key'], undefined)

  // Day 21: the first CA expired (day 20): it leaves the bundle.
  const pruned = await planTls(after, opts(t0 + 21 * DAY))
  const firstCa = splitPem(first!.data['ca.crt'])[0]
  t.notOk(splitPem(pruned!.data['ca.crt']).includes(firstCa!), 'expired CA dropped')
  t.ok(splitPem(pruned!.data['ca.crt']).every(p => new Date(new X509Certificate(p).validTo).getTime() > t0 + 21 * DAY), 'only valid CAs remain')
})

t.test('provided certificate files are reloaded on a Kubernetes-style symlink swap', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-files-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  // The kubelet's AtomicWriter layout: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>/
  const publish = async (stamp: string, m: TlsMaterial): Promise<void> => {
    await mkdir(join(dir, stamp))
    await writeFile(join(dir, stamp, 'tls.crt'), m.cert)
    await writeFile(join(dir, stamp, 'tls.key'), m.key)
    await symlink(stamp, join(dir, '..data_tmp'))
    await rename(join(dir, '..data_tmp'), join(dir, '..data'))
  }
  const one = await issueSelfSigned({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] })
  await publish('..2026_01_01', one)
  await symlink('..data/tls.crt', join(dir, 'tls.crt'))
  await symlink('..data/tls.key', join(dir, 'tls.key'))
  const source = new FileCertificateSource(join(dir, 'tls.crt'), join(dir, 'tls.key'), undefined, { debounceMs: 50 })
  const run = await startPullpin(CONFIG, { certificates: source })
  t.teardown(() => run.close())

  const served = (ca: string): Promise<string | undefined> => new Promise((resolve) => {
    const req = httpsRequest({ host: '127.0.0.1', port: Number(new URL(run.url).port), path: '/healthz', agent: false, ca, servername: 'localhost' }, (res) => {
      const fp = (res.socket as TLSSocket).getPeerCertificate().fingerprint256
      res.resume()
      res.on('end', () => resolve(fp))
    })
    req.on('error', () => resolve(undefined))
    req.end()
  })
  t.equal(await served(one.ca!), fingerprint(one.cert))

  // cert-manager renews: a new pair lands through the symlink swap.
  const two = await issueSelfSigned({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] })
  await publish('..2026_02_01', two)
  let fp: string | undefined
  const deadline = Date.now() + 5000
  while ((fp = await served(two.ca!)) !== fingerprint(two.cert) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(fp, fingerprint(two.cert), 'the new certificate is served')
  t.ok(run.logs.records.some(r => r.msg === 'serving certificate reloaded'))
})

t.test('a renewed pair the TLS stack refuses is reported; the previous certificate stays served', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-files-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const one = await issueSelfSigned({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] })
  await writeFile(join(dir, 'tls.crt'), one.cert)
  await writeFile(join(dir, 'tls.key'), one.key)
  const source = new FileCertificateSource(join(dir, 'tls.crt'), join(dir, 'tls.key'), undefined, { debounceMs: 50 })
  const run = await startPullpin(CONFIG, { certificates: source })
  t.teardown(() => run.close())
  // A matching pair OpenSSL will not serve (a 512-bit RSA key: "ee key too small"). The reload
  // runs in a file-watch callback: a throw there must not end the process.
  const weak = await generate([{ name: 'commonName', value: 'localhost' }], { keySize: 512, algorithm: 'sha256' })
  await writeFile(join(dir, 'tls.key'), weak.private)
  await writeFile(join(dir, 'tls.crt'), weak.cert)
  await until('reload failure reported', () => run.logs.records.some(r => r.msg === 'certificate reload failed; still serving the previous certificate'))
  const fp = await new Promise<string | undefined>((resolve) => {
    const req = httpsRequest({ host: '127.0.0.1', port: Number(new URL(run.url).port), path: '/healthz', agent: false, ca: one.ca, servername: 'localhost' }, (res) => {
      resolve((res.socket as TLSSocket).getPeerCertificate().fingerprint256)
      res.resume()
    })
    req.on('error', () => resolve(undefined))
    req.end()
  })
  t.equal(fp, fingerprint(one.cert), 'still serving the first certificate')
  t.notOk(run.logs.records.some(r => r.msg === 'serving certificate reloaded'))
})

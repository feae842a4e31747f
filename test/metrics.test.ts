import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { generate } from 'selfsigned'
import { createMetrics } from '../src/metrics.js'
import type { CertificateSource, TlsMaterial } from '../src/certs/certificate-source.js'
import { startPullpin } from './support/pullpin.js'
import { until } from './support/until.js'

t.test('admission counters: exact at every scrape, never counted twice', async t => {
  const m = createMetrics({ defaultMetrics: false })
  const scrape = async (): Promise<string> => await m.registry.metrics()
  // Present at zero before anything happened, so alerts see a series.
  t.match(await scrape(), /pullpin_audit_findings_total\{kind="secret"\} 0\n/)
  t.match(await scrape(), /pullpin_audit_findings_total\{kind="pin"\} 0\n/)
  for (let i = 0; i < 3; i++) m.pinning.pinned('tag', 'cache')
  m.pinning.pinned('digest', 'registry')
  m.admission.secretsInjected('ghcr-credentials', true)
  m.admission.auditFinding('pin')
  m.pinning.unpinned('deadline')
  const first = await scrape()
  t.match(first, /pullpin_images_pinned_total\{format="tag",source="cache"\} 3\n/)
  t.match(first, /pullpin_images_pinned_total\{format="digest",source="registry"\} 1\n/)
  t.match(first, /pullpin_secrets_injected_total\{secret="ghcr-credentials",dry_run="true"\} 1\n/)
  t.match(first, /pullpin_audit_findings_total\{kind="pin"\} 1\n/)
  t.match(first, /pullpin_images_unpinned_total\{reason="deadline"\} 1\n/)
  t.equal(await scrape(), first, 'a second scrape adds nothing')
  m.pinning.pinned('tag', 'cache')
  t.match(await scrape(), /pullpin_images_pinned_total\{format="tag",source="cache"\} 4\n/)
  const json = await m.registry.getSingleMetric('pullpin_images_pinned_total')!.get()
  t.same(json.values.map(v => [v.labels, v.value]), [[{ format: 'tag', source: 'cache' }, 4], [{ format: 'digest', source: 'registry' }, 1]])
})

t.test('the admission histogram has its series at start, so rate() sees the first review', async t => {
  const m = createMetrics({ defaultMetrics: false })
  const text = await m.registry.metrics()
  for (const outcome of ['mutated', 'unchanged', 'audited', 'denied', 'error', 'skipped']) {
    t.match(text, new RegExp(`pullpin_admission_duration_seconds_count\\{outcome="${outcome}"\\} 0\\n`), outcome)
  }
})

t.test('the serving certificate\'s expiry is a gauge, updated on reload', async t => {
  const certs = new MemorySource(await selfSigned(2))
  const p = await startPullpin('mode: enforce\n', { certificates: certs })
  t.teardown(() => p.close())
  const expiry = async (): Promise<number> => {
    const m = /^pullpin_certificate_expiry_timestamp_seconds (\d+)$/m.exec((await p.get('/metrics')).text)
    return Number(m?.[1])
  }
  const first = await certs.load()
  t.equal(await expiry(), Math.floor(Date.parse(new X509Certificate(first.cert).validTo) / 1000))
  const renewed = await selfSigned(30)
  certs.replace(renewed)
  await until('the renewed expiry', async () => await expiry() === Math.floor(Date.parse(new X509Certificate(renewed.cert).validTo) / 1000))
  t.pass('the renewed certificate\'s expiry is reported')
})

async function selfSigned (days: number): Promise<TlsMaterial> {
  const notAfterDate = new Date(Date.now() + days * 86_400_000)
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    notAfterDate,
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] }]
  })
  return { cert: pems.cert, key: pems.private }
}

class MemorySource implements CertificateSource {
  readonly description = 'memory'
  #material: TlsMaterial
  #onChange: ((m: TlsMaterial) => void) | undefined
  constructor (material: TlsMaterial) { this.#material = material }
  load (): Promise<TlsMaterial> { return Promise.resolve(this.#material) }
  watch (onChange: (m: TlsMaterial) => void): () => void {
    this.#onChange = onChange
    return () => { this.#onChange = undefined }
  }

  replace (material: TlsMaterial): void {
    this.#material = material
    this.#onChange?.(material)
  }
}

import t from 'tap'
import { createMetrics } from '../src/metrics.js'

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

// The workload webhook (/validate, issue 18 part 1) end to end: a real pullpin over TLS, a real
// registry, workloads from real kubectl output. Warnings at `kubectl apply`, never a patch.
import t, { type Test } from 'tap'
import { admissionReview, loadWorkload } from './support/pods.js'
import { startPullpin, type RunningPullpin } from './support/pullpin.js'
import { gitSha, startPinningEnv, type PinningEnv } from './support/pinning-env.js'

let env: PinningEnv
t.before(async () => { env = await startPinningEnv() })
t.teardown(() => env.stop())

const DEPLOYMENTS = { group: 'apps', version: 'v1', resource: 'deployments' }
const CRONJOBS = { group: 'batch', version: 'v1', resource: 'cronjobs' }

async function pullpin (t: Test, top = ''): Promise<RunningPullpin> {
  const p = await startPullpin(env.configYaml('', top))
  t.teardown(() => p.close())
  return p
}

/** deployment-web with its containers' images replaced. */
function deployment (images: string[], namespace = 'team-a'): any {
  const d = loadWorkload('deployment-web')
  d.metadata.namespace = namespace
  const c0 = d.spec.template.spec.containers[0]
  d.spec.template.spec.containers = images.map((image, i) => ({ ...c0, name: `c${i}`, image }))
  return d
}

function review (object: any, resource = DEPLOYMENTS, opts: Record<string, unknown> = {}): any {
  return admissionReview(object, { kind: { group: resource.group, version: 'v1', kind: object.kind }, resource, namespace: object.metadata.namespace, ...opts })
}

async function validate (p: RunningPullpin, body: unknown): Promise<any> {
  const res = await p.post('/validate', body)
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${res.text}`)
  return res.json.response
}

t.test('a Deployment naming a missing image gets a warning at apply, and no patch', async t => {
  const p = await pullpin(t)
  const ghost = `${env.host}/acme/ghost-web:main`
  const response = await validate(p, review(deployment([ghost])))
  t.equal(response.allowed, true)
  t.match(response.warnings, [new RegExp(`^pullpin: c0: tag main not found in ${`${env.host}/acme/ghost-web`.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} — never pushed, or deleted\\?$`)])
  t.equal(response.patch, undefined, 'a validating webhook never patches')
  t.equal(response.patchType, undefined)
  // UPDATE (kubectl apply on an existing Deployment) is reviewed the same way.
  const update = await validate(p, review(deployment([ghost]), DEPLOYMENTS, { operation: 'UPDATE', oldObject: deployment(['x']) }))
  t.match(update.warnings, [/not found/])
})

t.test('a Deployment naming a SHA tag CI never pushed gets the warning at apply, before any pod exists', async t => {
  await env.registry.push({ seed: 'wl-sha' }, 'acme/wl-sha', ['main', gitSha('wl-sha-pushed')])
  const p = await pullpin(t)
  const never = `${env.host}/acme/wl-sha:${gitSha('wl-sha-never-pushed')}`
  const response = await validate(p, review(deployment([never])))
  t.equal(response.allowed, true)
  t.equal(response.patch, undefined)
  t.equal(response.warnings.length, 1)
  t.match(response.warnings[0], /not found .*not pushed by CI\?/)
  t.ok(response.warnings[0].length <= 120, 'within the API server\'s 120 characters')
})

t.test('checks.exists: deny denies the Deployment in an enforcing namespace, warns in audit', async t => {
  const p = await pullpin(t, 'checks: { exists: deny }')
  const ghost = `${env.host}/acme/ghost-deny:main`
  const denied = await validate(p, review(deployment([ghost], 'team-a')))
  t.equal(denied.allowed, false)
  t.equal(denied.status.code, 403)
  t.match(denied.status.message, /^pullpin: c0: tag main not found in .*ghost-deny/)
  t.equal(denied.patch, undefined)
  const audited = await validate(p, review(deployment([ghost], 'team-b')))
  t.equal(audited.allowed, true, 'audit never denies')
  t.match(audited.warnings, [/not found/, /^pullpin audit: would deny: /])
})

t.test('a pin is reported as a warning (enforce) or a would-pin (audit); off namespaces are not reviewed', async t => {
  const sha = gitSha('wl-1')
  await env.registry.push({ seed: 'wl-1' }, 'acme/wl', ['main', sha])
  const p = await pullpin(t)
  const image = `${env.host}/acme/wl:main`
  const enforce = await validate(p, review(deployment([image], 'team-a')))
  t.same(enforce.warnings, [`pullpin: c0 pinned to ${env.host}/acme/wl:${sha}`])
  t.equal(enforce.patch, undefined)
  const audit = await validate(p, review(deployment([image], 'team-b')))
  t.same(audit.warnings, [`pullpin audit: would pin c0 to ${env.host}/acme/wl:${sha}`])
  for (const ns of ['other', 'pullpin-system', 'kube-system']) {
    const off = await validate(p, review(deployment([`${env.host}/acme/ghost-off:main`], ns)))
    t.same(off, { uid: off.uid, allowed: true }, `${ns}: not reviewed`)
  }
  const before = env.proxy.log.length
  const skipped = deployment([`${env.host}/acme/ghost-skip:main`])
  skipped.spec.template.metadata.annotations = { 'pullpin.io/skip': 'true' }
  const s = await validate(p, review(skipped))
  t.same(s, { uid: s.uid, allowed: true }, 'pullpin.io/skip on the template')
  t.equal(env.proxy.log.length, before, 'a skipped template asks no registry')
})

t.test('a CronJob is reviewed through its jobTemplate; dry runs are reviewed too, without side effects', async t => {
  const p = await pullpin(t)
  const cron = loadWorkload('cronjob-report')
  cron.metadata.namespace = 'team-a'
  cron.spec.jobTemplate.spec.template.spec.containers[0].image = `${env.host}/acme/ghost-cron:main`
  const response = await validate(p, review(cron, CRONJOBS))
  t.match(response.warnings, [/tag main not found in .*ghost-cron/])
  const dry = await validate(p, review(cron, CRONJOBS, { dryRun: true }))
  t.match(dry.warnings, [/tag main not found in .*ghost-cron/], 'kubectl apply --dry-run=server shows the warning too')
})

t.test('hostile workloads through HTTPS: always reviewed, never a 400 for what a user wrote', async t => {
  const p = await pullpin(t)
  const cases: any[] = [
    { ...deployment(['x']), spec: null },
    { ...deployment(['x']), spec: { template: 'a string' } },
    { ...deployment(['x']), spec: { template: { metadata: 7, spec: { containers: [null, 5, { name: '__proto__', image: 42 }] } } } },
    (() => { const d = deployment([`${env.host}/acme/ghost-h:main`]); d.spec.template.metadata = { labels: { __proto__: 'x' }, annotations: { constructor: 'y' } }; return d })(),
  ]
  for (const [i, object] of cases.entries()) {
    const res = await p.post('/validate', review(object))
    t.equal(res.status, 200, `case ${i}: ${res.text.slice(0, 200)}`)
    t.equal(res.json.response.allowed, true, `case ${i}`)
    t.equal(res.json.response.patch, undefined)
  }
  // JSON text with "__proto__" keys, as the API server would send it.
  const raw = JSON.stringify(review(deployment([`${env.host}/acme/ghost-raw:main`]))).replace('"labels":{', '"labels":{"__proto__":{"a":"b"},')
  const res = await p.post('/validate', raw)
  t.equal(res.status, 200)
  t.match(res.json.response.warnings, [/tag main not found in .*ghost-raw/])
  // Kinds pullpin does not review are allowed untouched; a malformed review is a 400.
  const cm = await validate(p, admissionReview({ kind: 'ConfigMap', metadata: { name: 'c', namespace: 'team-a' } }, { kind: { group: '', version: 'v1', kind: 'ConfigMap' }, resource: { group: '', version: 'v1', resource: 'configmaps' } }))
  t.same(cm, { uid: cm.uid, allowed: true })
  const bad = await p.post('/validate', { kind: 'AdmissionReview' })
  t.equal(bad.status, 400)
  t.equal(bad.json.code, 'PULLPIN_REVIEW_MALFORMED')
})

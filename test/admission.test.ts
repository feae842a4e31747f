import t from 'tap'
import { admissionReview, richPod, podFromWorkload } from './support/pods.js'
import { testHandler } from './support/handler.js'
import type { MutationStep } from '../src/mutate/mutator.js'

t.test('malformed reviews throw a 400 error naming the problem', async t => {
  const { handle } = testHandler()
  const good = admissionReview(richPod())
  const cases: Array<[unknown, RegExp]> = [
    [null, /body must be a JSON object/],
    [[], /body must be a JSON object/],
    [{ ...good, kind: 'Pod' }, /kind must be "AdmissionReview"/],
    [{ ...good, apiVersion: 'admission.k8s.io/v1beta1' }, /apiVersion must be "admission.k8s.io\/v1", got "admission.k8s.io\/v1beta1"/],
    [{ ...good, request: undefined }, /request is missing/],
    [{ ...good, request: { ...good.request, uid: '' } }, /request.uid is missing/],
    [{ ...good, request: { ...good.request, object: undefined } }, /request.object is missing for CREATE/],
    [{ ...good, request: { ...good.request, operation: 'PATCH' } }, /request.operation must be one of/],
    [{ ...good, request: { ...good.request, kind: 'Pod' } }, /request.kind must be/],
    [{ ...good, request: { ...good.request, dryRun: 'yes' } }, /request.dryRun must be a boolean/],
  ]
  for (const [body, message] of cases) {
    await t.rejects(handle(body), { code: 'PULLPIN_REVIEW_MALFORMED', statusCode: 400, message }, String(message))
  }
})

t.test('the uid is echoed and the response is a v1 AdmissionReview', async t => {
  const { handle } = testHandler()
  const out = await handle(admissionReview(richPod(), { uid: 'abc-123' }))
  t.equal(out.apiVersion, 'admission.k8s.io/v1')
  t.equal(out.kind, 'AdmissionReview')
  t.equal(out.response.uid, 'abc-123')
})

t.test('kinds, operations and subresources pullpin does not handle are allowed unchanged', async t => {
  const { handle } = testHandler()
  const pod = richPod()
  const cases = [
    admissionReview({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } }, { kind: { group: '', version: 'v1', kind: 'ConfigMap' }, resource: { group: '', version: 'v1', resource: 'configmaps' }, namespace: 'team-a' }),
    admissionReview(podFromWorkload('deployment-web'), { kind: { group: 'apps', version: 'v1', kind: 'Deployment' }, resource: { group: 'apps', version: 'v1', resource: 'deployments' } }),
    { ...admissionReview(null, { operation: 'DELETE', oldObject: pod, namespace: 'team-a' }) },
    admissionReview({ kind: 'PodExecOptions' }, { operation: 'CONNECT', subResource: 'exec', namespace: 'team-a' }),
    admissionReview(pod, { operation: 'UPDATE', subResource: 'status', oldObject: pod }),
  ]
  for (const review of cases) {
    const out = await handle(review)
    t.same(out.response, { uid: review.request.uid, allowed: true }, `${review.request.kind.kind} ${review.request.operation} ${review.request.subResource ?? ''}`)
  }
})

t.test('namespaces not opted in, excluded, disabled or own are left alone', async t => {
  const { handle } = testHandler()
  for (const ns of ['other', 'team-c', 'kube-system', 'pullpin-system']) {
    const out = await handle(admissionReview(richPod(ns)))
    t.same(out.response, { uid: out.response.uid, allowed: true }, ns)
  }
})

t.test('pod namespace falls back to metadata.namespace when request.namespace is absent', async t => {
  const { handle } = testHandler()
  const review = admissionReview(richPod('team-a'))
  delete review.request.namespace
  t.ok((await handle(review)).response.patch)
})

t.test('pullpin.io/skip: "true" leaves the pod alone', async t => {
  const { handle } = testHandler()
  const pod = richPod()
  pod.metadata!.annotations = { 'pullpin.io/skip': 'true' }
  const out = await handle(admissionReview(pod))
  t.equal(out.response.allowed, true)
  t.equal(out.response.patch, undefined)
  pod.metadata!.annotations = { 'pullpin.io/skip': 'false' }
  t.ok((await handle(admissionReview(pod))).response.patch, 'any other value does not skip')
})

t.test('audit mode: allowed, no patch, warnings, audit annotations, one log line, a metric', async t => {
  const { handle, logs, metrics } = testHandler()
  const out = await handle(admissionReview(richPod('team-b')))
  t.equal(out.response.allowed, true)
  t.equal(out.response.patch, undefined)
  t.equal(out.response.patchType, undefined)
  t.same(out.response.warnings, [
    'pullpin audit: would add imagePullSecret ghcr-credentials',
    'pullpin audit: would add imagePullSecret hub-credentials',
  ])
  t.same(out.response.auditAnnotations, { mode: 'audit', 'would-inject-secrets': 'ghcr-credentials,hub-credentials' })
  for (const key of Object.keys(out.response.auditAnnotations!)) {
    t.notMatch(key, /\//)
    t.ok(key.length <= 63)
  }
  const lines = logs.records.filter(r => r.outcome === 'audited')
  t.equal(lines.length, 1)
  t.equal(lines[0].namespace, 'team-b')
  t.same(lines[0].wouldChange.map((c: any) => c.secret), ['ghcr-credentials', 'hub-credentials'])
  t.match(await metrics.registry.metrics(), /pullpin_audit_findings_total\{kind="secret"\} 2/)
  t.match(await metrics.registry.metrics(), /pullpin_admission_duration_seconds_count\{outcome="audited"\} 1/)
})

t.test('audit mode with nothing to report: no warnings, and only a debug line', async t => {
  const { handle, logs, metrics } = testHandler()
  const pod = richPod('team-b')
  pod.spec!.imagePullSecrets = [{ name: 'ghcr-credentials' }, { name: 'hub-credentials' }]
  const out = await handle(admissionReview(pod))
  t.same(out.response, { uid: out.response.uid, allowed: true, auditAnnotations: { mode: 'audit' } })
  t.notOk('warnings' in out.response)
  const lines = logs.records.filter(r => r.outcome === 'audited')
  t.same(lines.map(l => [l.level, l.msg]), [[20, 'audit: pod would be unchanged']])
  t.match(await metrics.registry.metrics(), /pullpin_admission_duration_seconds_count\{outcome="audited"\} 1/)
})

t.test('mode: audit in config applies to every opted-in namespace', async t => {
  const { handle } = testHandler(`mode: audit
namespaces: {labels: {team-a: {pullpin.io/inject: enabled}}}
pullSecrets: [{name: s}]`)
  const out = await handle(admissionReview(richPod()))
  t.equal(out.response.patch, undefined)
  t.same(out.response.warnings, ['pullpin audit: would add imagePullSecret s'])
})

const throwingStep: MutationStep = { name: 'boom', operations: ['CREATE'], run () { throw new Error('step exploded') } }
const hangingStep: MutationStep = { name: 'hang', operations: ['CREATE'], run: () => new Promise(() => {}) }

t.test('failOpen: an internal error admits the pod unchanged with a warning', async t => {
  const { handle, logs } = testHandler(undefined, { steps: [throwingStep] })
  const out = await handle(admissionReview(richPod()))
  t.equal(out.response.allowed, true)
  t.equal(out.response.patch, undefined)
  t.same(out.response.warnings, ['pullpin: internal error, pod admitted unchanged: step exploded'])
  t.ok(logs.records.some(r => r.level === 50 && r.msg === 'mutation failed'))
})

t.test('failOpen false: an internal error denies with a clear message', async t => {
  const { handle } = testHandler('failOpen: false\nnamespaces: {labels: {team-a: {pullpin.io/inject: enabled}}}', { steps: [throwingStep] })
  const out = await handle(admissionReview(richPod()))
  t.equal(out.response.allowed, false)
  t.equal(out.response.status?.code, 500)
  t.match(out.response.status?.message, /pullpin: internal error \(failOpen is false\): step exploded/)
})

t.test('a hung step never hangs the review: the deadline answers', async t => {
  const { handle, metrics } = testHandler(undefined, { steps: [hangingStep], deadlineMs: 50 })
  const started = Date.now()
  const out = await handle(admissionReview(richPod()))
  t.ok(Date.now() - started < 1000)
  t.equal(out.response.allowed, true)
  t.same(out.response.warnings, ['pullpin: internal error, pod admitted unchanged: no answer within 50 ms'])
  t.match(await metrics.registry.metrics(), /pullpin_admission_duration_seconds_count\{outcome="error"\} 1/)
})

t.test('a step may deny; audit mode reports the denial instead', async t => {
  const denyStep: MutationStep = { name: 'deny', operations: ['CREATE'], async run (ctx) { ctx.warnings.push('pullpin: image x not found'); ctx.deny = 'image x not found' } }
  const { handle } = testHandler(undefined, { steps: [denyStep] })
  const enforce = await handle(admissionReview(richPod('team-a')))
  t.equal(enforce.response.allowed, false)
  t.same(enforce.response.status, { code: 403, reason: 'Forbidden', message: 'pullpin: image x not found' })
  const audit = await handle(admissionReview(richPod('team-b')))
  t.equal(audit.response.allowed, true)
  t.same(audit.response.warnings, ['pullpin: image x not found', 'pullpin audit: would deny: image x not found'])
})

t.test('steps see dryRun, mode and operation', async t => {
  const seen: any[] = []
  const spy: MutationStep = { name: 'spy', operations: ['CREATE', 'UPDATE'], async run (ctx) { seen.push({ dryRun: ctx.dryRun, mode: ctx.mode, op: ctx.operation, sub: ctx.subResource, images: ctx.images.length }) } }
  const { handle } = testHandler(undefined, { steps: [spy] })
  const pod = richPod()
  await handle(admissionReview(pod, { dryRun: true }))
  await handle(admissionReview(richPod('team-b')))
  await handle(admissionReview(pod, { operation: 'UPDATE', subResource: 'ephemeralcontainers', oldObject: pod }))
  t.same(seen, [
    { dryRun: true, mode: 'enforce', op: 'CREATE', sub: undefined, images: 4 },
    { dryRun: false, mode: 'audit', op: 'CREATE', sub: undefined, images: 4 },
    { dryRun: false, mode: 'enforce', op: 'UPDATE', sub: 'ephemeralcontainers', images: 4 },
  ])
})

t.test('the patch covers what steps may change, and the draft shares the rest with the request', async t => {
  let sharedSpec = false
  const step: MutationStep = {
    name: 'edit',
    operations: ['CREATE'],
    async run (ctx) {
      ctx.pod.metadata!.annotations = { ...ctx.pod.metadata!.annotations, 'example.com/a': 'b' }
      ctx.pod.spec!.containers![0]!.image = 'example.com/app:1'
      // Outside the contract (only annotations, imagePullSecrets and images): never patched.
      ctx.pod.metadata!.labels = { sneaky: 'yes' }
      sharedSpec = ctx.pod.spec!.volumes === ctx.original.spec!.volumes
    },
  }
  const { handle } = testHandler(undefined, { steps: [step] })
  const pod = richPod()
  const out = await handle(admissionReview(pod))
  const patch = JSON.parse(Buffer.from(out.response.patch!, 'base64').toString('utf8'))
  t.same(patch.map((op: { path: string }) => op.path).sort(), ['/metadata/annotations', '/spec/containers/0/image'])
  t.ok(sharedSpec, 'untouched parts of the pod are not copied')
  t.same(pod.metadata?.labels, richPod().metadata?.labels, 'the request object itself is never edited')
})

t.test('a review answered without I/O makes no deadline timer', async t => {
  const timers = (): number => process.getActiveResourcesInfo().filter(r => r === 'Timeout').length
  let during = -1
  const step: MutationStep = { name: 'look', operations: ['CREATE'], async run () { during = timers() } }
  const { handle } = testHandler(undefined, { steps: [step] })
  const before = timers()
  const out = await handle(admissionReview(richPod()))
  t.equal(during, before, 'no timer while the steps run')
  t.equal(out.response.allowed, true)
})

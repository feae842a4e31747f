import t from 'tap'
import { admissionReview, applyResponsePatch, containersOf, decodePatch, podFromWorkload, richPod } from './support/pods.js'
import { testHandler } from './support/handler.js'

const names = (pod: any) => (pod.spec.imagePullSecrets ?? []).map((s: any) => s.name)

t.test('Deployment pod: secrets for ghcr.io and docker.io images, in config order', async t => {
  const { handle } = testHandler()
  const pod = podFromWorkload('deployment-web') // ghcr.io/acme/web, ghcr.io/acme/sidecar, nginx
  const out = await handle(admissionReview(pod))
  t.equal(out.response.allowed, true)
  t.equal(out.response.patchType, 'JSONPatch')
  const result = applyResponsePatch(pod, out.response)
  t.same(names(result), ['ghcr-credentials', 'hub-credentials'])
  // Nothing but imagePullSecrets changed.
  delete result.spec.imagePullSecrets
  t.same(result, pod)
  t.same(out.response.auditAnnotations, { mode: 'enforce', 'inject-secrets': 'ghcr-credentials,hub-credentials' })
})

t.test('only matching registries: a pkg.dev image gets only the GAR secret', async t => {
  const { handle } = testHandler()
  const pod = podFromWorkload('deployment-tools')
  const result = applyResponsePatch(pod, (await handle(admissionReview(pod))).response)
  t.same(names(result), ['gar-credentials'])
})

t.test('Job and CronJob pods are handled the same', async t => {
  const { handle } = testHandler()
  for (const w of ['job-migrate', 'cronjob-report'] as const) {
    const pod = podFromWorkload(w)
    const result = applyResponsePatch(pod, (await handle(admissionReview(pod))).response)
    t.same(names(result), ['ghcr-credentials'], w)
  }
})

t.test('init and ephemeral containers count', async t => {
  const { handle } = testHandler()
  const pod = podFromWorkload('deployment-tools') // pkg.dev only
  pod.spec!.initContainers = containersOf('deployment-init') // ghcr.io
  pod.spec!.ephemeralContainers = containersOf('deployment-debug') // busybox → docker.io
  const result = applyResponsePatch(pod, (await handle(admissionReview(pod))).response)
  t.same(names(result), ['ghcr-credentials', 'gar-credentials', 'hub-credentials'])
})

t.test('existing secrets keep their order; no duplicates', async t => {
  const { handle } = testHandler()
  const pod = richPod()
  pod.spec!.imagePullSecrets = [{ name: 'team-own' }, { name: 'hub-credentials' }]
  const out = await handle(admissionReview(pod))
  const result = applyResponsePatch(pod, out.response)
  t.same(names(result), ['team-own', 'hub-credentials', 'ghcr-credentials'])
  t.same(decodePatch(out.response), [{ op: 'add', path: '/spec/imagePullSecrets/2', value: { name: 'ghcr-credentials' } }])
})

t.test('idempotent: reviewing the mutated pod again gives no patch', async t => {
  const { handle } = testHandler()
  const pod = richPod()
  const first = applyResponsePatch(pod, (await handle(admissionReview(pod))).response)
  const second = await handle(admissionReview(first))
  t.equal(second.response.allowed, true)
  t.equal(second.response.patch, undefined)
  t.equal(second.response.patchType, undefined)
})

t.test('a pod with no matching registry is unchanged', async t => {
  const { handle } = testHandler(`
namespaces: {labels: {team-a: {pullpin.io/inject: enabled}}}
pullSecrets: [{name: q, registries: [quay.io]}]`)
  const out = await handle(admissionReview(richPod()))
  t.same(out.response, { uid: out.response.uid, allowed: true })
})

t.test('registries omitted: the secret goes into every pod', async t => {
  const { handle } = testHandler(`
namespaces: {labels: {team-a: {pullpin.io/inject: enabled}}}
pullSecrets: [{name: everywhere}]`)
  const pod = podFromWorkload('deployment-public')
  t.same(names(applyResponsePatch(pod, (await handle(admissionReview(pod))).response)), ['everywhere'])
})

t.test('host globs: port must match, *.domain matches one label', async t => {
  const { handle } = testHandler(`
namespaces: {labels: {team-a: {pullpin.io/inject: enabled}}}
pullSecrets:
  - {name: local, registries: ["registry.local:5000"]}
  - {name: wild, registries: ["*.example.com"]}`)
  const pod = podFromWorkload('deployment-public')
  pod.spec!.containers![0]!.image = 'registry.local:5000/app:v1'
  t.same(names(applyResponsePatch(pod, (await handle(admissionReview(pod))).response)), ['local'])
  pod.spec!.containers![0]!.image = 'registry.local:5001/app:v1'
  t.equal((await handle(admissionReview(pod))).response.patch, undefined)
  pod.spec!.containers![0]!.image = 'eu.example.com/app'
  t.same(names(applyResponsePatch(pod, (await handle(admissionReview(pod))).response)), ['wild'])
  pod.spec!.containers![0]!.image = 'a.eu.example.com/app'
  t.equal((await handle(admissionReview(pod))).response.patch, undefined)
})

t.test('UPDATE never adds secrets', async t => {
  const { handle } = testHandler()
  const pod = richPod()
  pod.metadata!.name = 'web-1'
  const out = await handle(admissionReview(pod, { operation: 'UPDATE', oldObject: pod }))
  t.same(out.response, { uid: out.response.uid, allowed: true })
})

t.test('dryRun still returns the patch and counts it as a dry run', async t => {
  const { handle, metrics } = testHandler()
  const pod = richPod()
  const out = await handle(admissionReview(pod, { dryRun: true }))
  t.same(names(applyResponsePatch(pod, out.response)), ['ghcr-credentials', 'hub-credentials'])
  const text = await metrics.registry.metrics()
  t.match(text, /pullpin_secrets_injected_total\{secret="ghcr-credentials",dry_run="true"\} 1/)
})

// Property-based tests (fast-check): random pods and random AdmissionReviews never crash pullpin,
// every answer is a valid AdmissionReview, every patch applies and gives the intended pod, a second
// review of the result is empty, and nothing outside imagePullSecrets, images and pullpin's
// annotations changes.
import t from 'tap'
import fc from 'fast-check'
import { admissionReview, applyResponsePatch, podFromWorkload } from './support/pods.js'
import { testHandler } from './support/handler.js'
import { parseImageReference } from '../src/reference/parse.js'
import { isCodedError } from '../src/errors.js'

const RUNS = 300
const { handle } = testHandler()

const imageArb = fc.oneof(
  fc.constantFrom('nginx', 'busybox:1.36', 'ghcr.io/acme/web:latest', 'ghcr.io/acme/api@sha256:' + 'a'.repeat(64),
    'us-docker.pkg.dev/p/r/img:main', 'registry.local:5000/team/app', 'localhost/dev', 'quay.io/org/x:v1',
    'docker.io/library/redis:7', 'index.docker.io/user/app', '[::1]:5000/a/b:c', 'Invalid/UPPER:case', ''),
  fc.tuple(fc.constantFrom('ghcr.io', 'eu.gcr.io', 'docker.io', 'r.example.com:443'), fc.stringMatching(/^[a-z0-9]{1,8}(\/[a-z0-9]{1,8}){0,2}$/), fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}$/))
    .map(([r, p, tag]) => `${r}/${p}:${tag}`),
)
const nameArb = fc.stringMatching(/^[a-z]([-a-z0-9]{0,10}[a-z0-9])?$/)
const containersArb = fc.uniqueArray(fc.record({ name: nameArb, image: imageArb }), { minLength: 1, maxLength: 5, selector: c => c.name })
const podArb = fc.record({
  containers: containersArb,
  init: fc.array(fc.record({ name: nameArb.map(n => `init-${n}`), image: imageArb }), { maxLength: 2 }),
  ephemeral: fc.array(fc.record({ name: nameArb.map(n => `dbg-${n}`), image: imageArb }), { maxLength: 1 }),
  secrets: fc.option(fc.array(fc.oneof(fc.constantFrom('ghcr-credentials', 'hub-credentials', 'own', 'other'), nameArb).map(name => ({ name })), { maxLength: 4 }), { nil: undefined }),
  annotations: fc.option(fc.dictionary(fc.constantFrom('pullpin.io/skip', 'a.b/c', 'x', 'pullpin.io/original-images'), fc.constantFrom('true', 'false', '{}', 'weird value')), { nil: undefined }),
  namespace: fc.constantFrom('team-a', 'team-b', 'team-c', 'other', 'kube-system', 'pullpin-system'),
})

type RandomPod = typeof podArb extends fc.Arbitrary<infer T> ? T : never

function buildPod (p: RandomPod) {
  const pod = podFromWorkload('deployment-web', { namespace: p.namespace })
  const base = pod.spec!.containers![0]!
  pod.spec!.containers = p.containers.map(c => ({ ...structuredClone(base), ...c }))
  const names = new Set(p.containers.map(c => c.name))
  const init = p.init.filter(c => !names.has(c.name) && names.add(c.name))
  const eph = p.ephemeral.filter(c => !names.has(c.name) && names.add(c.name))
  if (init.length > 0) pod.spec!.initContainers = init
  if (eph.length > 0) pod.spec!.ephemeralContainers = eph
  if (p.secrets !== undefined) pod.spec!.imagePullSecrets = p.secrets
  if (p.annotations !== undefined) pod.metadata!.annotations = p.annotations
  return pod
}

/** What pullpin may change: imagePullSecrets, images, and its own annotations. */
function strip (pod: any) {
  const c = structuredClone(pod)
  delete c.spec.imagePullSecrets
  for (const f of ['containers', 'initContainers', 'ephemeralContainers']) for (const x of c.spec[f] ?? []) delete x.image
  if (c.metadata?.annotations) {
    for (const k of Object.keys(c.metadata.annotations)) if (k.startsWith('pullpin.io/') && k !== 'pullpin.io/skip') delete c.metadata.annotations[k]
    if (Object.keys(c.metadata.annotations).length === 0) delete c.metadata.annotations
  }
  return c
}

t.test('random pods: valid answers, patches apply, reinvocation is empty, nothing else changes', async t => {
  await fc.assert(fc.asyncProperty(podArb, fc.boolean(), async (p, dryRun) => {
    const pod = buildPod(p)
    const review = admissionReview(pod, { dryRun })
    const out = await handle(review)
    if (out.apiVersion !== 'admission.k8s.io/v1' || out.kind !== 'AdmissionReview') return false
    if (out.response.uid !== review.request.uid || typeof out.response.allowed !== 'boolean') return false
    if ((out.response.patch === undefined) !== (out.response.patchType === undefined)) return false
    for (const w of out.response.warnings ?? []) if (w.length >= 120) return false
    const result = applyResponsePatch(pod, out.response)
    t.same(strip(result), strip(pod))
    // Existing secrets keep their order and come first; nothing is duplicated that was not already.
    const before = (pod.spec!.imagePullSecrets ?? []).map(s => s.name)
    const after = (result.spec.imagePullSecrets ?? []).map((s: any) => s.name)
    t.same(after.slice(0, before.length), before)
    const added = after.slice(before.length)
    if (new Set(added).size !== added.length || added.some((n: string) => before.includes(n))) return false
    const again = await handle(admissionReview(result, { dryRun }))
    return again.response.patch === undefined && again.response.allowed === out.response.allowed
  }), { numRuns: RUNS })
})

t.test('random envelopes: a valid review or a 400 error, never anything else', async t => {
  const envelope = fc.record({
    apiVersion: fc.constantFrom('admission.k8s.io/v1', 'admission.k8s.io/v1beta1', undefined, 7),
    kind: fc.constantFrom('AdmissionReview', 'Pod', undefined),
    request: fc.option(fc.record({
      uid: fc.oneof(fc.uuid(), fc.constant(''), fc.constant(undefined)),
      kind: fc.oneof(fc.constant({ group: '', version: 'v1', kind: 'Pod' }), fc.constant({ group: 'apps', version: 'v1', kind: 'Deployment' }), fc.constant('Pod'), fc.constant(undefined)),
      resource: fc.oneof(fc.constant({ group: '', version: 'v1', resource: 'pods' }), fc.constant({ group: '', version: 'v1', resource: 'secrets' }), fc.constant(null)),
      subResource: fc.constantFrom(undefined, '', 'status', 'ephemeralcontainers', 'exec'),
      operation: fc.constantFrom('CREATE', 'UPDATE', 'DELETE', 'CONNECT', 'PATCH', undefined),
      namespace: fc.constantFrom('team-a', 'team-b', undefined, 3),
      dryRun: fc.constantFrom(true, false, undefined, 'yes'),
      object: fc.oneof(podArb.map(buildPod), fc.constant(null), fc.constant(undefined), fc.constant([]), fc.constant({ spec: { containers: 'nope' } }), fc.anything()),
      oldObject: fc.oneof(fc.constant(null), podArb.map(buildPod)),
    }, { requiredKeys: [] }), { nil: undefined }),
  }, { requiredKeys: [] })
  await fc.assert(fc.asyncProperty(fc.oneof(envelope, fc.anything()), async (body) => {
    try {
      const out = await handle(body)
      return typeof out.response.allowed === 'boolean' && typeof out.response.uid === 'string' && out.response.uid !== ''
    } catch (err) {
      return isCodedError(err, 'PULLPIN_REVIEW_MALFORMED') && (err as any).statusCode === 400
    }
  }), { numRuns: RUNS * 2 })
  t.pass('no unexpected exception')
})

t.test('random and malformed references: only the typed parse error is thrown', async t => {
  const refChars = fc.constantFrom(...'abcXYZ019:/@._-+[]%sha256 '.split(''))
  await fc.assert(fc.property(fc.oneof(fc.string(), fc.string({ unit: refChars, maxLength: 80 }), imageArb), (input) => {
    try {
      const ref = parseImageReference(input)
      return ref.name === `${ref.registry}/${ref.repository}`
    } catch (err) {
      return isCodedError(err, 'PULLPIN_REFERENCE_INVALID')
    }
  }), { numRuns: 5000 })
  t.pass('typed errors only')
})

// Property-based tests (fast-check): random pods and random AdmissionReviews never crash pullpin,
// every answer is a valid AdmissionReview, every patch applies and gives the intended pod, a second
// review of the result is empty, and nothing outside imagePullSecrets, images and pullpin's
// annotations changes — with secret injection alone, and with pinning through a warm cache of the
// real registry (CREATE and UPDATE).
import t from 'tap'
import fc from 'fast-check'
import { admissionReview, applyResponsePatch, podFromWorkload } from './support/pods.js'
import { testHandler } from './support/handler.js'
import { gitSha, startPinningEnv } from './support/pinning-env.js'
import { parseImageReference } from '../src/reference/parse.js'
import { isCodedError } from '../src/errors.js'
import { createAdmissionHandler } from '../src/admission/handler.js'
import { buildSteps } from '../src/app.js'
import { createMutator } from '../src/mutate/mutator.js'
import { createNamespacePolicy } from '../src/policy/namespace-mode.js'
import { staticNamespaceLabels } from '../src/policy/static-namespaces.js'
import { createLogger } from '../src/server/logger.js'
import { createMetrics } from '../src/metrics.js'
import { createPinningStack } from '../src/pinning.js'
import { CredentialStore, readDockerConfigFiles } from '../src/registry/credential-store.js'
import { LogCapture } from './support/pullpin.js'
import type { Pod } from '../src/mutate/pod.js'

const RUNS = 300
const { handle } = testHandler()

const imageArb = fc.oneof(
  fc.constantFrom('nginx', 'busybox:1.36', 'ghcr.io/acme/web:latest', 'ghcr.io/acme/api@sha256:' + 'a'.repeat(64),
    'us-docker.pkg.dev/p/r/img:main', 'registry.local:5000/team/app', 'localhost/dev', 'quay.io/org/x:v1',
    'docker.io/library/redis:7', 'index.docker.io/user/app', '[::1]:5000/a/b:c', 'Invalid/UPPER:case', ''),
  fc.tuple(fc.constantFrom('ghcr.io', 'eu.gcr.io', 'docker.io', 'r.example.com:443'), fc.stringMatching(/^[a-z0-9]{1,8}(\/[a-z0-9]{1,8}){0,2}$/), fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}$/))
    .map(([r, p, tag]) => `${r}/${p}:${tag}`)
)
const nameArb = fc.stringMatching(/^[a-z]([-a-z0-9]{0,10}[a-z0-9])?$/)
const containersArb = fc.uniqueArray(fc.record({ name: nameArb, image: imageArb }), { minLength: 1, maxLength: 5, selector: c => c.name })
const podArb = fc.record({
  containers: containersArb,
  init: fc.array(fc.record({ name: nameArb.map(n => `init-${n}`), image: imageArb }), { maxLength: 2 }),
  ephemeral: fc.array(fc.record({ name: nameArb.map(n => `dbg-${n}`), image: imageArb }), { maxLength: 1 }),
  secrets: fc.option(fc.array(fc.oneof(fc.constantFrom('ghcr-credentials', 'hub-credentials', 'own', 'other'), nameArb).map(name => ({ name })), { maxLength: 4 }), { nil: undefined }),
  annotations: fc.option(fc.dictionary(fc.constantFrom('pullpin.io/skip', 'a.b/c', 'x', 'pullpin.io/pins'), fc.constantFrom('true', 'false', '{}', 'weird value')), { nil: undefined }),
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
  fc.assert(fc.property(fc.oneof(fc.string(), fc.string({ unit: refChars, maxLength: 80 }), imageArb), (input) => {
    try {
      const ref = parseImageReference(input)
      return ref.name === `${ref.registry}/${ref.repository}`
    } catch (err) {
      return isCodedError(err, 'PULLPIN_REFERENCE_INVALID')
    }
  }), { numRuns: 5000 })
  t.pass('typed errors only')
})

t.test('random pods pinned through a warm cache of the real registry', async t => {
  const env = await startPinningEnv()
  t.teardown(() => env.stop())
  const host = env.host
  const webSha = gitSha('prop-web')
  const apiSha = gitSha('prop-api')
  const webDigest = await env.registry.push({ seed: 'prop-web' }, 'prop/web', ['latest', 'main', webSha, `sha-${webSha.slice(0, 7)}`])
  await env.registry.push({ kind: 'index', seed: 'prop-api' }, 'prop/api', ['latest', apiSha])
  await env.registry.push({ seed: 'prop-nosha' }, 'prop/nosha', ['latest'])
  /** image as written → the image pullpin must pin it to (absent: left as written). */
  const pins = new Map<string, string>([
    [`${host}/prop/web:latest`, `${host}/prop/web:${webSha}`],
    [`${host}/prop/web:main`, `${host}/prop/web:${webSha}`],
    [`${host}/prop/web`, `${host}/prop/web:${webSha}`],
    [`${host}/prop/api:latest`, `${host}/prop/api:${apiSha}`],
  ])
  const registryImages = [...pins.keys(), `${host}/prop/nosha:latest`, `${host}/prop/ghost:latest`, `${host}/prop/web:${webSha}`,
    `${host}/prop/web:sha-${webSha.slice(0, 7)}`, `${host}/prop/web@${webDigest}`]

  const config = env.config('', '', '  cache: { negativeTtlSeconds: 600, tagListMinIntervalSeconds: 600 }')
  const credentials = new CredentialStore()
  credentials.replace(await readDockerConfigFiles(config.registry.credentials.dockerConfigFiles))
  const stack = await createPinningStack({ config, credentials })
  t.teardown(() => stack.close())
  const metrics = createMetrics({ defaultMetrics: false })
  const pinHandle = createAdmissionHandler({
    policy: createNamespacePolicy(config, 'pullpin-system'),
    namespaces: staticNamespaceLabels(config),
    mutator: createMutator(buildSteps(config, stack, metrics)),
    logger: createLogger({ level: 'debug', destination: new LogCapture() }),
    metrics: metrics.admission,
    failOpen: config.failOpen,
    deadlineMs: 5000,
  })
  // Warm the cache: every registry image once (the missing tag is remembered as missing).
  const warm = podFromWorkload('deployment-web', { namespace: 'team-a' })
  warm.spec!.containers = registryImages.map((image, i) => ({ name: `w${i}`, image }))
  const warmed = applyResponsePatch(warm, (await pinHandle(admissionReview(warm))).response)
  t.same(warmed.spec.containers.map((c: any) => c.image), registryImages.map(i => pins.get(i) ?? i), 'the warm-up pins what it should')
  const registryRequests = env.proxy.log.length

  const pinImageArb = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...registryImages) }, { weight: 1, arbitrary: imageArb })
  const pinPodArb = podArb.chain(p => fc.record({
    containers: fc.constant(p.containers).chain(cs => fc.tuple(...cs.map(c => pinImageArb.map(image => ({ ...c, image }))))),
    init: fc.constant(p.init).chain(cs => fc.tuple(...cs.map(c => pinImageArb.map(image => ({ ...c, image }))))),
    ephemeral: fc.constant(p.ephemeral),
    secrets: fc.constant(p.secrets),
    annotations: fc.constant(p.annotations),
    namespace: fc.constantFrom('team-a', 'team-a', 'team-b', 'other'),
  }))

  let pinsSeen = 0
  /** Checks one answer; returns the pod the API server would store. */
  const check = (pod: Pod, review: any, out: any, enforce: boolean, pinnable: (field: string, name: string) => boolean): any => {
    t.equal(out.apiVersion, 'admission.k8s.io/v1')
    t.equal(out.response.uid, review.request.uid)
    t.equal(out.response.allowed, true, 'pinning never denies here (onMissingImage: warn)')
    for (const w of out.response.warnings ?? []) t.ok(w.length < 120, 'warning under 120 characters')
    const result = applyResponsePatch(pod, out.response)
    t.same(strip(result), strip(pod), 'nothing outside imagePullSecrets, images and pullpin annotations changed')
    // Written by pullpin whenever it pins (a random pod may carry any value there otherwise).
    const recorded = (): Record<string, { image: string; pin: string }> => JSON.parse(result.metadata?.annotations?.['pullpin.io/pins'] ?? '{}')
    for (const field of ['initContainers', 'containers', 'ephemeralContainers'] as const) {
      const before = pod.spec![field] ?? []
      const after: any[] = result.spec[field] ?? []
      for (let i = 0; i < before.length; i++) {
        const was = before[i]!.image!
        const expected = enforce && pinnable(field, before[i]!.name) ? pins.get(was) ?? was : was
        t.equal(after[i].image, expected, `${field}[${i}] ${was}`)
        if (expected !== was) {
          pinsSeen++
          t.same([recorded()[before[i]!.name]?.image, recorded()[before[i]!.name]?.pin], [was, expected], 'the image as written and its pin are recorded')
        }
      }
    }
    return result
  }

  await fc.assert(fc.asyncProperty(pinPodArb, fc.boolean(), async (p, dryRun) => {
    const pod = buildPod(p)
    const skipped = pod.metadata?.annotations?.['pullpin.io/skip'] === 'true'
    const review = admissionReview(pod, { dryRun })
    const out = await pinHandle(review)
    const result = check(pod, review, out, p.namespace === 'team-a' && !skipped, () => true)
    const again = await pinHandle(admissionReview(result, { dryRun }))
    t.equal(again.response.patch, undefined, 'reinvocation: a second review changes nothing')
  }), { numRuns: 200 })

  // UPDATE: only images that changed against oldObject are pinned, and never any secret.
  await fc.assert(fc.asyncProperty(pinPodArb, fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }), fc.array(pinImageArb, { minLength: 8, maxLength: 8 }), async (p, change, images) => {
    const old = buildPod(p)
    const skipped = old.metadata?.annotations?.['pullpin.io/skip'] === 'true'
    const pod = structuredClone(old)
    let k = 0
    for (const c of [...(pod.spec!.initContainers ?? []), ...pod.spec!.containers!]) { if (change[k]) c.image = images[k]!; k++ }
    const oldImage = (field: string, name: string): string | undefined => (old.spec![field as 'containers'] ?? []).find(c => c.name === name)?.image
    const newImage = (field: string, name: string): string | undefined => (pod.spec![field as 'containers'] ?? []).find(c => c.name === name)?.image
    const review = admissionReview(pod, { operation: 'UPDATE', oldObject: old })
    const out = await pinHandle(review)
    const result = check(pod, review, out, p.namespace === 'team-a' && !skipped, (field, name) => oldImage(field, name) !== newImage(field, name))
    t.same(result.spec.imagePullSecrets, pod.spec!.imagePullSecrets, 'no secret on UPDATE')
    const again = await pinHandle(admissionReview(result, { operation: 'UPDATE', oldObject: old }))
    t.equal(again.response.patch, undefined, 'reinvocation of the UPDATE changes nothing')
  }), { numRuns: 150 })

  t.ok(pinsSeen > 20, `${pinsSeen} images pinned across the runs`)
  t.equal(env.proxy.log.length, registryRequests, 'a warm cache: no registry request during the properties')
})

// Property-based tests through the real HTTPS stack (issue 11): well-formed AdmissionReviews with
// hostile keys ("__proto__", "constructor", "prototype") anywhere, huge arrays, deep nesting and
// odd unicode are always reviewed (200, a valid AdmissionReview whose patch applies and adds the
// expected secrets); only malformed JSON or non-reviews are refused, with a 4xx and a PULLPIN_ code.
import t from 'tap'
import fc from 'fast-check'
import fastJsonPatch from 'fast-json-patch'
import { admissionReview, podFromWorkload } from './support/pods.js'
import { startPullpin } from './support/pullpin.js'
import { BASE_CONFIG } from './support/handler.js'
import { jsonErrorPosition } from '../src/json-position.js'

/** Object.prototype's own names before any review: a pollution adds one. */
const PROTOTYPE_NAMES = Object.getOwnPropertyNames(Object.prototype).sort()

const HOSTILE = ['__proto__', 'constructor', 'prototype'] as const

/** An object whose keys are all own data properties, "__proto__" included (as JSON.parse makes them). */
function own (entries: ReadonlyArray<readonly [string, unknown]>): Record<string, unknown> {
  const o: Record<string, unknown> = {}
  for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true })
  return o
}

const keyArb = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...HOSTILE) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 8 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) } // lone surrogates, controls
)
const stringArb = fc.oneof(fc.constantFrom(...HOSTILE), fc.string({ unit: 'grapheme', maxLength: 12 }), fc.string({ unit: 'binary', maxLength: 12 }))
/** Plain string maps (labels, annotations, volumeAttributes) with hostile keys. */
const stringMapArb = fc.array(fc.tuple(keyArb, stringArb), { maxLength: 6 }).map(own)
/** Any JSON value with hostile keys at any depth. */
const { junk } = fc.letrec<{ junk: unknown }>(tie => ({
  junk: fc.oneof({ depthSize: 'small', withCrossShrink: true },
    stringArb, fc.integer(), fc.boolean(), fc.constant(null),
    fc.array(tie('junk'), { maxLength: 4 }),
    fc.array(fc.tuple(keyArb, tie('junk')), { maxLength: 4 }).map(own)),
}))
/** Deep nesting: arrays or objects (with a hostile key) thousands of levels down (built in build(), so a counterexample prints short). */
const deepArb = fc.record({ depth: fc.integer({ min: 100, max: 5000 }), key: fc.constantFrom(...HOSTILE), arrays: fc.boolean() })

/** As JSON text: JSON.stringify itself runs out of stack at a few thousand levels. */
function deepJson ({ depth, key, arrays }: { depth: number; key: string; arrays: boolean }): string {
  return arrays ? `${'['.repeat(depth)}"bottom"${']'.repeat(depth)}` : `${`{"${key}":`.repeat(depth)}"bottom"${'}'.repeat(depth)}`
}

/** Images and the secret each calls for under BASE_CONFIG. */
const IMAGES: ReadonlyArray<readonly [string, string | undefined]> = [
  ['ghcr.io/acme/web:latest', 'ghcr-credentials'],
  ['nginx', 'hub-credentials'],
  ['us-docker.pkg.dev/p/r/img:main', 'gar-credentials'],
  ['quay.io/org/x:v1', undefined],
  ['Invalid/UPPER:case', undefined],
]
const CONFIG_ORDER = ['ghcr-credentials', 'gar-credentials', 'hub-credentials']

const hostilePodArb = fc.record({
  images: fc.array(fc.nat(IMAGES.length - 1), { minLength: 1, maxLength: 6 }),
  containerName: fc.oneof(fc.constantFrom(...HOSTILE), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 })),
  labels: stringMapArb,
  annotations: stringMapArb,
  volumeAttributes: stringMapArb,
  specJunk: junk,
  containerJunk: junk,
  requestJunk: junk,
  deep: fc.option(deepArb, { nil: undefined }),
  /** Huge arrays: many volumes, and many containers repeating the images. */
  volumes: fc.integer({ min: 0, max: 3000 }),
  repeat: fc.integer({ min: 1, max: 300 }),
  ownSecrets: fc.subarray(['ghcr-credentials', 'own']),
})

type HostilePod = typeof hostilePodArb extends fc.Arbitrary<infer T> ? T : never

const DEEP = '(deep value)'

function build (h: HostilePod): { body: string; review: any; pod: any; images: string[]; secrets: string[] } {
  const pod: any = podFromWorkload('deployment-web', { namespace: 'team-a' })
  pod.metadata.labels = h.labels
  pod.metadata.annotations = h.annotations
  const images: string[] = []
  const containers: any[] = []
  for (let r = 0; r < h.repeat; r++) {
    for (const [i, n] of h.images.entries()) {
      const image = IMAGES[n]![0]
      images.push(image)
      containers.push(own([['name', r === 0 && i === 0 ? h.containerName : `c${r}-${i}`], ['image', image], ...HOSTILE.map(k => [k, h.containerJunk] as const)]))
    }
  }
  pod.spec.containers = containers
  pod.spec.volumes = Array.from({ length: h.volumes + 1 }, (_, i) => ({ name: `v${i}`, csi: { driver: 'd', volumeAttributes: h.volumeAttributes } }))
  pod.spec.imagePullSecrets = h.ownSecrets.map(name => ({ name }))
  Object.defineProperty(pod.spec, '__proto__', { value: h.specJunk, enumerable: true, writable: true, configurable: true })
  if (h.deep !== undefined) pod.spec.deep = DEEP
  const review = admissionReview(pod)
  Object.defineProperty(review.request, 'constructor', { value: h.requestJunk, enumerable: true, writable: true, configurable: true })
  Object.defineProperty(review, '__proto__', { value: own([['prototype', h.requestJunk]]), enumerable: true, writable: true, configurable: true })
  const wanted = new Set(h.images.map(n => IMAGES[n]![1]).filter(s => s !== undefined))
  const secrets = [...h.ownSecrets, ...CONFIG_ORDER.filter(s => wanted.has(s) && !h.ownSecrets.includes(s))]
  const text = JSON.stringify(review)
  const body = h.deep === undefined ? text : text.replace(JSON.stringify(DEEP), deepJson(h.deep))
  return { body, review, pod, images, secrets }
}

t.test('over HTTPS', async t => {
  const p = await startPullpin(BASE_CONFIG)
  t.teardown(() => p.close())

  t.test('hostile, huge and deep well-formed reviews: 200, a valid review, a patch that applies', async t => {
    await fc.assert(fc.asyncProperty(hostilePodArb, async (h) => {
      const { body, review, pod, images, secrets } = build(h)
      if (Buffer.byteLength(body) > 3 * 1024 * 1024) return // over the body limit: covered below
      const res = await p.post('/mutate', body)
      t.equal(res.status, 200, res.text.slice(0, 300))
      t.equal(res.json.apiVersion, 'admission.k8s.io/v1')
      t.equal(res.json.kind, 'AdmissionReview')
      t.equal(res.json.response.uid, review.request.uid)
      t.equal(res.json.response.allowed, true)
      // Applied as the API server does, to the object as it was sent (parsed back: own keys kept).
      const sent = JSON.parse(body).request.object
      const ops = res.json.response.patch === undefined ? [] : JSON.parse(Buffer.from(res.json.response.patch, 'base64').toString('utf8'))
      // Not validated: validation deep-clones the document through JSON.stringify, which the deep values overflow.
      const result = fastJsonPatch.applyPatch(sent, ops, false, true).newDocument
      t.same((result.spec.imagePullSecrets ?? []).map((s: any) => s.name), secrets, 'the expected secrets, own ones first')
      t.same(result.spec.containers.map((c: any) => c.image), images, 'images unchanged (no pinning configured)')
      t.same(Object.keys(result.metadata.labels), Object.keys(pod.metadata.labels), 'hostile labels kept as they were')
      t.equal(Object.prototype.hasOwnProperty.call(result.spec, '__proto__'), true, 'a "__proto__" key stays an own key')
      t.same(Object.getOwnPropertyNames(Object.prototype).sort(), PROTOTYPE_NAMES, 'Object.prototype untouched')
      t.equal(Object.getPrototypeOf(result.metadata.labels), Object.prototype, 'the reviewed maps keep their prototype')
    }), { numRuns: 40 })
  })

  t.test('the same hostile pods as Deployment templates on /validate: 200, allowed, never a patch', async t => {
    await fc.assert(fc.asyncProperty(hostilePodArb, fc.constantFrom('team-a', 'team-b'), async (h, namespace) => {
      const { pod, review } = build(h)
      // The pod's JSON text (hostile keys and deep values as sent) becomes the template's.
      const podText = h.deep === undefined ? JSON.stringify(pod) : JSON.stringify(pod).replace(JSON.stringify(DEEP), deepJson(h.deep))
      const deployment = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace }, spec: { replicas: 2, template: '@template@' } }
      const wrapper = admissionReview(deployment, { uid: review.request.uid, kind: { group: 'apps', version: 'v1', kind: 'Deployment' }, resource: { group: 'apps', version: 'v1', resource: 'deployments' } })
      const body = JSON.stringify(wrapper).replace('"@template@"', podText)
      if (Buffer.byteLength(body) > 3 * 1024 * 1024) return
      const res = await p.post('/validate', body)
      t.equal(res.status, 200, res.text.slice(0, 300))
      t.equal(res.json.kind, 'AdmissionReview')
      t.equal(res.json.response.uid, review.request.uid)
      t.equal(res.json.response.allowed, true)
      t.equal(res.json.response.patch, undefined, 'never a patch')
      t.equal(res.json.response.patchType, undefined)
      t.same(Object.getOwnPropertyNames(Object.prototype).sort(), PROTOTYPE_NAMES, 'Object.prototype untouched')
    }), { numRuns: 20 })
  })

  t.test('a body over the limit is 413 PULLPIN_BODY_TOO_LARGE', async t => {
    const pod: any = podFromWorkload('deployment-web', { namespace: 'team-a' })
    pod.metadata.annotations = { big: 'x'.repeat(3 * 1024 * 1024) }
    const res = await p.post('/mutate', admissionReview(pod))
    t.equal(res.status, 413)
    t.match(res.json, { code: 'PULLPIN_BODY_TOO_LARGE', error: 'Payload Too Large', message: /3145728 bytes/ })
  })

  t.test('a body that is not JSON is 415 PULLPIN_UNSUPPORTED_MEDIA_TYPE', async t => {
    const res = await p.post('/mutate', '<xml/>', { 'content-type': 'application/xml' })
    t.equal(res.status, 415)
    t.match(res.json, { code: 'PULLPIN_UNSUPPORTED_MEDIA_TYPE', message: /application\/xml/ })
    const text = await p.post('/mutate', JSON.stringify(admissionReview(podFromWorkload('deployment-web'))), { 'content-type': 'text/plain' })
    t.equal(text.status, 415, 'text/plain too: only application/json is read')
    t.match(text.json, { code: 'PULLPIN_UNSUPPORTED_MEDIA_TYPE', message: /text\/plain/ })
  })

  t.test('malformed JSON: 400 PULLPIN_REVIEW_MALFORMED, with the position and none of the text', async t => {
    await fc.assert(fc.asyncProperty(fc.string({ unit: 'grapheme', maxLength: 200 }), fc.nat(), async (text, cut) => {
      const review = JSON.stringify(admissionReview(podFromWorkload('deployment-web'), { uid: 'SECRETUID' }))
      const body = cut % 3 === 0 ? text : review.slice(0, cut % review.length) + text
      let valid = true
      try { JSON.parse(body) } catch { valid = false }
      // The scanner and JSON.parse agree on what is JSON.
      t.equal(jsonErrorPosition(body) === undefined, valid)
      if (valid) return
      const res = await p.post('/mutate', body)
      t.equal(res.status, 400)
      t.equal(res.json.code, 'PULLPIN_REVIEW_MALFORMED')
      t.match(res.json.message, body.trim() === '' ? /the body is empty/ : /not valid JSON \(line \d+, column \d+\)$/)
      t.notMatch(res.text, /SECRETUID/, 'nothing of the body is echoed')
    }), { numRuns: 60 })
  })

  t.test('JSON that is not a review: 400 PULLPIN_REVIEW_MALFORMED', async t => {
    await fc.assert(fc.asyncProperty(junk, async (value) => {
      const body = JSON.stringify(value)
      if (body === undefined) return
      const res = await p.post('/mutate', body)
      t.equal(res.status, 400)
      t.equal(res.json.code, 'PULLPIN_REVIEW_MALFORMED')
      t.ok(res.text.length < 2048, 'the answer is short, whatever the body')
    }), { numRuns: 60 })
  })
})

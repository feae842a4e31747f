// Hostile input through the real HTTPS stack (issue 11): prototype-named keys are reviewed like any
// other key, malformed bodies get a coded 4xx, and log lines stay bounded however big the pod.
import t from 'tap'
import { admissionReview, applyResponsePatch, richPod } from './support/pods.js'
import { startPullpin } from './support/pullpin.js'
import { BASE_CONFIG } from './support/handler.js'

/** Object.prototype's own names before any review: a pollution adds one. */
const PROTOTYPE_NAMES = Object.getOwnPropertyNames(Object.prototype).sort()

/** JSON.parse keeps "__proto__" as an own data property (an object literal would set the prototype). */
function withHostileKeys (): any {
  const pod: any = richPod()
  pod.spec.volumes = [...(pod.spec.volumes ?? []), JSON.parse('{"name":"v","csi":{"driver":"d","volumeAttributes":{"__proto__":"x","constructor":"y","prototype":"z"}}}')]
  pod.metadata.labels = JSON.parse('{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}}}')
  pod.metadata.annotations = JSON.parse('{"__proto__":"a","constructor":"b"}')
  return pod
}

t.test('prototype-named keys anywhere: the review is answered and the patch applies', async t => {
  const p = await startPullpin(BASE_CONFIG)
  t.teardown(() => p.close())
  const pod = withHostileKeys()
  const body = JSON.stringify(admissionReview(pod, { uid: 'u-proto' }))
  t.match(body, /"__proto__":"x"/, 'the body carries the key')
  const res = await p.post('/mutate', body)
  t.equal(res.status, 200, res.text)
  t.equal(res.json.response.uid, 'u-proto')
  t.equal(res.json.response.allowed, true)
  const result = applyResponsePatch(pod, res.json.response)
  t.same(result.spec.imagePullSecrets, [{ name: 'ghcr-credentials' }, { name: 'hub-credentials' }])
  t.same(Object.keys(result.metadata.annotations).sort(), ['__proto__', 'constructor'], 'the hostile annotations are kept')
  t.same(Object.getOwnPropertyNames(Object.prototype).sort(), PROTOTYPE_NAMES, 'Object.prototype is untouched')
  t.equal(Object.getPrototypeOf(result.metadata.annotations), Object.prototype, 'the reviewed annotations keep their prototype')
})

t.test('a review with thousands of images writes one bounded log line that says what it left out', async t => {
  // Over the default limits.maxImagesPerReview on purpose: the log line must stay bounded for any cap.
  // A valid image near the reference's length limits, on registry.hosts (a name that does not
  // resolve): its "not pinned" warning is longer than a log item may be.
  const host = `${'h'.repeat(60)}.${'o'.repeat(60)}.${'s'.repeat(60)}.example.com`
  const p = await startPullpin(BASE_CONFIG + `
limits: { maxImagesPerReview: 10000 }
registry:
  hosts: [registry.example.com, "${host}"]
pinning:
  enabled: true
`)
  t.teardown(() => p.close())
  const pod: any = richPod()
  const images = 5000
  // Uppercase owners: each gets the reference check's warning (whatever its registry).
  pod.spec.containers = Array.from({ length: images }, (_, i) => ({ name: `c${i}`, image: `quay.io/Org/image-number-${i}:latest` }))
  // One absurdly long image name too: a single item must not make a line huge either.
  pod.spec.containers.unshift({ name: 'huge', image: `quay.io/org/${'x'.repeat(200_000)}:latest` })
  pod.spec.containers.unshift({ name: 'long', image: `${host}/${'r'.repeat(200)}:${'t'.repeat(120)}` })
  const res = await p.post('/mutate', admissionReview(pod, { uid: 'u-big' }))
  t.equal(res.status, 200)
  t.equal(res.json.response.allowed, true)
  const line = p.logs.lines.find(l => l.includes('"u-big"') && l.includes('with warnings'))
  t.ok(line, 'the review logged its line')
  t.ok(line!.length < 32 * 1024, `the line is ${line!.length} characters, under 32 KiB`)
  const record = JSON.parse(line!)
  // One warning per container: the long image's (not pinned), the huge one's and the 5,000
  // uppercase ones' (reference check); the init container's image is on no registry.hosts.
  t.equal(record.warningsTotal, images + 2, 'the line says how many warnings there were')
  t.equal(record.warningsLeftOut, images + 2 - record.warnings.length, 'and how many it left out')
  t.ok(record.warnings.length > 0, 'the first warnings are in the line')
  t.match(record.warnings[0], /^pullpin: h{60}\.o{60}.*…\(\d+ more characters\)$/, 'a long warning is cut and says so')
  t.ok(record.warnings[0].length < 600)
  t.match(record.warnings[1], /^pullpin: huge: invalid image reference/)
  t.match(record.warnings[2], /^pullpin: c0: use quay\.io\/org\/image-number-0:latest: repository names are lowercase$/)
})

t.test('a refused review echoes none of a huge field, in the answer or the log', async t => {
  const p = await startPullpin(BASE_CONFIG)
  t.teardown(() => p.close())
  const res = await p.post('/mutate', { apiVersion: 'admission.k8s.io/v1', kind: 'x'.repeat(1_000_000) })
  t.equal(res.status, 400)
  t.equal(res.json.code, 'PULLPIN_REVIEW_MALFORMED')
  t.ok(res.text.length < 1024, `the answer is ${res.text.length} characters`)
  const line = p.logs.lines.find(l => l.includes('bad request'))
  t.ok(line !== undefined && line.length < 2048, `the log line is ${line?.length} characters`)
})

t.test('the log censor keeps a "__proto__" key as a key, and censors below it', async t => {
  const { redactSecrets } = await import('../src/server/logger.js')
  const logged = JSON.parse('{"__proto__":{"password":"hunter2","name":"n"},"token":"t0ken"}')
  const out = redactSecrets(logged)
  t.equal(Object.getPrototypeOf(out), Object.prototype, 'the copy keeps its prototype')
  t.same(JSON.parse(JSON.stringify(out)), JSON.parse('{"__proto__":{"password":"[redacted]","name":"n"},"token":"[redacted]"}'))
})

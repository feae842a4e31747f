// Hostile input through the real HTTPS stack (issue 11): prototype-named keys are reviewed like any
// other key, malformed bodies get a coded 4xx, and log lines stay bounded however big the pod.
import t from 'tap'
import { admissionReview, applyResponsePatch, richPod } from './support/pods.js'
import { startPullpin } from './support/pullpin.js'
import { BASE_CONFIG } from './support/handler.js'

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
  t.equal(({} as any).polluted, undefined, 'Object.prototype is untouched')
})

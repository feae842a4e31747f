import t from 'tap'
import { connect } from 'node:tls'
import { request } from 'undici'
import { admissionReview, applyResponsePatch, richPod } from './support/pods.js'
import { startPullpin } from './support/pullpin.js'
import { BASE_CONFIG } from './support/handler.js'
import type { MutationStep } from '../src/mutate/mutator.js'

t.test('HTTPS server', async t => {
  const p = await startPullpin(BASE_CONFIG)
  t.teardown(() => p.close())

  t.test('POST /mutate over TLS returns the patch', async t => {
    const pod = richPod()
    const res = await p.post('/mutate', admissionReview(pod, { uid: 'u-1' }))
    t.equal(res.status, 200)
    t.equal(res.json.response.uid, 'u-1')
    const result = applyResponsePatch(pod, res.json.response)
    t.same(result.spec.imagePullSecrets, [{ name: 'ghcr-credentials' }, { name: 'hub-credentials' }])
  })

  t.test('malformed JSON, wrong shape and wrong apiVersion are HTTP 400 with a message', async t => {
    const bad = await p.post('/mutate', '{"apiVersion":')
    t.equal(bad.status, 400)
    t.match(bad.json, { error: 'Bad Request', message: /JSON/ })
    const shape = await p.post('/mutate', { hello: 'world' })
    t.equal(shape.status, 400)
    t.match(shape.json, { code: 'PULLPIN_REVIEW_MALFORMED', message: /kind must be "AdmissionReview"/ })
    const v1beta1 = await p.post('/mutate', { ...admissionReview(richPod()), apiVersion: 'admission.k8s.io/v1beta1' })
    t.equal(v1beta1.status, 400)
    t.match(v1beta1.json.message, /apiVersion must be "admission.k8s.io\/v1"/)
    const empty = await p.post('/mutate', '')
    t.equal(empty.status, 400)
  })

  t.test('a body over 3 MiB is 413', async t => {
    const pod = richPod()
    pod.metadata!.annotations = { big: 'x'.repeat(3 * 1024 * 1024) }
    const res = await p.post('/mutate', admissionReview(pod))
    t.equal(res.status, 413)
    t.match(res.json, { error: 'Payload Too Large' })
  })

  t.test('health, readiness and metrics', async t => {
    t.same(JSON.parse((await p.get('/healthz')).text), { status: 'ok' })
    const ready = await p.get('/readyz')
    t.equal(ready.status, 200)
    const metrics = await p.get('/metrics')
    t.equal(metrics.status, 200)
    t.match(metrics.text, /pullpin_admission_duration_seconds_bucket\{le="0.001",outcome="mutated"\}/)
    t.match(metrics.text, /pullpin_secrets_injected_total\{secret="ghcr-credentials",dry_run="false"\} 1/)
    t.match(metrics.text, /pullpin_process_cpu_seconds_total/)
  })

  t.test('TLS 1.1 is refused, TLS 1.2 accepted', async t => {
    const { port } = new URL(p.url)
    const tryVersion = (v: 'TLSv1.1' | 'TLSv1.2') => new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: Number(port), ca: p.ca, servername: 'localhost', minVersion: v, maxVersion: v })
      s.once('secureConnect', () => { s.end(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    t.equal(await tryVersion('TLSv1.1'), false)
    t.equal(await tryVersion('TLSv1.2'), true)
  })

  t.test('an untrusted client sees a certificate for localhost signed by our CA', async t => {
    await t.rejects(request(p.url + '/healthz'), /self-signed|unable to verify|certificate/)
  })
})

t.test('shutdown: unready first, in-flight reviews finish, then connections close', async t => {
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  let entered!: () => void
  const inFlight = new Promise<void>(resolve => { entered = resolve })
  const slowStep: MutationStep = { name: 'slow', operations: ['CREATE'], async run (ctx) { entered(); await gate; ctx.pod.metadata!.annotations = { ...ctx.pod.metadata!.annotations, slow: 'done' } } }
  // The drain window must outlast the /readyz request below (a new TLS connection, on a loaded
  // machine too); unready is set synchronously when the shutdown starts, so no wait before it.
  const p = await startPullpin(BASE_CONFIG, { steps: [slowStep], shutdownDelayMs: 2000 })
  const review = p.post('/mutate', admissionReview(richPod()))
  await inFlight
  const closing = p.close()
  const ready = await p.get('/readyz')
  t.equal(ready.status, 503, 'readyz is unready while draining')
  t.match(ready.text, /draining/)
  release()
  const res = await review
  t.equal(res.status, 200, 'the in-flight review finished')
  t.ok(res.json.response.patch)
  await closing
  await t.rejects(request(p.url + '/healthz', { dispatcher: p.agent }), 'the server no longer accepts connections')
})

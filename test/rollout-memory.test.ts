// src/cache/rollout-pins.ts on its own: the bounded memory (ended revisions go first), one
// cluster read per revision shared by concurrent reviews, and what a pins annotation may say.
import t from 'tap'
import { RolloutPins, parsePinsAnnotation, type AdmittedPinsReader, type Revision } from '../src/cache/rollout-pins.js'

const rev = (hash: string): Revision => ({ key: `team-a\u0000rs\u0000pod-template-hash=${hash}`, namespace: 'team-a', ownerUid: 'rs', label: { name: 'pod-template-hash', value: hash } })
const pin = (tag: string) => ({ to: `ghcr.io/acme/web:${tag}`, verified: true })
const annotation = (tag: string, image = 'ghcr.io/acme/web:latest', to = `ghcr.io/acme/web:${tag}`) => JSON.stringify({ app: { image, pin: to, digest: `sha256:${'b'.repeat(64)}` } })

t.test('bounded by pins; the revision not used for longest (an ended rollout) is forgotten first', async t => {
  const pins = new RolloutPins({ max: 3 })
  for (const h of ['old', 'running', 'new']) pins.remember(rev(h), 'ghcr.io/acme/web:latest', pin(h))
  t.equal(pins.size, 3)
  t.same(pins.get(rev('running'), 'ghcr.io/acme/web:latest'), pin('running'), 'the running revision keeps being read')
  t.same(pins.get(rev('new'), 'ghcr.io/acme/web:latest'), pin('new'))
  pins.remember(rev('newest'), 'ghcr.io/acme/web:latest', pin('newest'))
  t.equal(pins.has(rev('old')), false, 'the revision nobody asked for since is gone')
  t.equal(pins.has(rev('running')), true)
  pins.remember(rev('running'), 'ghcr.io/acme/web:latest', pin('other'))
  t.same(pins.get(rev('running'), 'ghcr.io/acme/web:latest'), pin('running'), 'the first pin stays')
  const off = new RolloutPins({ max: 0 })
  off.remember(rev('x'), 'i', pin('x'))
  t.equal(off.get(rev('x'), 'i'), undefined, 'max 0: no memory')
})

t.test('concurrent reviews of one unknown revision share one cluster read; its answer is kept', async t => {
  let calls = 0
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  const reader: AdmittedPinsReader = async () => { calls++; await gate; return ['not json', annotation('one')] }
  const pins = new RolloutPins({ max: 100, reader })
  const loads = [pins.load(rev('a'), AbortSignal.timeout(5000)), pins.load(rev('a'), AbortSignal.timeout(5000))]
  release()
  t.same(await Promise.all(loads), ['cluster', 'cluster'])
  t.equal(calls, 1, 'one request')
  t.same(pins.get(rev('a'), 'ghcr.io/acme/web:latest'), { to: 'ghcr.io/acme/web:one', verified: true, digest: `sha256:${'b'.repeat(64)}` })
  t.equal(pins.has(rev('a')), true, 'known: no further request for this revision')
})

t.test('no pod yet: the revision is known to have none; API server down: reported, not marked', async t => {
  const failures: unknown[] = []
  let answer: 'none' | 'fail' = 'none'
  const pins = new RolloutPins({
    max: 100,
    reader: async () => { if (answer === 'fail') throw new Error('connect ECONNREFUSED'); return [] },
    onUnreachable: (err) => failures.push(err),
  })
  t.equal(await pins.load(rev('a'), AbortSignal.timeout(5000)), 'first')
  t.equal(pins.has(rev('a')), true)
  answer = 'fail'
  t.equal(await pins.load(rev('b'), AbortSignal.timeout(5000)), 'registry')
  t.equal(pins.has(rev('b')), false)
  t.equal(failures.length, 1)
  t.equal(await new RolloutPins({ max: 10 }).load(rev('c'), AbortSignal.timeout(5000)), 'first', 'standalone: memory only')
})

t.test('a pins annotation cannot move a rollout to another repository', async t => {
  t.same([...parsePinsAnnotation(annotation('one')).keys()], ['ghcr.io/acme/web:latest'])
  t.same(parsePinsAnnotation(annotation('x', 'ghcr.io/acme/web:latest', 'ghcr.io/evil/web:x')).size, 0, 'another repository')
  t.same(parsePinsAnnotation(annotation('x', 'ghcr.io/acme/web:latest', 'evil.io/acme/web:x')).size, 0, 'another registry')
  t.same(parsePinsAnnotation(annotation('x', 'ghcr.io/acme/web:latest', 'ghcr.io/acme/web:latest')).size, 0, 'not a pin')
  for (const bad of ['', 'null', '[]', '{"a":1}', '{"a":{"image":1,"pin":"x"}}', '{"a":{"image":"ghcr.io/acme/web","pin":"::"}}']) {
    t.same(parsePinsAnnotation(bad).size, 0, `ignored: ${bad}`)
  }
  const noDigest = parsePinsAnnotation(JSON.stringify({ a: { image: 'ghcr.io/acme/web', pin: 'ghcr.io/acme/web:abc', digest: 'md5:x' } }))
  t.same(noDigest.get('ghcr.io/acme/web'), { to: 'ghcr.io/acme/web:abc', verified: true }, 'a malformed digest is dropped')
})

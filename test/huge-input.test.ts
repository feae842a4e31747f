// Issue 11, items 2, 5 and 9: huge pods stay linear and give the event loop back, their distinct
// images are capped; SHA-tag index building has a budget; many uncached images add no listener
// pile-up. Through the real HTTPS server and the real registry where the defect showed there.
import t, { type Test } from 'tap'
import fastJsonPatch from 'fast-json-patch'
import { createMutator, draftOf, podPatch, type MutationInput, type MutationStep } from '../src/mutate/mutator.js'
import { buildSteps } from '../src/app.js'
import { testHandler } from './support/handler.js'
import { createSecretInjectionStep } from '../src/mutate/inject-secrets.js'
import { createPinningStep } from '../src/mutate/pin-images.js'
import { RolloutPins } from '../src/cache/rollout-pins.js'
import { ImmutableCache } from '../src/cache/immutable-cache.js'
import { createCheckStep } from '../src/mutate/check-images.js'
import { TagCache, type CacheEvent } from '../src/cache/tag-cache.js'
import { createPinningStack, tagCacheOptions, type PinningStack } from '../src/pinning.js'
import { parseConfig } from '../src/policy/config.js'
import { tryParseImageReference } from '../src/reference/parse.js'
import type { Pod } from '../src/mutate/pod.js'
import { admissionReview, patchProjection, podWithImages } from './support/pods.js'
import { mutatePod, startPullpin, type RunningPullpin } from './support/pullpin.js'
import { gitSha, startPinningEnv, type PinningEnv } from './support/pinning-env.js'
import { until } from './support/until.js'

let env: PinningEnv
t.before(async () => { env = await startPinningEnv() })
t.teardown(() => env.stop())

const podWith = podWithImages

// A generous registry timeout: the machine is shared, and these tests count requests, not time.
const TIMEOUT_MS = 5000

async function pullpin (t: Test, extra = '', top = ''): Promise<RunningPullpin> {
  const p = await startPullpin(env.configYaml(extra, top, TIMEOUT_MS))
  t.teardown(() => p.close())
  return p
}

const review = mutatePod

const input = (pod: Pod): MutationInput => ({
  operation: 'CREATE',
  namespace: 'team-a',
  mode: 'enforce',
  dryRun: false,
  object: pod,
  deadline: { signal: new AbortController().signal, ms: Infinity, remainingMs: () => Infinity },
})

/** The steps src/app.ts builds, over a cache whose registry is never reached (no image is allowed to be looked up). */
function offlineSteps () {
  const config = parseConfig(`
pullSecrets:
  - { name: a, registries: ["*.example.com", ghcr.io] }
  - { name: b, registries: [docker.io] }
  - { name: c, registries: ["r.example.com/team"] }
registry: { hosts: [none.invalid] }
pinning: { enabled: true }
`)
  const unreachable = { headManifest: () => Promise.reject(new Error('no I/O expected')), listTags: () => Promise.reject(new Error('no I/O expected')) }
  const cache = new TagCache(tagCacheOptions(config, unreachable))
  const immutable = new ImmutableCache({ registry: { getManifest: () => Promise.reject(new Error('no I/O expected')), getConfig: () => Promise.reject(new Error('no I/O expected')) }, maxEntries: 10 })
  return [
    createSecretInjectionStep(config.pullSecrets),
    createPinningStep({ config: config.pinning, registry: config.registry, cache, rolloutPins: new RolloutPins({ max: 10 }) }),
    createCheckStep({ checks: config.checks, registry: config.registry, pullSecrets: config.pullSecrets, tags: cache, immutable }),
  ]
}

t.test('each distinct image is parsed once per review, shared by secret selection and pinning', async t => {
  const parsed = new Map<string, number>()
  const mutate = createMutator(offlineSteps(), {
    parse: (image) => { parsed.set(image, (parsed.get(image) ?? 0) + 1); return tryParseImageReference(image) },
  })
  const images = ['ghcr.io/acme/web:main', 'nginx', 'UPPER/case:x', 'bad image', 'r.example.com/team/app:1']
  const result = await mutate(input(podWith([...images, ...images, ...images])))
  t.same([...parsed.entries()].sort(), images.map(i => [i, 1]).sort(), 'one parse per distinct image')
  t.same((result.pod.spec!.imagePullSecrets ?? []).map(s => s.name), ['a', 'b', 'c'])
  t.equal(result.findings.filter(f => f.image === 'bad image' && f.reason === 'ReferenceInvalid').length, 3, 'the invalid image still warns per container')
  t.equal(result.warnings.filter(w => w.includes('invalid image reference')).length, 3)
})

t.test('a huge pod gives the event loop back while it is reviewed; a small one does not', async t => {
  const mutate = createMutator(offlineSteps())
  let turned = false
  setImmediate(() => { turned = true })
  await mutate(input(podWith(['nginx', 'bad image'])))
  t.notOk(turned, 'small pod: answered within the event-loop turn it started in')
  const images = Array.from({ length: 20_000 }, (_, i) => i % 2 === 0 ? `bad image ${i}` : `ghcr.io/acme/app-${i}:main`)
  let turns = 0
  let answered = false
  const tick = (): void => { if (!answered) { turns++; setImmediate(tick) } }
  setImmediate(tick)
  const big = await mutate(input(podWith(images)))
  answered = true
  t.ok(turns > 1, `other work ran ${turns} times during the review`)
  t.equal(big.warnings.filter(w => w.includes('invalid image reference')).length, 10_000, 'every invalid image still warns')
  t.equal(big.findings.length, 10_000)
  t.same((big.pod.spec!.imagePullSecrets ?? []).map(s => s.name), ['a'])
})

t.test('the patch of a huge pod, built container by container in slices, is the diff of the projection', async t => {
  for (const n of [7, 5000]) {
    const pod = podWith(Array.from({ length: n }, (_, i) => `ghcr.io/acme/app-${i % 300}:main`))
    const spec = pod.spec!
    spec.initContainers = [{ name: 'init', image: 'busybox' }, { name: 'no-image' }]
    ;(spec as Record<string, unknown>).ephemeralContainers = ['not an object', null, { name: 'e', image: 'debug:1' }]
    delete pod.metadata!.annotations
    const draft = draftOf(pod)
    const d = draft.spec!
    for (let i = 0; i < n; i += 3) d.containers![i]!.image = `pinned-${i}@sha256:${'a'.repeat(64)}`
    d.initContainers![0]!.image = 'busybox@sha256:' + 'b'.repeat(64)
    d.initContainers![1]!.image = 'added'
    delete (d.ephemeralContainers![2] as Record<string, unknown>).image
    d.imagePullSecrets = [{ name: 'a' }]
    draft.metadata!.annotations = { 'pullpin.io/pins': '{}' }
    // That the slices give the event loop back is held by the tests around this one; the slices
    // are cut by time, so whether 5,000 containers need more than one depends on the machine.
    t.same(await podPatch(pod, draft), fastJsonPatch.compare(patchProjection(pod) as object, patchProjection(draft) as object), `${n} containers: same operations, same order`)
  }
})

t.test('a small review that arrives while a huge pod\'s patch and response are built is answered first', async t => {
  // The real steps (secret injection, pinning from the registry's cache); the huge pod pins all
  // its 20,000 containers, so its patch and response are large.
  const sha = gitSha('huge-answer')
  await env.registry.push({ seed: 'huge-answer' }, 'acme/huge-answer', ['latest', sha])
  const image = `${env.host}/acme/huge-answer:latest`
  const config = env.config()
  const credentials = await env.credentialStore()
  const stack = await createPinningStack({ config, credentials })
  t.teardown(() => stack.close())
  let probe: (() => void) | undefined
  // Runs after the real steps: from here on the huge review only diffs and serializes.
  const last: MutationStep = { name: 'probe', operations: ['CREATE'], run: () => { probe?.(); return Promise.resolve() } }
  const { handle } = testHandler(env.configYaml(), { steps: [...buildSteps(config, stack), last], deadlineMs: 60_000 })
  const small = admissionReview(podWith([image]))
  const warm = await handle(small)
  t.match(Buffer.from(warm.response.patch!, 'base64').toString(), sha, 'the image pins (and is cached now)')

  const order: string[] = []
  let smallAnswer: Promise<unknown> | undefined
  // The small review arrives two turns after the steps ended: inside the diff and serialization.
  probe = () => { probe = undefined; setImmediate(() => setImmediate(() => { smallAnswer = handle(small).then(() => { order.push('small') }) })) }
  const big = await handle(admissionReview(podWith(Array.from({ length: 20_000 }, () => image))))
  order.push('big')
  await until('the small review was sent', () => smallAnswer !== undefined)
  await smallAnswer
  t.same(order, ['small', 'big'])
  const ops = JSON.parse(Buffer.from(big.response.patch!, 'base64').toString()) as Array<{ path: string, value: string }>
  t.equal(ops.filter(op => op.path.endsWith('/image') && op.value.includes(sha)).length, 20_000, 'every container pinned')
})

t.test('limits.maxImagesPerReview: over it the pod is admitted unchanged with one warning, or denied without failOpen', async t => {
  const images = [1, 2, 3, 4].map(n => `${env.host}/acme/limit:${n}`)
  const open = await pullpin(t, '', 'limits: { maxImagesPerReview: 3 }')
  const { response } = await review(open, podWith([...images, 'nginx:1']))
  t.equal(response.allowed, true)
  t.equal(response.patch, undefined, 'unchanged')
  t.same(response.warnings, ['pullpin: pod has more than 3 distinct images (limits.maxImagesPerReview); pod admitted unchanged'])
  const atLimit = await review(open, podWith(images.slice(0, 3)))
  t.not(atLimit.response.patch, undefined, 'at the limit the pod is still mutated')
  const closed = await pullpin(t, '', 'failOpen: false\nlimits: { maxImagesPerReview: 3 }')
  const denied = (await closed.post('/mutate', admissionReview(podWith(images)))).json.response
  t.equal(denied.allowed, false)
  t.match(denied.status.message, /more than 3 distinct images/)
})

t.test('50 uncached images: no process warning (no abort listener per image on one signal)', async t => {
  await env.registry.push({ seed: 'many-1' }, 'acme/many', ['latest', gitSha('many-1')])
  const tags = Array.from({ length: 50 }, (_, i) => `v${i}`)
  await env.registry.tag('acme/many', 'latest', tags)
  const warnings: Error[] = []
  const onWarning = (w: Error): void => { warnings.push(w) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  const p = await pullpin(t)
  env.proxy.resetCounts()
  await review(p, podWith(tags.map(tag => `${env.host}/acme/many:${tag}`)))
  // Every image was looked up (on a loaded machine some HEADs land after the review's deadline).
  const looked = () => tags.filter(tag => env.proxy.count(`HEAD /v2/acme/many/manifests/${tag}`) > 0).length
  await until('a HEAD of every tag', () => looked() === 50, 30_000)
  // A warning is emitted on process.nextTick: give it the chance.
  await new Promise(resolve => setImmediate(resolve))
  t.same(warnings.map(w => `${w.name}: ${w.message}`), [])
})

/**
 * `acme/NAME`: `latest` on a build whose one SHA tag (`target`) the registry lists last, after up
 * to `count` SHA tags of another build (cheap: one manifest, many tags); and a pinning stack for it.
 */
async function budgetRepository (t: Test, name: string, count: number) {
  // The registry lists tags in lexical order: the target comes last.
  const target = `ffff${gitSha(`${name}-target`).slice(4)}`
  const digest = await env.registry.push({ seed: `${name}-target` }, `acme/${name}`, ['latest'])
  await env.registry.push({ seed: `${name}-other` }, `acme/${name}`, ['other'])
  const others = Array.from({ length: count }, (_, i) => gitSha(`${name}-${i}`)).filter(x => x < target)
  await env.registry.tag(`acme/${name}`, 'other', others)
  await env.registry.tag(`acme/${name}`, 'latest', [target])
  const credentials = await env.credentialStore()
  const pinning = parseConfig(env.configYaml('', '', TIMEOUT_MS))
  const stack: PinningStack = await createPinningStack({ config: pinning, credentials })
  t.teardown(() => stack.close())
  return { target, digest, others, pinning, stack }
}

t.test('index budget: per repository build and per review, counted, warned', async t => {
  const { target, digest, others, pinning, stack } = await budgetRepository(t, 'budget', 40)
  const events: CacheEvent[] = []
  const cache = new TagCache({ ...tagCacheOptions(pinning, stack.client, e => events.push(e)), indexHeadsPerRepository: 10, tagListMinIntervalMs: 0 })
  const ref = { registry: env.host, repository: 'acme/budget' }
  env.proxy.resetCounts()
  const headCount = () => [...env.proxy.counts()].filter(([k]) => k.startsWith('HEAD /v2/acme/budget/manifests/')).reduce((n, [, c]) => n + c, 0)
  const budget = { remaining: 1000, incomplete: new Set<string>() }
  t.same(await cache.shaTagsFor(ref, digest, undefined, budget), [], 'the target was past the budget')
  t.equal(headCount(), 10, 'one build HEADs at most indexHeadsPerRepository tags')
  t.same([...budget.incomplete], [`${env.host}/acme/budget`])
  t.equal(budget.remaining, 990)
  t.ok(events.some(e => e.kind === 'index' && e.result === 'budget'), 'counted')
  // The next builds go on where this one stopped: the index converges, each build bounded.
  for (let i = 0; i < 5 && (await cache.shaTagsFor(ref, digest)).length === 0; i++);
  t.same(await cache.shaTagsFor(ref, digest), [target])
  t.equal(headCount(), others.length + 1, 'no tag HEADed twice')

  // Per review: one review's budget is shared by every repository it builds.
  const small = { remaining: 3, incomplete: new Set<string>() }
  const fresh = new TagCache({ ...tagCacheOptions(pinning, stack.client), tagListMinIntervalMs: 0 })
  env.proxy.resetCounts()
  await fresh.shaTagsFor(ref, digest, undefined, small)
  t.equal(headCount(), 3)
  t.equal(small.incomplete.size, 1)
})

t.test('a review out of index budget neither lists the tags nor holds back the next review; a found digest is not "incomplete"', async t => {
  const { target, digest, pinning, stack } = await budgetRepository(t, 'budget2', 12)
  // The default minimum interval between tag lists (10 s): what a busy cluster runs with.
  const cache = new TagCache({ ...tagCacheOptions(pinning, stack.client), tagListMinIntervalMs: 10_000 })
  const ref = { registry: env.host, repository: 'acme/budget2' }
  env.proxy.resetCounts()
  const spent = { remaining: 0, incomplete: new Set<string>() }
  t.same(await cache.shaTagsFor(ref, digest, undefined, spent), [], 'no budget: nothing found')
  t.equal(env.proxy.count('GET /v2/acme/budget2/tags/list'), 0, 'and the tags were not even listed')
  t.same([...spent.incomplete], [`${env.host}/acme/budget2`], 'the review is told')
  const partial = { remaining: 4, incomplete: new Set<string>() }
  t.same(await cache.shaTagsFor(ref, digest, undefined, partial), [], 'a small budget: not found yet')
  // The next review, within the 10 s: it goes on with the tags not yet checked.
  const next = { remaining: 1000, incomplete: new Set<string>() }
  t.same(await cache.shaTagsFor(ref, digest, undefined, next), [target], 'the next review is not held back by the partial index')
  t.same([...next.incomplete], [], 'found: nothing to warn about')
})

t.test('index budget end to end: the pod gets a warning and the metric counts it', async t => {
  const sha = gitSha('budget-e2e')
  await env.registry.push({ seed: 'budget-e2e' }, 'acme/budget2', ['latest', sha])
  await env.registry.push({ seed: 'budget-e2e-other' }, 'acme/budget2', ['old'])
  await env.registry.tag('acme/budget2', 'old', Array.from({ length: 30 }, (_, i) => gitSha(`budget2-${i}`)))
  // This test is about the HEAD budget: a lookup budget a loaded machine cannot run out of (the
  // revision lookup reads the manifest and config before the index is asked), and no pull-access
  // probe (its HEAD of the tag's digest would count as an index HEAD here).
  const p = await startPullpin(env.configYaml('', 'limits: { indexHeadsPerRepository: 5, indexHeadsPerReview: 5 }\nchecks: { pullAccess: off }', TIMEOUT_MS, '  lookupBudgetMs: 8000'))
  t.teardown(() => p.close())
  env.proxy.resetCounts()
  const { response } = await review(p, podWith([`${env.host}/acme/budget2:latest`]))
  const heads = [...env.proxy.counts()].filter(([k]) => k.startsWith('HEAD /v2/acme/budget2/manifests/') && !k.endsWith('/latest')).reduce((n, [, c]) => n + c, 0)
  t.ok(heads <= 5, `${heads} index HEADs`)
  t.match(response.warnings.join('\n'), /SHA-tag index .*acme\/budget2.* budget/)
  t.match((await p.get('/metrics')).text, /pullpin_tag_cache_lookups_total\{kind="index",result="budget"\} 1/)
})

// The API server refuses an object whose annotations add up to more than 256 KiB (keys and values,
// apimachinery ValidateAnnotationsSize). A pod pinned in thousands of containers must not be pushed
// over it by pullpin's own record, or pullpin would have made the pod impossible to create.
t.test('pins of thousands of containers never push the pod\'s annotations over the API server\'s 256 KiB', async t => {
  const sha = gitSha('annotation-budget')
  await env.registry.push({ seed: 'annotation-budget' }, 'acme/annotation-budget', ['latest', sha])
  const image = `${env.host}/acme/annotation-budget:latest`
  const p = await pullpin(t, '', 'limits: { maxImagesPerReview: 10000 }')
  const warm = await review(p, podWith([image]))
  t.equal(warm.result.spec!.containers![0]!.image, `${env.host}/acme/annotation-budget:${sha}`, 'pinned (and cached)')
  t.ok(warm.result.metadata!.annotations!['pullpin.io/pins'], 'a small pod records what it pinned')
  const { response, result } = await review(p, podWith(Array.from({ length: 6000 }, () => image)))
  t.equal(response.allowed, true)
  t.equal(result.spec!.containers!.filter(c => c.image === `${env.host}/acme/annotation-budget:${sha}`).length, 6000, 'every container pinned')
  const annotations = result.metadata!.annotations ?? {}
  const size = Object.entries(annotations).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0)
  t.ok(size <= 256 * 1024, `annotations ${size} bytes, within the API server's limit`)
  t.equal(annotations['pullpin.io/pins'], undefined, 'the record is left out')
  t.same(response.warnings.filter((w: string) => w.includes('not written')).length, 1)
  t.match(response.warnings, [/pullpin\.io\/pins not written: .*256 KiB/], 'and the pod is told why')
})

t.test('a listed SHA tag whose manifest is gone is not HEADed on every refresh, only after negativeTtlMs', async t => {
  const { target, digest, pinning, stack } = await budgetRepository(t, 'budget3', 6)
  const gone = `0000${gitSha('budget3-gone').slice(4)}`
  await env.registry.tag('acme/budget3', 'other', [gone])
  // The registry lists the tag but answers 404 for it (deleted manifest, eventual consistency).
  env.proxy.fault = (r) => r.method === 'HEAD' && r.path.endsWith(`/manifests/${gone}`) ? { action: 'status', status: 404, body: { errors: [{ code: 'MANIFEST_UNKNOWN' }] } } : undefined
  t.teardown(() => { env.proxy.fault = undefined })
  let now = 1_000_000
  const cache = new TagCache({ ...tagCacheOptions(pinning, stack.client), tagListMinIntervalMs: 0, negativeTtlMs: 10_000, now: () => now })
  const ref = { registry: env.host, repository: 'acme/budget3' }
  env.proxy.resetCounts()
  t.same(await cache.shaTagsFor(ref, digest), [target])
  const other = `sha256:${'0'.repeat(64)}`
  for (let i = 0; i < 3; i++) t.same(await cache.shaTagsFor(ref, other), [], 'an unknown digest refreshes the index')
  t.ok(env.proxy.count('GET /v2/acme/budget3/tags/list') >= 4, 'the tag list was read on every refresh')
  t.equal(env.proxy.count(`HEAD /v2/acme/budget3/manifests/${gone}`), 1, 'the missing tag was HEADed once')
  now += 10_000
  await cache.shaTagsFor(ref, other)
  t.equal(env.proxy.count(`HEAD /v2/acme/budget3/manifests/${gone}`), 2, 'and again once "not found" is as old as negativeTtlMs')
})

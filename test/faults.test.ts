// Faults between pullpin and the real registry (Debian docker-registry behind the fault proxy of
// test/support/registry-proxy.ts): the connection dropped, an answer slower than the deadline, a
// response cut in the middle, 429, 500, a garbage body, a digest header that does not match the
// content. pullpin runs with the strictest settings (failOpen: false, checks.exists: deny) and
// for every fault: the pod is admitted (never wrongly denied), with its pull secret, within the
// pinning deadline, and the fault shows as a warning on the pod and in the metrics.
import t from 'tap'
import { admissionReview, applyResponsePatch, podFromWorkload } from './support/pods.js'
import { startPullpin, type RunningPullpin } from './support/pullpin.js'
import { gitSha, startPinningEnv, type PinningEnv } from './support/pinning-env.js'
import type { ProxyFaultHook } from './support/registry-proxy.js'
import { until } from './support/until.js'
import type { Pod } from '../src/mutate/pod.js'

// The deadline is long enough that every fault which is not about time (a drop, a reset, a 500…)
// is seen and reported as itself within it, even on a loaded CI machine: a cold TLS connection,
// a retry and the tag list all fit. The faults that are about time outlast it by more than the
// slack: a registry request times out only after DEADLINE_MS + SLACK_MS, so an answer within
// that bound proves the deadline (not the request timeout) ended the wait.
const DEADLINE_MS = 1500
/** Scheduling slack on a loaded 2-core machine: the deadline itself is a timer in pullpin. */
const SLACK_MS = 700
const REQUEST_TIMEOUT_MS = 3000
const SLOW_MS = 3500

let env: PinningEnv
let p: RunningPullpin

/** A pod from real kubectl output whose one container uses `image`. */
function podWith (image: string): Pod {
  const pod = podFromWorkload('deployment-web', { namespace: 'team-a' })
  pod.spec!.containers = [{ ...pod.spec!.containers![0]!, name: 'app', image }]
  return pod
}

/** Sum of a metric's samples whose labels include all of `labels`. */
function metric (text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue
    sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return sum
}

const metricsText = async (): Promise<string> => (await p.get('/metrics')).text

interface Review { ms: number; response: any; result: Pod }

async function review (image: string): Promise<Review> {
  const pod = podWith(image)
  const started = Date.now()
  const res = await p.post('/mutate', admissionReview(pod))
  const ms = Date.now() - started
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${res.text}`)
  return { ms, response: res.json.response, result: applyResponsePatch(pod, res.json.response) as Pod }
}

const REPOS = ['drop', 'slow', 'reset-head', 'reset-tags', 'throttled', 'throttled-long', 'broken', 'garbage-tags', 'lying-head', 'lying-get', 'stale'] as const
const sha = (repo: string): string => gitSha(`fault-${repo}`)
const image = (repo: string, tag = 'latest'): string => `${env.host}/fault/${repo}:${tag}`
/** The fault applies to requests for one repository only; everything else passes. */
const only = (repo: string, hook: ProxyFaultHook): ProxyFaultHook => (r) => r.pathname.startsWith(`/v2/fault/${repo}/`) ? hook(r) : undefined

t.before(async () => {
  env = await startPinningEnv()
  await Promise.all(REPOS.map(repo => env.registry.push({ seed: `fault-${repo}` }, `fault/${repo}`, ['latest', sha(repo)])))
  // activeSeconds 0: a tag past its 1 s TTL must stay expired (the stale-if-error case), not be
  // kept fresh by background refreshes (test/tag-refresh.test.ts covers those).
  p = await startPullpin(env.configYaml('', 'failOpen: false\nchecks: { exists: deny }', REQUEST_TIMEOUT_MS, `  lookupBudgetMs: ${DEADLINE_MS}\n  cache: { ttlSeconds: 1, staleWhileRevalidateSeconds: 0, activeSeconds: 0 }`))
  // First contact (GET /v2/, the auth scheme) happens here, before any fault.
  const warm = await review(image('stale'))
  if (warm.result.spec!.containers![0]!.image !== image('stale', sha('stale'))) throw new Error(`warm-up did not pin: ${JSON.stringify(warm.response)}`)
})
t.teardown(async () => {
  env.proxy.fault = undefined
  await p?.close()
  await env?.stop()
})
t.afterEach(() => { env.proxy.fault = undefined })

interface FaultCase {
  readonly name: string
  readonly repo: typeof REPOS[number]
  readonly fault: ProxyFaultHook
  /** The warning the pod gets. */
  readonly warning: RegExp
  /** pullpin_images_unpinned_total reason that must go up by one. */
  readonly reason: string
  /** A registry metric that must go up: pullpin_registry_requests_total status, or a tag cache lookup result. */
  readonly registry?: { op: string; status: string }
  readonly cache?: { kind: string; result: string }
  /** Run after the checks, fault removed: wait until the fault has no effect left on later cases. */
  readonly settle?: () => Promise<unknown>
}

const CASES: FaultCase[] = [
  {
    name: 'connection dropped without an answer',
    repo: 'drop',
    fault: only('drop', () => ({ action: 'drop' })),
    warning: /fault\/drop:latest not pinned: registry unavailable$/,
    reason: 'registry-error',
    registry: { op: 'manifest', status: 'error' },
  },
  {
    name: 'an answer slower than the deadline',
    repo: 'slow',
    fault: only('slow', () => ({ action: 'delay', ms: SLOW_MS })),
    warning: new RegExp(`fault/slow:latest not pinned: registry\\.lookupBudgetMs \\(${DEADLINE_MS} ms\\) ran out$`),
    reason: 'deadline',
    // The shared lookup is not cancelled by the pod's deadline: it ends at the per-request timeout.
    registry: { op: 'manifest', status: 'error' },
  },
  {
    name: 'manifest HEAD cut inside the status line',
    repo: 'reset-head',
    fault: only('reset-head', (r) => r.method === 'HEAD' ? { action: 'reset' } : undefined),
    warning: /fault\/reset-head:latest not pinned: registry unavailable$/,
    reason: 'registry-error',
    registry: { op: 'manifest', status: 'error' },
  },
  {
    name: 'tag list cut in the middle of its body',
    repo: 'reset-tags',
    fault: only('reset-tags', (r) => r.pathname.endsWith('/tags/list') ? { action: 'reset', afterBytes: 10 } : undefined),
    warning: /fault\/reset-tags:latest not pinned: registry unavailable$/,
    reason: 'registry-error',
    registry: { op: 'tags', status: 'error' },
  },
  {
    name: '429 Too Many Requests (retried, then given up)',
    repo: 'throttled',
    fault: only('throttled', () => ({ action: 'status', status: 429, headers: { 'retry-after': '0' } })),
    warning: /fault\/throttled:latest not pinned: registry unavailable$/,
    reason: 'registry-error',
    registry: { op: 'manifest', status: '429' },
  },
  {
    name: '429 asking to come back after the deadline',
    repo: 'throttled-long',
    fault: only('throttled-long', () => ({ action: 'status', status: 429, headers: { 'retry-after': '5' } })),
    warning: new RegExp(`fault/throttled-long:latest not pinned: registry\\.lookupBudgetMs \\(${DEADLINE_MS} ms\\) ran out$`),
    reason: 'deadline',
    registry: { op: 'manifest', status: '429' },
    // A 429 pauses the whole registry for its Retry-After (src/registry/transport.ts): the shared
    // lookup's own retry reaching the registry is the sign that the pause is over.
    settle: () => until('the throttled lookup retried', () => env.proxy.count('HEAD /v2/fault/throttled-long/manifests/latest') >= 2, 15_000),
  },
  {
    name: '500 Internal Server Error',
    repo: 'broken',
    fault: only('broken', () => ({ action: 'status', status: 500 })),
    warning: /fault\/broken:latest not pinned: registry unavailable$/,
    reason: 'registry-error',
    registry: { op: 'manifest', status: '500' },
  },
  {
    name: 'garbage instead of the tag list',
    repo: 'garbage-tags',
    fault: only('garbage-tags', (r) => r.pathname.endsWith('/tags/list') ? { action: 'garbage' } : undefined),
    warning: /fault\/garbage-tags:latest not pinned: registry sent a bad response$/,
    reason: 'registry-error',
    cache: { kind: 'index', result: 'error' },
  },
  {
    name: 'a HEAD whose digest header names another manifest',
    repo: 'lying-head',
    fault: only('lying-head', (r) => r.method === 'HEAD' && r.pathname.endsWith('/manifests/latest') ? { action: 'wrong-digest' } : undefined),
    // The SHA tags' digests come from their own HEADs: none matches, so nothing wrong is pinned.
    warning: /fault\/lying-head:latest not pinned: no SHA tag has its digest sha256:/,
    reason: 'no-sha-tag',
  },
  {
    name: 'a manifest whose bytes do not hash to its digest header',
    repo: 'lying-get',
    // HEAD answers without Docker-Content-Digest, so pullpin GETs the manifest and hashes it.
    fault: only('lying-get', (r) => r.pathname.endsWith('/manifests/latest')
      ? r.method === 'HEAD' ? { action: 'status', status: 200, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, body: '' } : { action: 'garbage', body: '{"schemaVersion":2}' }
      : undefined),
    warning: /fault\/lying-get:latest not pinned: registry sent a digest that does not match the manifest$/,
    reason: 'registry-error',
  },
]

for (const c of CASES) {
  t.test(c.name, async t => {
    const before = await metricsText()
    env.proxy.fault = c.fault
    const r = await review(image(c.repo))
    t.equal(r.response.allowed, true, 'admitted: a registry fault never denies a pod')
    t.ok(r.ms < DEADLINE_MS + SLACK_MS, `answered in ${r.ms} ms (deadline ${DEADLINE_MS} ms)`)
    t.equal(r.result.spec!.containers![0]!.image, image(c.repo), 'left as written')
    t.same(r.result.spec!.imagePullSecrets, [{ name: 'local-registry' }], 'the pull secret is still injected')
    t.match(r.response.warnings, [c.warning])
    t.ok(r.response.warnings.every((w: string) => w.length < 120), 'warnings under 120 characters')
    t.ok(env.proxy.log.some(e => e.fault !== undefined && e.path.startsWith(`/v2/fault/${c.repo}/`)), 'the fault was really injected')
    // Metrics: the unpinned reason at once; registry request counters once the (shared, uncancelled)
    // lookup has ended, which for a delay is the per-request timeout.
    let after = await metricsText()
    t.equal(metric(after, 'pullpin_images_unpinned_total', { reason: c.reason }) - metric(before, 'pullpin_images_unpinned_total', { reason: c.reason }), 1, `pullpin_images_unpinned_total{reason="${c.reason}"} +1`)
    if (c.registry !== undefined) {
      const labels = { registry: env.host, ...c.registry }
      for (let i = 0; i < 100 && metric(after, 'pullpin_registry_requests_total', labels) <= metric(before, 'pullpin_registry_requests_total', labels); i++) {
        await new Promise(resolve => setTimeout(resolve, 100))
        after = await metricsText()
      }
      t.ok(metric(after, 'pullpin_registry_requests_total', labels) > metric(before, 'pullpin_registry_requests_total', labels), `pullpin_registry_requests_total{op="${c.registry.op}",status="${c.registry.status}"} went up`)
    }
    if (c.cache !== undefined) {
      t.ok(metric(after, 'pullpin_tag_cache_lookups_total', c.cache) > metric(before, 'pullpin_tag_cache_lookups_total', c.cache), `pullpin_tag_cache_lookups_total{kind="${c.cache.kind}",result="${c.cache.result}"} went up`)
    }
    t.match(p.logs.text, new RegExp(`fault/${c.repo}`), 'logged with the details')
    env.proxy.fault = undefined
    await c.settle?.()
  })
}

t.test('a known tag and a failing registry: pinned from the last known digest, with a warning', async t => {
  // The warm-up pinned fault/stale; its cache entry is past its 1 s TTL now.
  await new Promise(resolve => setTimeout(resolve, 1100))
  const before = await metricsText()
  env.proxy.fault = only('stale', () => ({ action: 'status', status: 503 }))
  const r = await review(image('stale'))
  t.equal(r.response.allowed, true)
  t.ok(r.ms < DEADLINE_MS + SLACK_MS, `answered in ${r.ms} ms`)
  t.equal(r.result.spec!.containers![0]!.image, image('stale', sha('stale')))
  t.match(r.response.warnings, [/fault\/stale:latest pinned from the last known digest; the registry did not answer/])
  const after = await metricsText()
  t.equal(metric(after, 'pullpin_images_pinned_total', { source: 'stale' }) - metric(before, 'pullpin_images_pinned_total', { source: 'stale' }), 1)
  t.ok(metric(after, 'pullpin_tag_cache_lookups_total', { kind: 'tag', result: 'stale-error' }) > metric(before, 'pullpin_tag_cache_lookups_total', { kind: 'tag', result: 'stale-error' }))
  t.ok(metric(after, 'pullpin_registry_requests_total', { registry: env.host, op: 'manifest', status: '503' }) > metric(before, 'pullpin_registry_requests_total', { registry: env.host, op: 'manifest', status: '503' }))
})

t.test('every fault at once, on a pod with all of them: one answer within the deadline, one warning each', async t => {
  // Fresh images (new tags), so nothing is answered from the cache.
  const faults = new Map(CASES.map(c => [c.repo, c.fault]))
  env.proxy.fault = (r) => {
    const repo = /^\/v2\/fault\/([^/]+)\//.exec(r.pathname)?.[1]
    const hook = repo === undefined ? undefined : faults.get(repo as typeof REPOS[number])
    return hook?.({ ...r, pathname: r.pathname.replace(/\/manifests\/main$/, '/manifests/latest') })
  }
  await Promise.all(CASES.map(c => env.registry.tag(`fault/${c.repo}`, 'latest', ['main'])))
  const pod = podWith(image('drop', 'main'))
  pod.spec!.containers = CASES.map((c, i) => ({ ...pod.spec!.containers![0]!, name: `c${i}`, image: image(c.repo, 'main') }))
  const started = Date.now()
  const res = await p.post('/mutate', admissionReview(pod))
  const ms = Date.now() - started
  t.equal(res.status, 200)
  const response = res.json.response
  t.equal(response.allowed, true)
  t.ok(ms < DEADLINE_MS + SLACK_MS, `answered in ${ms} ms`)
  const result = applyResponsePatch(pod, response) as Pod
  t.same(result.spec!.containers!.map(c => c.image), CASES.map(c => image(c.repo, 'main')), 'every image left as written')
  t.same(result.spec!.imagePullSecrets, [{ name: 'local-registry' }])
  t.equal(response.warnings.length, CASES.length, 'one warning per faulty image')
})

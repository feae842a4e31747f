// The tag cache against the real registry (through the counting proxy): TTL, coalescing,
// negative caching, stale-while-revalidate, stale-if-error, the SHA-tag index and its refresh.
import t from 'tap'
import { TagCache, rankShaTags, type TagCacheOptions } from '../src/cache/tag-cache.js'
import { createPinningStack, type PinningStack } from '../src/pinning.js'
import { gitSha, startPinningEnv, type PinningEnv } from './support/pinning-env.js'
import { until } from './support/until.js'

const SHA_PATTERNS = [/^[0-9a-f]{40}$/, /^sha-[0-9a-f]{7,40}$/]
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms))
// TTL tests move a manual clock rather than sleeping: a push to the real registry can take longer
// than a short TTL on a loaded CI machine, and then 'still fresh' is not.
function manualClock () {
  let at = 1_000_000
  return { now: () => at, advance: (ms: number) => { at += ms } }
}

let env: PinningEnv
let stack: PinningStack
t.before(async () => {
  env = await startPinningEnv()
  const credentials = await env.credentialStore()
  stack = await createPinningStack({ config: env.config(), credentials })
})
t.teardown(async () => { await stack.close(); await env.stop() })

function cache (over: Partial<TagCacheOptions> = {}): TagCache {
  return new TagCache({
    registry: stack.client,
    shaTagPatterns: SHA_PATTERNS,
    ttlMs: 60_000,
    staleWhileRevalidateMs: 0,
    staleIfErrorMs: 60_000,
    negativeTtlMs: 10_000,
    maxEntries: 1000,
    maxRepositories: 100,
    tagListMinIntervalMs: 0,
    ...over,
  })
}
const ref = (repository: string) => ({ registry: env.host, repository })
const heads = (repo: string, tag: string) => env.proxy.count(`HEAD /v2/${repo}/manifests/${tag}`)

t.test('rankShaTags: full 40-hex first, then the longest sha- form, then lexical', async t => {
  const full = gitSha('x')
  t.same(rankShaTags(['sha-abc1234', `sha-${full.slice(0, 12)}`, full, 'sha-abc1233']), [full, `sha-${full.slice(0, 12)}`, 'sha-abc1233', 'sha-abc1234'])
})

t.test('miss then hit: one HEAD; the answer equals skopeo inspect', async t => {
  await env.registry.push({ seed: 'hit' }, 'hit', ['latest'])
  const c = cache()
  const first = await c.resolveTag(ref('hit'), 'latest')
  const second = await c.resolveTag(ref('hit'), 'latest')
  t.equal(first.digest, await env.registry.inspectDigest('hit', 'latest'))
  t.same(second, first)
  t.same(c.peekTag(ref('hit'), 'latest'), first, 'peek answers without I/O')
  t.equal(heads('hit', 'latest'), 1)
})

t.test('concurrent identical lookups share one HEAD', async t => {
  await env.registry.push({ seed: 'coalesce' }, 'coalesce', ['latest'])
  const c = cache()
  const results = await Promise.all(Array.from({ length: 500 }, () => c.resolveTag(ref('coalesce'), 'latest')))
  t.equal(new Set(results.map(r => r.digest)).size, 1)
  t.equal(heads('coalesce', 'latest'), 1)
})

t.test('not found is cached for the negative TTL', async t => {
  const clock = manualClock()
  const c = cache({ negativeTtlMs: 300, now: clock.now })
  await t.rejects(c.resolveTag(ref('nothere'), 'latest'), { code: 'PULLPIN_REGISTRY_NOT_FOUND' })
  clock.advance(299)
  await t.rejects(c.resolveTag(ref('nothere'), 'latest'), { code: 'PULLPIN_REGISTRY_NOT_FOUND' })
  t.equal(heads('nothere', 'latest'), 1)
  clock.advance(1)
  await t.rejects(c.resolveTag(ref('nothere'), 'latest'), { code: 'PULLPIN_REGISTRY_NOT_FOUND' })
  t.equal(heads('nothere', 'latest'), 2)
})

t.test('a moving tag: after the TTL the new digest is seen', async t => {
  const d1 = await env.registry.push({ seed: 'move-1' }, 'move', ['latest'])
  const clock = manualClock()
  const c = cache({ ttlMs: 200, now: clock.now })
  t.equal((await c.resolveTag(ref('move'), 'latest')).digest, d1)
  const d2 = await env.registry.push({ seed: 'move-2' }, 'move', ['latest'])
  clock.advance(199)
  t.equal((await c.resolveTag(ref('move'), 'latest')).digest, d1, 'still fresh')
  clock.advance(1)
  t.equal((await c.resolveTag(ref('move'), 'latest')).digest, d2)
})

t.test('stale-while-revalidate: the old digest at once, one refresh behind it', async t => {
  const d1 = await env.registry.push({ seed: 'swr-1' }, 'swr', ['latest'])
  const clock = manualClock()
  const c = cache({ ttlMs: 100, staleWhileRevalidateMs: 5000, now: clock.now })
  await c.resolveTag(ref('swr'), 'latest')
  const d2 = await env.registry.push({ seed: 'swr-2' }, 'swr', ['latest'])
  clock.advance(150)
  const before = heads('swr', 'latest')
  const served = await Promise.all([c.resolveTag(ref('swr'), 'latest'), c.resolveTag(ref('swr'), 'latest')])
  t.same(served.map(s => s.digest), [d1, d1], 'stale answers without waiting')
  await until('the background refresh', () => c.peekTag(ref('swr'), 'latest')?.digest === d2)
  await sleep(50)
  t.equal(heads('swr', 'latest'), before + 1, 'one background refresh')
  t.equal((await c.resolveTag(ref('swr'), 'latest')).digest, d2)
})

t.test('stale-if-error: a registry outage keeps serving the last digest, marked stale', async t => {
  const d1 = await env.registry.push({ seed: 'sie' }, 'sie', ['latest'])
  const clock = manualClock()
  const c = cache({ ttlMs: 50, staleIfErrorMs: 10_000, now: clock.now })
  await c.resolveTag(ref('sie'), 'latest')
  clock.advance(80)
  env.proxy.fault = (r) => r.path.includes('/sie/') ? { action: 'status', status: 503 } : undefined
  t.teardown(() => { env.proxy.fault = undefined })
  const r = await c.resolveTag(ref('sie'), 'latest')
  t.same(r, { digest: d1, mediaType: r.mediaType, stale: true })
  env.proxy.fault = undefined
  t.same((await c.resolveTag(ref('sie'), 'latest')).stale, false, 'fresh again once the registry is back')
})

t.test('the SHA-tag index: built once, SHA tags never HEADed again, refresh HEADs only new tags', async t => {
  const repo = 'indexed'
  const sha1 = gitSha('indexed-1')
  const d1 = await env.registry.push({ seed: 'indexed-1' }, repo, ['latest', sha1, `sha-${sha1.slice(0, 7)}`])
  const c = cache({ ttlMs: 0 })
  const tag = await c.resolveTag(ref(repo), 'latest')
  t.same(await c.shaTagsFor(ref(repo), tag.digest), [sha1, `sha-${sha1.slice(0, 7)}`])
  t.same(c.peekShaTags(ref(repo), d1), [sha1, `sha-${sha1.slice(0, 7)}`])
  t.equal(heads(repo, sha1), 1)
  // CI pushes a new commit and moves latest.
  const sha2 = gitSha('indexed-2')
  const d2 = await env.registry.push({ seed: 'indexed-2' }, repo, ['latest', sha2])
  t.equal((await c.resolveTag(ref(repo), 'latest')).digest, d2)
  t.same(await c.shaTagsFor(ref(repo), d2), [sha2], 'an unknown digest refreshes the tag list')
  t.equal(heads(repo, sha1), 1, 'known SHA tags are not HEADed again')
  t.equal(heads(repo, sha2), 1)
  t.equal(heads(repo, 'latest'), 2)
})

t.test('the tag list is refreshed at most once per interval', async t => {
  const repo = 'ratelimited'
  await env.registry.push({ seed: 'rl' }, repo, ['latest'])
  const c = cache({ tagListMinIntervalMs: 60_000 })
  t.same(await c.shaTagsFor(ref(repo), 'sha256:' + '0'.repeat(64)), [])
  t.same(await c.shaTagsFor(ref(repo), 'sha256:' + '1'.repeat(64)), [])
  t.equal(env.proxy.count(`GET /v2/${repo}/tags/list`), 1)
})

t.test('hundreds of SHA tags, paged by the proxy: index and a 10-tag refresh', async t => {
  const repo = 'many'
  const base = gitSha('many-0')
  await env.registry.push({ seed: 'many' }, repo, ['latest', base])
  const shas = Array.from({ length: 300 }, (_, i) => gitSha(`many-${i + 1}`))
  await env.registry.tag(repo, 'latest', shas)
  const c = cache()
  const digest = (await c.resolveTag(ref(repo), 'latest')).digest
  const tags = await c.shaTagsFor(ref(repo), digest)
  t.equal(tags.length, 301)
  t.ok(env.proxy.count(`GET /v2/${repo}/tags/list`) >= 1)
  env.proxy.resetCounts()
  const more = Array.from({ length: 10 }, (_, i) => gitSha(`more-${i}`))
  const d2 = await env.registry.push({ seed: 'many-2' }, repo, [more[0]!])
  await env.registry.tag(repo, more[0]!, more.slice(1))
  t.equal((await c.shaTagsFor(ref(repo), d2)).length, 10)
  const manifestHeads = [...env.proxy.counts()].filter(([k]) => k.startsWith(`HEAD /v2/${repo}/manifests/`)).reduce((n, [, v]) => n + v, 0)
  t.equal(manifestHeads, 10, 'the refresh HEADs exactly the 10 new tags')
  t.equal(c.stats().shaTags, 311)
})

t.test('a SHA tag deleted at the registry leaves the index', async t => {
  const repo = 'deleted'
  const keep = gitSha('keep')
  const gone = gitSha('gone')
  await env.registry.push({ seed: 'keep' }, repo, ['latest', keep])
  const dGone = await env.registry.push({ seed: 'gone' }, repo, [gone])
  const c = cache()
  t.same(await c.shaTagsFor(ref(repo), dGone), [gone])
  await env.registry.deleteManifest(repo, dGone)
  await c.warm(ref(repo))
  t.equal(c.peekShaTags(ref(repo), dGone), undefined)
})

t.test('LRU bounds', async t => {
  await env.registry.push({ seed: 'lru' }, 'lru', ['a', 'b', 'c'])
  const c = cache({ maxEntries: 2 })
  for (const tag of ['a', 'b', 'c']) await c.resolveTag(ref('lru'), tag)
  t.equal(c.stats().tags, 2)
  t.equal(c.peekTag(ref('lru'), 'a'), undefined, 'the least recently used entry went first')
})

t.test('a caller deadline does not cancel the shared lookup: it still fills the cache', async t => {
  await env.registry.push({ seed: 'slow' }, 'slow', ['latest'])
  env.proxy.fault = (r) => r.path.includes('/slow/manifests/latest') ? { action: 'delay', ms: 300 } : undefined
  t.teardown(() => { env.proxy.fault = undefined })
  const c = cache()
  await t.rejects(c.resolveTag(ref('slow'), 'latest', AbortSignal.timeout(50)))
  await until('the shared lookup to land', () => c.peekTag(ref('slow'), 'latest') !== undefined)
  t.pass('answer cached for the next pod')
})

t.test('one reference object looked up by many tags: each peek answers its own tag', async t => {
  const tags = Array.from({ length: 12 }, (_, i) => `t${i}`)
  for (let s = 0; s < 3; s++) await env.registry.push({ seed: `many-keys-${s}` }, 'many-keys', tags.filter((_, i) => i % 3 === s))
  const c = cache()
  const r = ref('many-keys')
  const digests = new Map<string, string>()
  for (const tag of tags) digests.set(tag, (await c.resolveTag(r, tag)).digest)
  t.equal(new Set(digests.values()).size, 3)
  // Twice round, more tags than the per-reference key memo holds: forgotten keys are made again.
  for (let round = 0; round < 2; round++) {
    for (const tag of tags) t.equal(c.peekTag(r, tag)?.digest, digests.get(tag), `${tag}, round ${round + 1}`)
  }
  t.equal(c.peekTag(r, 'absent'), undefined)
})

t.test('a SHA tag of another digest is not a SHA tag of this one (CI pushed latest before its SHA tag)', async t => {
  const repo = 'ci-race'
  const old = gitSha('ci-race-1')
  const d1 = await env.registry.push({ seed: 'ci-race-1' }, repo, ['latest', old])
  const c = cache({ ttlMs: 0 })
  t.same(await c.shaTagsFor(ref(repo), (await c.resolveTag(ref(repo), 'latest')).digest), [old], 'the index knows the old commit')
  const d2 = await env.registry.push({ seed: 'ci-race-2' }, repo, ['latest'])
  const latest = await c.resolveTag(ref(repo), 'latest')
  t.equal(latest.digest, d2)
  t.same(await c.shaTagsFor(ref(repo), d2), [], 'no SHA tag for the new digest, though one exists in the repository')
  t.same(c.peekShaTags(ref(repo), d2), undefined)
  t.same(c.peekShaTags(ref(repo), d1), [old], 'the old tag stays with its own digest')
  // The SHA tag arrives: the next lookup finds it.
  const fresh = gitSha('ci-race-2')
  await env.registry.push({ seed: 'ci-race-2' }, repo, [fresh])
  t.same(await c.shaTagsFor(ref(repo), d2), [fresh])
})

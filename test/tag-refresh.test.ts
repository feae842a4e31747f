// Background refreshes (registry.cache.activeSeconds, issue 15): a tag pods keep naming is
// refreshed near the end of its TTL, at a jittered moment, so pods never wait for the registry;
// a tag nobody named for activeSeconds costs the registry nothing. Real registry behind the
// counting proxy; a manual clock for the cache, refreshActive() called as the stack's timer would.
import t from 'tap'
import { TagCache, type TagCacheOptions } from '../src/cache/tag-cache.js'
import { createPinningStack, type PinningStack } from '../src/pinning.js'
import { gitSha, startPinningEnv, type PinningEnv } from './support/pinning-env.js'
import { until } from './support/until.js'

let env: PinningEnv
let stack: PinningStack
t.before(async () => {
  env = await startPinningEnv()
  const credentials = await env.credentialStore()
  stack = await createPinningStack({ config: env.config(), credentials })
})
t.teardown(async () => { await stack.close(); await env.stop() })

function setup (over: Partial<TagCacheOptions> = {}): { cache: TagCache, advance: (ms: number) => void } {
  let at = 1_000_000
  const cache = new TagCache({
    registry: stack.client,
    shaTagPatterns: [/^[0-9a-f]{40}$/],
    ttlMs: 60_000,
    staleWhileRevalidateMs: 0,
    staleIfErrorMs: 60_000,
    negativeTtlMs: 10_000,
    maxEntries: 1000,
    maxRepositories: 100,
    tagListMinIntervalMs: 0,
    activeMs: 600_000,
    random: () => 0.5,
    now: () => at,
    ...over,
  })
  return { cache, advance: (ms) => { at += ms } }
}
const heads = (repo: string, tag: string): number => env.proxy.count(`HEAD /v2/${repo}/manifests/${tag}`)

t.test('an active tag is refreshed before its TTL ends, and then no more once nobody names it', async t => {
  const sha = gitSha('refresh')
  await env.registry.push({ seed: 'refresh' }, 'refresh', ['latest', sha])
  const ref = { registry: env.host, repository: 'refresh' }
  const { cache, advance } = setup()
  await cache.resolveTag(ref, 'latest')
  await cache.resolveTag(ref, sha)
  t.equal(heads('refresh', 'latest'), 1)

  advance(50_000)
  t.equal(cache.refreshActive(), 0, 'not due yet (due at 90% of the TTL with this jitter)')
  advance(5_000)
  t.equal(cache.peekTag(ref, 'latest')?.digest !== undefined, true, 'a pod named it (the hot path counts)')
  t.equal(cache.refreshActive(), 1, 'due: one refresh, the SHA tag never')
  await until('the refresh reached the registry', () => heads('refresh', 'latest') === 2)
  t.equal(cache.refreshActive(), 0, 'not twice')
  t.equal(heads('refresh', sha), 1, 'SHA tags do not move: never refreshed')

  // CI moves latest; the next refresh brings it without any pod waiting.
  const moved = await env.registry.push({ seed: 'refresh-2' }, 'refresh', ['latest'])
  advance(54_000)
  t.equal(cache.refreshActive(), 1)
  await until('the second refresh', () => heads('refresh', 'latest') === 3)
  await until('the new digest', () => cache.peekTag(ref, 'latest')?.digest === moved)

  // Nobody names it for activeSeconds: no more refreshes.
  advance(600_000)
  t.equal(cache.refreshActive(), 0, 'inactive: left to expire')
  t.equal(heads('refresh', 'latest'), 3)
})

t.test('replicas refresh at different moments (jitter), and activeSeconds 0 turns it off', async t => {
  await env.registry.push({ seed: 'jitter' }, 'jitter', ['latest'])
  const ref = { registry: env.host, repository: 'jitter' }
  const early = setup({ random: () => 1 })
  const late = setup({ random: () => 0 })
  const off = setup({ activeMs: 0 })
  for (const r of [early, late, off]) await r.cache.resolveTag(ref, 'latest')
  for (const r of [early, late, off]) r.advance(50_000)
  t.equal(early.cache.refreshActive(), 1, 'the replica whose draw was high is due at 80% of the TTL')
  t.equal(late.cache.refreshActive(), 0, 'the other only at the TTL')
  for (const r of [late, off]) r.advance(10_000)
  t.equal(late.cache.refreshActive(), 1)
  t.equal(off.cache.refreshActive(), 0, 'activeMs 0: no background refresh')
  await until('both refreshes reached the registry', () => heads('jitter', 'latest') === 5)
})

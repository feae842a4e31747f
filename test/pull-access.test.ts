// The pull-access cache against the real registry (htpasswd auth): answers per credential set
// and repository, and its bound. A fetched pull-secret source (ECR, GCP, exec) gets a new
// password at every refresh, so every refresh is a new credential identity: the answers of the
// old ones must not pile up under a repository that is asked about on every review.
import t from 'tap'
import { PullAccessCache } from '../src/cache/pull-access.js'
import { RegistryClient } from '../src/registry/client.js'
import type { RegistryCredential } from '../src/registry/keyring.js'
import { startPinningEnv } from './support/pinning-env.js'

const env = await startPinningEnv()
t.teardown(() => env.stop())
await env.registry.push({ seed: 'pull-access-1' }, 'acme/app', ['v1'])
const [registry, ...path] = env.host.split('/')
const ref = { registry: registry!, repository: [...path, 'acme/app'].join('/') }

function cache (maxEntries: number): PullAccessCache {
  const clients: RegistryClient[] = []
  const c = new PullAccessCache({
    probeFor: (credentials) => {
      const client = new RegistryClient({
        isAllowed: () => true,
        isPrivateAllowed: () => true,
        hostOptions: () => ({ caPem: env.registry.caPem, timeoutMs: 10_000, retries: 0, maxConcurrency: 4, tokenRealmHosts: [] }),
        credentials: () => [...credentials],
      })
      clients.push(client)
      return client
    },
    ttlMs: 60_000,
    staleWhileRevalidateMs: 0,
    maxEntries,
  })
  t.teardown(async () => { c.close(); await Promise.all(clients.map(cl => cl.close())) })
  return c
}

const credential = (password: string): RegistryCredential => ({ username: env.registry.username!, password, source: 'rotating (pull)', key: env.host })

t.test('answers per credential set: the right password reads, a wrong one is denied, both kept', async t => {
  const c = cache(10)
  const good = [credential(env.registry.password!)]
  const bad = [credential('not-the-password')]
  t.same(await c.check(ref, 'v1', good), { access: 'ok' })
  t.match(await c.check(ref, 'v1', bad), { access: 'denied' })
  t.same(c.peek(ref, good), { access: 'ok' })
  t.match(c.peek(ref, bad), { access: 'denied' })
  t.equal(c.peek({ registry: ref.registry, repository: 'acme/other' }, good), undefined, 'another repository is another answer')
})

t.test('a rotating credential on one busy repository stays within maxEntries answers', async t => {
  const c = cache(3)
  for (let i = 0; i < 8; i++) {
    t.match(await c.check(ref, 'v1', [credential(`rotated-${i}`)]), { access: 'denied' })
  }
  t.ok(c.size <= 3, `${c.size} answers kept, at most 3`)
  t.match(c.peek(ref, [credential('rotated-7')]), { access: 'denied' }, 'the newest answer is kept')
  t.equal(c.peek(ref, [credential('rotated-0')]), undefined, 'the oldest is gone')
})

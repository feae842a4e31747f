// Pinning end to end: a real pullpin over TLS, a real registry behind the counting proxy, pods
// from real kubectl output. Every digest pinned is compared with what skopeo inspect reports.
import t, { type Test } from 'tap'
import { podWithImages } from './support/pods.js'
import { mutatePod, startPullpin, type RunningPullpin } from './support/pullpin.js'
import { gitSha, startPinningEnv, type PinningEnv } from './support/pinning-env.js'

let env: PinningEnv
t.before(async () => { env = await startPinningEnv() })
t.teardown(() => env.stop())

async function pullpin (t: Test, extra = '', top = '', registryExtra = ''): Promise<RunningPullpin> {
  const p = await startPullpin(env.configYaml(extra, top, undefined, registryExtra))
  t.teardown(() => p.close())
  return p
}

/** A pod whose containers use the given images (the rest of the pod is real kubectl output). */
const podWith = podWithImages

const review = mutatePod

t.test('latest and no tag are rewritten to the verified 40-hex tag; the original is recorded', async t => {
  const sha = gitSha('web-1')
  const digest = await env.registry.push({ seed: 'web-1' }, 'acme/web', ['latest', 'main', sha, `sha-${sha.slice(0, 7)}`])
  t.equal(digest, await env.registry.inspectDigest('acme/web', sha), 'the SHA tag has the same digest (skopeo)')
  const p = await pullpin(t)
  const images = [`${env.host}/acme/web:latest`, `${env.host}/acme/web`, `${env.host}/acme/web:main`]
  const { response, result } = await review(p, podWith(images))
  t.same(result.spec!.containers!.map(c => c.image), images.map(() => `${env.host}/acme/web:${sha}`))
  const pin = `${env.host}/acme/web:${sha}`
  t.same(JSON.parse(result.metadata!.annotations!['pullpin.io/pins']!), { c0: { image: images[0], pin, digest }, c1: { image: images[1], pin, digest }, c2: { image: images[2], pin, digest } })
  t.same(result.spec!.imagePullSecrets, [{ name: 'local-registry' }])
  t.equal(response.warnings, undefined)
  t.same(JSON.parse(response.auditAnnotations['pin-images']), { c0: `${env.host}/acme/web:${sha}`, c1: `${env.host}/acme/web:${sha}`, c2: `${env.host}/acme/web:${sha}` })
  // Reinvocation: the mutated pod reviewed again gives no patch.
  const again = await review(p, result)
  t.equal(again.response.patch, undefined)
  const metrics = (await p.get('/metrics')).text
  t.match(metrics, /pullpin_images_pinned_total\{format="tag",source="registry"\} \d/)
})

t.test('only sha- tags: the longest wins', async t => {
  const sha = gitSha('short-1')
  await env.registry.push({ seed: 'short-1' }, 'acme/short', ['latest', `sha-${sha.slice(0, 7)}`, `sha-${sha.slice(0, 12)}`])
  const p = await pullpin(t)
  const { result } = await review(p, podWith([`${env.host}/acme/short:latest`]))
  t.equal(result.spec!.containers![0]!.image, `${env.host}/acme/short:sha-${sha.slice(0, 12)}`)
})

t.test('a multi-arch image pins its index digest', async t => {
  const sha = gitSha('multi-1')
  const digest = await env.registry.push({ kind: 'index', seed: 'multi-1' }, 'acme/multi', ['latest', sha])
  t.equal(digest, await env.registry.inspectDigest('acme/multi', 'latest'))
  const p = await pullpin(t, '  format: digest')
  const { result } = await review(p, podWith([`${env.host}/acme/multi:latest`]))
  t.equal(result.spec!.containers![0]!.image, `${env.host}/acme/multi@${digest}`)
})

t.test('formats: tag+digest, and digest pins when no SHA tag exists', async t => {
  const sha = gitSha('fmt-1')
  const digest = await env.registry.push({ seed: 'fmt-1' }, 'acme/fmt', ['latest', sha])
  const noSha = await env.registry.push({ seed: 'fmt-2' }, 'acme/nosha', ['latest'])
  const p = await pullpin(t, '  format: tag+digest')
  const { result } = await review(p, podWith([`${env.host}/acme/fmt:latest`, `${env.host}/acme/nosha:latest`]))
  t.same(result.spec!.containers!.map(c => c.image), [`${env.host}/acme/fmt:${sha}@${digest}`, `${env.host}/acme/nosha@${noSha}`])
})

t.test('tag format without a SHA tag: unchanged, with a warning saying why', async t => {
  await env.registry.push({ seed: 'nosha-tag' }, 'acme/nosha2', ['latest'])
  const p = await pullpin(t)
  const { response, result } = await review(p, podWith([`${env.host}/acme/nosha2:latest`]))
  t.equal(result.spec!.containers![0]!.image, `${env.host}/acme/nosha2:latest`)
  t.match(response.warnings, [/acme\/nosha2:latest not pinned: no SHA tag has its digest sha256:/])
})

t.test('a SHA tag of another digest (CI pushed latest before its SHA tag): never pinned to it', async t => {
  const repo = 'acme/ci-race'
  const old = gitSha('ci-race-old')
  const oldDigest = await env.registry.push({ seed: 'ci-race-old' }, repo, ['latest', old])
  const newDigest = await env.registry.push({ seed: 'ci-race-new' }, repo, ['latest'])
  t.not(newDigest, oldDigest)
  t.equal(await env.registry.inspectDigest(repo, 'latest'), newDigest, 'latest moved; its SHA tag is not pushed yet')
  const image = `${env.host}/${repo}:latest`
  const tag = await pullpin(t)
  const { response, result } = await review(tag, podWith([image]))
  t.equal(result.spec!.containers![0]!.image, image, 'tag format: left unpinned, not pinned to the old commit')
  t.match(response.warnings, [new RegExp(`${repo}:latest not pinned: no SHA tag has its digest ${newDigest.slice(0, 19)}`)])
  const both = await pullpin(t, '  format: tag+digest')
  const pinned = await review(both, podWith([image]))
  t.equal(pinned.result.spec!.containers![0]!.image, `${env.host}/${repo}@${newDigest}`, 'tag+digest: the digest alone, no tag of another digest')
})

t.test('pinned images, SHA tags, skipImages and other registries are left alone', async t => {
  const sha = gitSha('keep-1')
  const digest = await env.registry.push({ seed: 'keep-1' }, 'acme/keep', ['latest', sha])
  await env.registry.push({ seed: 'skip-1' }, 'acme/skipme', ['latest'])
  const p = await pullpin(t, `  skipImages: ["${env.host}/acme/skip*"]`)
  const images = [`${env.host}/acme/keep@${digest}`, `${env.host}/acme/keep:${sha}`, `${env.host}/acme/skipme:latest`]
  const pod = podWith([...images, 'nginx'])
  const { response, result } = await review(p, pod)
  t.same(result.spec!.containers!.map(c => c.image), [...images, 'nginx'])
  t.same(response.warnings, undefined, 'no warning for an image outside registry.hosts (issue 13)')
  t.match((await p.get('/metrics')).text, /pullpin_images_unpinned_total\{reason="registry-not-allowed"\} 1/, 'it is counted')
  t.equal(env.proxy.count('GET /v2/acme/skipme/tags/list'), 0, 'skipImages: never pinned (it is still checked)')
})

t.test('a missing tag: a warning naming the image, or a denial with checks.exists: deny', async t => {
  const p = await pullpin(t)
  const { response } = await review(p, podWith([`${env.host}/acme/ghost:latest`]))
  t.equal(response.allowed, true)
  t.match(response.warnings, [/c0: tag latest not found in .*acme\/ghost — /])
  const q = await pullpin(t, '', 'checks: { exists: deny }')
  const denied = await review(q, podWith([`${env.host}/acme/ghost:latest`]))
  t.equal(denied.response.allowed, false)
  t.match(denied.response.status.message, /c0: tag latest not found in .*acme\/ghost/)
  const audit = await review(q, podWith([`${env.host}/acme/ghost:latest`], 'team-b'))
  t.equal(audit.response.allowed, true, 'audit mode never denies')
  t.match(audit.response.warnings.join('\n'), /would deny/)
})

t.test('audit mode reports the pins it would make without making them', async t => {
  const sha = gitSha('audit-1')
  await env.registry.push({ seed: 'audit-1' }, 'acme/audit', ['latest', sha])
  const p = await pullpin(t)
  const { response } = await review(p, podWith([`${env.host}/acme/audit:latest`], 'team-b'))
  t.equal(response.patch, undefined)
  t.same(response.warnings, [
    'pullpin audit: would add imagePullSecret local-registry',
    `pullpin audit: would pin c0 to ${env.host}/acme/audit:${sha}`,
  ])
  t.same(JSON.parse(response.auditAnnotations['would-pin-images']), { c0: `${env.host}/acme/audit:${sha}` })
})

t.test('pods of one owner keep the first pin even when the tag moves', async t => {
  const sha1 = gitSha('owner-1')
  await env.registry.push({ seed: 'owner-1' }, 'acme/owner', ['latest', sha1])
  const p = await pullpin(t, '', '', '  cache: { ttlSeconds: 1, staleWhileRevalidateSeconds: 0, tagListMinIntervalSeconds: 0, activeSeconds: 0 }')
  const image = `${env.host}/acme/owner:latest`
  const first = await review(p, podWith([image], 'team-a', 'rs-1'))
  t.equal(first.result.spec!.containers![0]!.image, `${env.host}/acme/owner:${sha1}`)
  const sha2 = gitSha('owner-2')
  await env.registry.push({ seed: 'owner-2' }, 'acme/owner', ['latest', sha2])
  await new Promise(resolve => setTimeout(resolve, 1100))
  const sameOwner = await review(p, podWith([image], 'team-a', 'rs-1'))
  t.equal(sameOwner.result.spec!.containers![0]!.image, `${env.host}/acme/owner:${sha1}`, 'same ReplicaSet, same pin')
  const newOwner = await review(p, podWith([image], 'team-a', 'rs-2'))
  t.equal(newOwner.result.spec!.containers![0]!.image, `${env.host}/acme/owner:${sha2}`, 'a new ReplicaSet gets the new digest')
})

t.test('UPDATE pins only changed images; ephemeral containers through their subresource', async t => {
  const sha = gitSha('upd-1')
  await env.registry.push({ seed: 'upd-1' }, 'acme/upd', ['latest', sha])
  const p = await pullpin(t)
  const old = podWith([`${env.host}/acme/upd:v0`, 'busybox'])
  old.metadata!.name = 'web-1'
  const changed = structuredClone(old)
  changed.spec!.containers![0]!.image = `${env.host}/acme/upd:latest`
  const upd = await review(p, changed, { operation: 'UPDATE', oldObject: old })
  t.same(upd.result.spec!.containers!.map(c => c.image), [`${env.host}/acme/upd:${sha}`, 'busybox'])
  t.equal(upd.result.spec!.imagePullSecrets, undefined, 'no secrets on UPDATE')
  const debug = structuredClone(old)
  debug.spec!.ephemeralContainers = [{ name: 'debugger', image: `${env.host}/acme/upd:latest` }]
  const eph = await review(p, debug, { operation: 'UPDATE', oldObject: old, subResource: 'ephemeralcontainers' })
  t.equal(eph.result.spec!.ephemeralContainers![0]!.image, `${env.host}/acme/upd:${sha}`)
  t.equal(eph.result.spec!.containers![0]!.image, `${env.host}/acme/upd:v0`, 'other containers untouched')
})

t.test('a dry run returns the pin but does not remember it for the owner', async t => {
  const sha1 = gitSha('dry-1')
  await env.registry.push({ seed: 'dry-1' }, 'acme/dry', ['latest', sha1])
  const p = await pullpin(t, '', '', '  cache: { ttlSeconds: 1, staleWhileRevalidateSeconds: 0, tagListMinIntervalSeconds: 0, activeSeconds: 0 }')
  const image = `${env.host}/acme/dry:latest`
  const dry = await review(p, podWith([image], 'team-a', 'rs-dry'), { dryRun: true })
  t.equal(dry.result.spec!.containers![0]!.image, `${env.host}/acme/dry:${sha1}`)
  const sha2 = gitSha('dry-2')
  await env.registry.push({ seed: 'dry-2' }, 'acme/dry', ['latest', sha2])
  await new Promise(resolve => setTimeout(resolve, 1100))
  const real = await review(p, podWith([image], 'team-a', 'rs-dry'))
  t.equal(real.result.spec!.containers![0]!.image, `${env.host}/acme/dry:${sha2}`)
})

t.test('many concurrent admissions for one uncached image make one manifest HEAD', async t => {
  const sha = gitSha('burst-1')
  await env.registry.push({ seed: 'burst-1' }, 'acme/burst', ['latest', sha])
  const p = await pullpin(t)
  const results = await Promise.all(Array.from({ length: 200 }, () => review(p, podWith([`${env.host}/acme/burst:latest`]))))
  t.ok(results.every(r => r.result.spec!.containers![0]!.image === `${env.host}/acme/burst:${sha}`))
  t.equal(env.proxy.count('HEAD /v2/acme/burst/manifests/latest'), 1)
  t.equal(env.proxy.count(`HEAD /v2/acme/burst/manifests/${sha}`), 1)
})

t.test('a warm cache answers with no registry request at all', async t => {
  const sha = gitSha('warm-1')
  await env.registry.push({ seed: 'warm-1' }, 'acme/warm', ['latest', sha])
  const p = await pullpin(t)
  await review(p, podWith([`${env.host}/acme/warm:latest`]))
  const before = env.proxy.log.length
  const { result } = await review(p, podWith([`${env.host}/acme/warm:latest`]))
  t.equal(result.spec!.containers![0]!.image, `${env.host}/acme/warm:${sha}`)
  t.equal(env.proxy.log.length, before)
})

t.test('a registry slower than registry.lookupBudgetMs: admitted unchanged within the deadline, with a warning', async t => {
  await env.registry.push({ seed: 'slowreg' }, 'acme/slowreg', ['latest', gitSha('slowreg')])
  const p = await pullpin(t, '', '', '  lookupBudgetMs: 300')
  env.proxy.fault = (r) => r.path.includes('/acme/slowreg/') ? { action: 'delay', ms: 3000 } : undefined
  t.teardown(() => { env.proxy.fault = undefined })
  const started = Date.now()
  const { response, result } = await review(p, podWith([`${env.host}/acme/slowreg:latest`]))
  const ms = Date.now() - started
  t.ok(ms < 1500, `answered in ${ms} ms`)
  t.equal(response.allowed, true)
  t.equal(result.spec!.containers![0]!.image, `${env.host}/acme/slowreg:latest`)
  t.same(result.spec!.imagePullSecrets, [{ name: 'local-registry' }], 'the secret is still injected')
  t.match(response.warnings, [/acme\/slowreg:latest not pinned: registry\.lookupBudgetMs \(300 ms\) ran out/])
  t.match((await p.get('/metrics')).text, /pullpin_images_unpinned_total\{reason="deadline"\} 1/)
})

t.test('registry errors (500, 401, down) admit the pod unchanged with a warning', async t => {
  await env.registry.push({ seed: 'errs' }, 'acme/errs', ['latest', gitSha('errs')])
  const p = await pullpin(t)
  env.proxy.fault = (r) => r.path.includes('/acme/errs/') ? { action: 'status', status: 500 } : undefined
  t.teardown(() => { env.proxy.fault = undefined })
  const five = await review(p, podWith([`${env.host}/acme/errs:latest`]))
  t.equal(five.response.allowed, true)
  t.equal(five.result.spec!.containers![0]!.image, `${env.host}/acme/errs:latest`)
  t.match(five.response.warnings, [/acme\/errs:latest not pinned: registry unavailable$/])
  env.proxy.fault = (r) => r.path.includes('/acme/errs/') ? { action: 'status', status: 401, headers: { 'www-authenticate': 'Basic realm="registry"' } } : undefined
  const unauth = await review(p, podWith([`${env.host}/acme/errs:main`]))
  t.equal(unauth.response.allowed, true)
  t.match(unauth.response.warnings, [/acme\/errs:main not pinned: registry refused the credentials; check the pull secret$/])
  t.match(p.logs.text, /answered 401 for .*acme\/errs/, 'the full registry message is in the log')
  // A registry that is not there at all.
  const gone = await startPullpin(env.configYaml().replaceAll(env.host, '127.0.0.1:9'))
  t.teardown(() => gone.close())
  const down = await review(gone, podWith(['127.0.0.1:9/acme/errs:latest']))
  t.equal(down.response.allowed, true)
  t.match(down.response.warnings, [/127\.0\.0\.1:9\/acme\/errs:latest not pinned: registry unavailable$/])
})

t.test('token auth: the real registry verifies tokens from the test token server', async t => {
  const tokenEnv = await startPinningEnv({ auth: 'token' })
  t.teardown(() => tokenEnv.stop())
  const sha = gitSha('token-1')
  await tokenEnv.registry.push({ kind: 'index', seed: 'token-1' }, 'acme/tok', ['latest', sha])
  const p = await startPullpin(tokenEnv.configYaml())
  t.teardown(() => p.close())
  const { response, result } = await review(p, podWith([`${tokenEnv.host}/acme/tok:latest`]))
  t.equal(response.warnings, undefined)
  t.equal(result.spec!.containers![0]!.image, `${tokenEnv.host}/acme/tok:${sha}`)
  t.ok(tokenEnv.registry.tokenServer!.requests >= 1)
})

t.test('digest formats never write a digest the registry does not serve', async t => {
  const digest = await env.registry.push({ seed: 'liar-1' }, 'acme/liar', ['latest'])
  // No pull-access probe: it would HEAD the same digest with the pull secret's credentials.
  const p = await pullpin(t, '  format: digest', 'checks: { pullAccess: off }')
  const good = await review(p, podWith([`${env.host}/acme/liar:latest`]))
  t.equal(good.result.spec!.containers![0]!.image, `${env.host}/acme/liar@${digest}`)
  t.equal(env.proxy.count(`HEAD /v2/acme/liar/manifests/${digest}`), 1, 'the digest was checked once')
  const q = await pullpin(t, '  format: digest')
  env.proxy.fault = (r) => r.path.endsWith('/acme/liar/manifests/latest') ? { action: 'wrong-digest' } : undefined
  t.teardown(() => { env.proxy.fault = undefined })
  const lied = await review(q, podWith([`${env.host}/acme/liar:latest`]))
  t.equal(lied.response.allowed, true)
  t.equal(lied.result.spec!.containers![0]!.image, `${env.host}/acme/liar:latest`, 'left as written')
  t.match(lied.response.warnings, [/acme\/liar:latest not pinned: registry sent a bad response$/])
  t.match(q.logs.text, /which the registry does not serve/)
})

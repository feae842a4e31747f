// Cold pinning (issue 15): a real pullpin over TLS, the real registry behind the counting proxy,
// every registry request counted at the proxy.
import t, { type Test } from 'tap'
import { podWithImages } from './support/pods.js'
import { mutatePod, startPullpin, type RunningPullpin } from './support/pullpin.js'
import { gitSha, startPinningEnv, type PinningEnv } from './support/pinning-env.js'
import { fastStorage, pushManyTags, putManifest } from './support/many-tags.js'
import { until } from './support/until.js'
import { buildImage, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST } from './support/oci-layout.js'

const REVISION = 'org.opencontainers.image.revision'
let env: PinningEnv
const storage = await fastStorage()
t.before(async () => { env = await startPinningEnv({ configOverrides: storage.configOverrides }) })
t.teardown(async () => {
  await env.stop()
  await storage.cleanup()
})
t.afterEach(() => { env.proxy.fault = undefined })

/** Every request the registry got since the last reset, as "METHOD /path" → count. */
function requests (): Record<string, number> {
  return Object.fromEntries(env.proxy.counts())
}
const total = (): number => [...env.proxy.counts().values()].reduce((a, b) => a + b, 0)

/** pullpin for the test registry; `registries` replaces the registry.hosts entry (the host). */
async function pullpin (t: Test, extra = '', registries?: string[], top = '', registryExtra = ''): Promise<RunningPullpin> {
  // The requests counted here are pinning's: the pull-access probe (a HEAD with the pod's secret)
  // and the platform check (the config blob) add their own, once per image (test/checks.test.ts).
  let yaml = env.configYaml(extra, `${top}\nchecks: { pullAccess: off, platforms: off }`, undefined, registryExtra)
  if (registries !== undefined) yaml = yaml.replace(`\n  hosts: ["${env.host}"]`, `\n  hosts: ${JSON.stringify(registries)}`)
  const p = await startPullpin(yaml)
  t.teardown(() => p.close())
  return p
}

const podWith = podWithImages

const review = mutatePod

t.test('an allowlist entry with a path pins the images under it, and only those', async t => {
  const sha = gitSha('path-entry')
  await env.registry.push({ seed: 'path-entry' }, 'team/app', ['latest', sha])
  await env.registry.push({ seed: 'path-entry-other' }, 'other/app', ['latest', gitSha('path-entry-other')])
  const p = await pullpin(t, '', [`${env.host}/team`])
  const { response, result } = await review(p, podWith([`${env.host}/team/app:latest`, `${env.host}/other/app:latest`]))
  t.same(result.spec!.containers!.map(c => c.image), [`${env.host}/team/app:${sha}`, `${env.host}/other/app:latest`])
  t.equal(response.warnings, undefined, 'an image outside registry.hosts gets no warning (it is counted)')
  t.equal(env.proxy.count('HEAD /v2/other/app/manifests/latest'), 0, 'nothing asked about the image outside the entry')
})

t.test('a moved latest in a 10,000-tag repository: pinned on its first admission by the manifest\'s revision annotation, in 3 requests', async t => {
  const builds = await pushManyTags(env.registry, 'big/annotated', { seed: 'big-annotated' }, { seed: 'big-annotated', count: 10_000, revisionAnnotation: true })
  t.equal((await env.registry.listTags('big/annotated')).length, 10_001, 'the registry lists every build')
  const target = builds[7777]!
  t.equal(await env.registry.inspectDigest('big/annotated', target.tag), target.digest, 'and serves them (skopeo)')
  await putManifest(env.registry, 'big/annotated', target.manifest, ['latest'])
  const p = await pullpin(t)
  env.proxy.resetCounts()
  const image = `${env.host}/big/annotated:latest`
  const { response, result } = await review(p, podWith([image]))
  t.equal(result.spec!.containers![0]!.image, `${env.host}/big/annotated:${target.tag}`)
  t.equal(response.warnings, undefined)
  t.same(requests(), {
    'GET /v2/': 1, // the client's first contact with the registry (its auth scheme)
    'HEAD /v2/big/annotated/manifests/latest': 1,
    [`GET /v2/big/annotated/manifests/${target.digest}`]: 1,
    [`HEAD /v2/big/annotated/manifests/${target.tag}`]: 1,
  }, 'no tag list, no HEAD of other SHA tags')
  t.ok(total() <= 5, `${total()} requests counted at the registry`)

  env.proxy.resetCounts()
  const again = await review(p, podWith([image]))
  t.equal(again.result.spec!.containers![0]!.image, `${env.host}/big/annotated:${target.tag}`)
  t.equal(total(), 0, 'the next pod is answered from the cache')
  t.match((await p.get('/metrics')).text, /pullpin_revision_lookups_total\{result="found",from="annotation"\} 1/)
})

t.test('a multi-arch image: the revision as an index annotation', async t => {
  const sha = gitSha('index-annotated')
  const digest = await env.registry.push({ kind: 'index', seed: 'index-annotated', annotations: { [REVISION]: sha } }, 'acme/multi-rev', ['latest', sha])
  const p = await pullpin(t)
  env.proxy.resetCounts()
  const { result } = await review(p, podWith([`${env.host}/acme/multi-rev:latest`]))
  t.equal(result.spec!.containers![0]!.image, `${env.host}/acme/multi-rev:${sha}`)
  t.equal(requests()[`GET /v2/acme/multi-rev/manifests/${digest}`], 1, 'the index, read once')
  t.equal(requests()['GET /v2/acme/multi-rev/tags/list'], undefined)
  t.ok(total() <= 5, `${total()} requests`)
})

t.test('the revision as a config label, and only the short SHA tag pushed: the second template finds it', async t => {
  const sha = gitSha('label-only')
  const short = `sha-${sha.slice(0, 7)}`
  await env.registry.push({ seed: 'label-only', labels: { [REVISION]: sha } }, 'acme/labelled', ['latest', short])
  const p = await pullpin(t)
  env.proxy.resetCounts()
  const { result } = await review(p, podWith([`${env.host}/acme/labelled:latest`]))
  t.equal(result.spec!.containers![0]!.image, `${env.host}/acme/labelled:${short}`)
  t.equal(requests()[`HEAD /v2/acme/labelled/manifests/${sha}`], 1, 'the full-SHA template was asked first (not found)')
  t.equal(requests()['GET /v2/acme/labelled/tags/list'], undefined)
  t.equal(Object.keys(requests()).filter(k => k.includes('/blobs/')).length, 1, 'one config blob read')
  t.ok(total() <= 6, `${total()} requests, the auth ping included`)
})

t.test('a tag moved after the SHA-tag index was built: pinned by revision, without listing again', async t => {
  const shaA = gitSha('moved-a')
  const shaB = gitSha('moved-b')
  await env.registry.push({ seed: 'moved-a', labels: { [REVISION]: shaA } }, 'acme/moved', ['main', shaA])
  const p = await pullpin(t, `  warmup: ["${env.host}/acme/moved"]`)
  await until('the warm-up indexed the repository', () => env.proxy.count(`HEAD /v2/acme/moved/manifests/${shaA}`) >= 1, 30_000)
  await until('the warm-up logged', () => p.logs.text.includes('warm-up: SHA-tag index built'), 30_000)
  // CI builds the next commit and moves main to it.
  await env.registry.push({ seed: 'moved-b', labels: { [REVISION]: shaB } }, 'acme/moved', [shaB, 'main'])
  env.proxy.resetCounts()
  const { response, result } = await review(p, podWith([`${env.host}/acme/moved:main`]))
  t.equal(result.spec!.containers![0]!.image, `${env.host}/acme/moved:${shaB}`)
  t.equal(response.warnings, undefined)
  t.equal(requests()['GET /v2/acme/moved/tags/list'], undefined, 'the index was not listed again')
})

t.test('no revision in a 2,000-tag repository: the index, within its budget, and a warning saying how to make it cheap', async t => {
  const builds = await pushManyTags(env.registry, 'big/plain', { seed: 'big-plain' }, { seed: 'big-plain', count: 2000, revisionAnnotation: false })
  // The build whose tag sorts last: the budget runs out before the index reaches it.
  const target = builds.reduce((a, b) => (a.tag > b.tag ? a : b))
  await putManifest(env.registry, 'big/plain', target.manifest, ['latest'])
  // A lookup budget for a loaded machine: this test is about the HEAD budget.
  const p = await pullpin(t, '', undefined, 'limits: { indexHeadsPerRepository: 50 }', '  lookupBudgetMs: 8000')
  env.proxy.resetCounts()
  const { response, result } = await review(p, podWith([`${env.host}/big/plain:latest`]))
  t.equal(result.spec!.containers![0]!.image, `${env.host}/big/plain:latest`, 'not pinned')
  for (const re of [
    /big\/plain:latest not pinned: no SHA tag has its digest/,
    /SHA-tag index of .*big\/plain incomplete: HEAD budget reached/,
    /big\/plain: label it org\.opencontainers\.image\.revision to pin it in a few requests/,
  ]) t.ok(response.warnings.some((w: string) => re.test(w)), `warning ${re}`)
  t.equal(response.warnings.length, 3)
  t.ok(response.warnings.every((w: string) => w.length < 120), 'warnings under 120 characters')
  const heads = Object.entries(requests()).filter(([k]) => k.startsWith('HEAD /v2/big/plain/manifests/') && !k.endsWith('/latest')).reduce((n, [, c]) => n + c, 0)
  t.equal(heads, 50, 'SHA-tag HEADs: the per-repository budget, no more')
  t.ok(total() <= 50 + 10, `${total()} requests in all`)
})

t.test('a revision whose candidate tag points at another digest is not used', async t => {
  const sha = gitSha('liar')
  await env.registry.push({ seed: 'liar-image', labels: { [REVISION]: sha } }, 'acme/liar', ['latest'])
  await env.registry.push({ seed: 'liar-other' }, 'acme/liar', [sha])
  const p = await pullpin(t)
  const { response, result } = await review(p, podWith([`${env.host}/acme/liar:latest`]))
  t.equal(result.spec!.containers![0]!.image, `${env.host}/acme/liar:latest`, 'not pinned to a tag of another image')
  for (const re of [/liar:latest not pinned: no SHA tag has its digest/, new RegExp(`acme/liar: no pinning.shaTagTemplates tag of revision ${sha.slice(0, 12)} has its digest`)]) {
    t.ok(response.warnings.some((w: string) => re.test(w)), `warning ${re}`)
  }
})

t.test('an index without the revision: read from its first platform manifest\'s config (attestations skipped)', async t => {
  const sha = gitSha('platform-label')
  const repo = 'acme/platform-label'
  const child = await env.registry.push({ seed: 'platform-label', labels: { [REVISION]: sha } }, repo, ['child'])
  const childSize = buildImage({ seed: 'platform-label', labels: { [REVISION]: sha } }).size
  const index = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_INDEX,
    manifests: [
      // An attestation manifest (platform unknown/unknown, as buildx writes them) listed first on purpose.
      { mediaType: MEDIA_TYPE_OCI_MANIFEST, digest: child, size: childSize, platform: { os: 'unknown', architecture: 'unknown' } },
      { mediaType: MEDIA_TYPE_OCI_MANIFEST, digest: child, size: childSize, platform: { os: 'linux', architecture: 'amd64' } },
    ],
  }))
  await putManifest(env.registry, repo, index, ['latest', sha], 2, MEDIA_TYPE_OCI_INDEX)
  const p = await pullpin(t)
  env.proxy.resetCounts()
  const { result } = await review(p, podWith([`${env.host}/${repo}:latest`]))
  t.equal(result.spec!.containers![0]!.image, `${env.host}/${repo}:${sha}`)
  t.equal(requests()[`GET /v2/${repo}/tags/list`], undefined)
  t.equal(requests()[`GET /v2/${repo}/manifests/${child}`], 1, 'the platform manifest')
  t.ok(total() <= 6, `${total()} requests, the auth ping included`)
  t.match((await p.get('/metrics')).text, /pullpin_revision_lookups_total\{result="found",from="platform-label"\} 1/)
})

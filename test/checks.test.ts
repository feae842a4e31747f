// Pull-readiness checks end to end (issue 13): a real pullpin over TLS, the real registry behind
// the counting proxy, pods from real kubectl output. Each case is a way a pod reaches
// ImagePullBackOff at the kubelet, caught at admission instead.
import t, { type Test } from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { admissionReview, applyResponsePatch, podWithImages } from './support/pods.js'
import { mutatePod, startPullpin, type RunningPullpin } from './support/pullpin.js'
import { gitSha, startPinningEnv, type PinningEnv } from './support/pinning-env.js'
import { dockerConfigJsonFor } from './support/registry.js'

let env: PinningEnv
t.before(async () => { env = await startPinningEnv() })
t.teardown(() => env.stop())

/** A lookup budget a loaded machine cannot run out of: these tests are about answers, not time. */
const BUDGET = '  lookupBudgetMs: 8000'

/** Pinning off unless asked: the checks work without it. */
async function pullpin (t: Test, top = '', pinning = false): Promise<RunningPullpin> {
  const yaml = env.configYaml('', top, undefined, BUDGET)
  const p = await startPullpin(pinning ? yaml : yaml.replace('pinning:\n  enabled: true', 'pinning:\n  enabled: false'))
  t.teardown(() => p.close())
  return p
}

const podWith = podWithImages

const review = mutatePod

function metric (text: string, check: string, result: string): number {
  const m = new RegExp(`^pullpin_checks_total\\{check="${check}",result="${result}"\\} (\\d+)$`, 'm').exec(text)
  return m === null ? 0 : Number(m[1])
}

t.test('a SHA tag CI never pushed: a warning with the likely cause, a denial with exists: deny', async t => {
  await env.registry.push({ seed: 'web-1' }, 'acme/web', ['latest', gitSha('web-1')])
  const never = gitSha('never-pushed')
  const image = `${env.host}/acme/web:${never}`
  const p = await pullpin(t)
  const { response } = await review(p, podWith([image]))
  t.equal(response.allowed, true)
  t.same(response.warnings, [`pullpin: c0: tag ${never.slice(0, 7)}… not found in ${env.host}/acme/web — not pushed by CI?`])
  t.ok(response.warnings.every((w: string) => w.length <= 120), 'within the 120-character kubectl limit')
  t.same(JSON.parse(response.auditAnnotations.findings), [{ container: 'c0', check: 'exists', reason: 'ImageNotFound' }])
  t.equal(metric((await p.get('/metrics')).text, 'exists', 'warn'), 1)

  const q = await pullpin(t, 'checks: { exists: deny }')
  const denied = await review(q, podWith([image]))
  t.equal(denied.response.allowed, false)
  t.equal(denied.response.status.message, `pullpin: c0: tag ${never.slice(0, 7)}… not found in ${env.host}/acme/web — not pushed by CI?`)
  const audit = await review(q, podWith([image], 'team-b'))
  t.equal(audit.response.allowed, true, 'audit mode never denies')
  t.match(audit.response.warnings.join('\n'), /^pullpin: c0: tag .* not found.*\npullpin audit: would deny: c0: tag /m)
  t.same(JSON.parse(audit.response.auditAnnotations['would-findings']), [{ container: 'c0', check: 'exists', reason: 'ImageNotFound' }])
  t.equal(metric((await q.get('/metrics')).text, 'exists', 'would-deny'), 1, 'a would-finding in the metrics')
})

t.test('exists: deny never denies for a registry that does not answer in time', async t => {
  await env.registry.push({ seed: 'slow-1' }, 'acme/slowcheck', ['v1'])
  const p = await startPullpin(env.configYaml('', 'checks: { exists: deny }', undefined, '  lookupBudgetMs: 300').replace('pinning:\n  enabled: true', 'pinning:\n  enabled: false'))
  t.teardown(() => p.close())
  env.proxy.fault = (r) => r.path.includes('/acme/slowcheck/') ? { action: 'delay', ms: 3000 } : undefined
  t.teardown(() => { env.proxy.fault = undefined })
  const { response } = await review(p, podWith([`${env.host}/acme/slowcheck:v1`]))
  t.equal(response.allowed, true)
  t.equal(response.warnings, undefined, 'no finding without an answer')
  t.match(p.logs.text, /exists check of .*acme\/slowcheck: registry.lookupBudgetMs ran out/)
})

t.test('a deleted digest is reported (and tag@digest too)', async t => {
  const digest = await env.registry.push({ seed: 'gone-1' }, 'acme/gone', ['v1'])
  await env.registry.deleteManifest('acme/gone', digest)
  const p = await pullpin(t)
  const { response } = await review(p, podWith([`${env.host}/acme/gone@${digest}`, `${env.host}/acme/gone:v1@${digest}`]))
  t.same(response.warnings, [
    `pullpin: c0: digest ${digest.slice(0, 19)}… not found in ${env.host}/acme/gone — deleted, or never pushed?`,
    `pullpin: c1: digest ${digest.slice(0, 19)}… not found in ${env.host}/acme/gone — deleted, or never pushed?`,
  ])
})

t.test('an index without the nodes\' platform, and a single image built for another architecture', async t => {
  await env.registry.push({ kind: 'index', seed: 'amd-only', platforms: [{ os: 'linux', architecture: 'amd64' }] }, 'acme/amdonly', ['v1'])
  await env.registry.push({ kind: 'index', seed: 'multi' }, 'acme/multi', ['v1'])
  await env.registry.push({ seed: 'single-amd', platform: { os: 'linux', architecture: 'amd64' } }, 'acme/single', ['v1'])
  const p = await pullpin(t, 'checks: { nodePlatforms: [linux/arm64] }')
  const images = [`${env.host}/acme/amdonly:v1`, `${env.host}/acme/multi:v1`, `${env.host}/acme/single:v1`]
  const { response } = await review(p, podWith(images))
  t.same(response.warnings, [
    `pullpin: c0: ${env.host}/acme/amdonly has no linux/arm64 build (has linux/amd64)`,
    `pullpin: c2: ${env.host}/acme/single has no linux/arm64 build (has linux/amd64)`,
  ])
  // Config blobs are read once per digest: a second pod asks the registry nothing.
  const before = env.proxy.log.length
  await review(p, podWith(images))
  t.equal(env.proxy.log.length, before, 'warm: no registry request')
  t.equal(env.proxy.count('GET /v2/acme/single/blobs/' + (await configDigest('acme/single', 'v1'))), 1, 'the config blob was read once')

  // The pod's nodeSelector narrows the nodes: an amd64-only pod on a mixed cluster is fine.
  const mixed = await pullpin(t, 'checks: { nodePlatforms: [linux/amd64, linux/arm64] }')
  const pinnedToAmd = podWith([images[0]!])
  pinnedToAmd.spec!.nodeSelector = { 'kubernetes.io/arch': 'amd64' }
  t.equal((await review(mixed, pinnedToAmd)).response.warnings, undefined)
  t.match((await review(mixed, podWith([images[0]!]))).response.warnings, [/has no linux\/arm64 build/])
})

async function configDigest (repo: string, tag: string): Promise<string> {
  const res = await fetch(`${env.registry.url}/v2/${repo}/manifests/${tag}`, {
    headers: { accept: 'application/vnd.oci.image.manifest.v1+json', authorization: env.registry.authorization(repo) ?? '' },
    // @ts-expect-error undici's dispatcher option
    dispatcher: env.registry.dispatcher,
  })
  return (await res.json() as { config: { digest: string } }).config.digest
}

t.test('a pull secret whose token the registry scopes to another repository: a pull-access warning naming it', async t => {
  // As GHCR does: the token server grants the "scoped" account pull on acme/other only.
  const tokenEnv = await startPinningEnv({
    auth: 'token',
    extraUsers: { scoped: 'scoped-password' },
    tokenServer: { grant: (req, resource) => req.account === 'scoped' && resource.name !== 'acme/other' ? [] : resource.actions },
  })
  t.teardown(() => tokenEnv.stop())
  await tokenEnv.registry.push({ seed: 'private-1' }, 'acme/private', ['v1'])
  const scopedFile = join(tokenEnv.dir, 'scoped.json')
  await writeFile(scopedFile, dockerConfigJsonFor(tokenEnv.host, 'scoped', 'scoped-password'))
  const p = await startPullpin(tokenEnv.configYaml('', '', undefined, BUDGET).replace(tokenEnv.dockerConfigFile, scopedFile).replace('pinning:\n  enabled: true', 'pinning:\n  enabled: false'))
  t.teardown(() => p.close())
  const { response } = await review(p, podWith([`${tokenEnv.host}/acme/private:v1`]))
  t.equal(response.allowed, true)
  t.same(response.warnings, [`pullpin: c0: pull secret local-registry cannot read ${tokenEnv.host}/acme/private (401): check its scope`])
  t.match(p.logs.text, /docs\/registry-auth\.md#pull-access-denied/)
  t.notMatch(p.logs.text, /scoped-password/, 'no secret material in the log')

  // The same secret can read the repository it is scoped to: no warning.
  await tokenEnv.registry.push({ seed: 'other-1' }, 'acme/other', ['v1'])
  t.equal((await review(p, podWith([`${tokenEnv.host}/acme/other:v1`]))).response.warnings, undefined)
})

t.test('a private image and no pull secret for its registry: the kubelet would get 401', async t => {
  await env.registry.push({ seed: 'nosecret-1' }, 'acme/nosecret', ['v1'])
  const yaml = env.configYaml('', '', undefined, BUDGET).replace('pinning:\n  enabled: true', 'pinning:\n  enabled: false').replace(/pullSecrets:\n {2}- name: local-registry\n {4}registries: \[.*\]\n/, 'pullSecrets: []\n')
  const p = await startPullpin(yaml)
  t.teardown(() => p.close())
  const { response, result } = await review(p, podWith([`${env.host}/acme/nosecret:v1`]))
  t.equal(result.spec!.imagePullSecrets, undefined)
  t.same(response.warnings, [`pullpin: c0: ${env.host}/acme/nosecret needs credentials; no pull secret matches ${env.host}: kubelet gets 401`])
  // A pod that brings its own secret is not second-guessed.
  const own = podWith([`${env.host}/acme/nosecret:v1`])
  own.spec!.imagePullSecrets = [{ name: 'my-own' }]
  t.equal((await review(p, own)).response.warnings, undefined)
})

t.test('an uppercase owner gets the lowercase fix, with pinning off and whatever the registry', async t => {
  const p = await pullpin(t)
  const { response } = await review(p, podWith(['ghcr.io/Acme/Web:v1']))
  t.same(response.warnings, ['pullpin: c0: use ghcr.io/acme/web:v1: repository names are lowercase'])
})

t.test('images outside registry.hosts: no warning, counted', async t => {
  const p = await pullpin(t)
  const { response } = await review(p, podWith(['nginx', 'quay.io/org/app:v1']))
  t.equal(response.warnings, undefined)
  t.match((await p.get('/metrics')).text, /^pullpin_images_outside_hosts_total 2$/m)
})

t.test('pullpin.io/skip-containers: named containers get no secret, pin or check', async t => {
  await env.registry.push({ seed: 'sk-1' }, 'acme/sk', ['latest', gitSha('sk-1')])
  const p = await pullpin(t, '', true)
  const pod = podWith([`${env.host}/acme/missing:latest`, `${env.host}/acme/sk:latest`])
  pod.metadata!.annotations = { 'pullpin.io/skip-containers': 'c0, c1' }
  const before = env.proxy.log.length
  const { response, result } = await review(p, pod)
  t.equal(response.warnings, undefined)
  t.same(result.spec!.containers!.map(c => c.image), [`${env.host}/acme/missing:latest`, `${env.host}/acme/sk:latest`])
  t.equal(result.spec!.imagePullSecrets, undefined)
  t.equal(env.proxy.log.length, before, 'the registry was not asked')
  pod.metadata!.annotations = { 'pullpin.io/skip-containers': 'c0' }
  const one = await review(p, pod)
  t.equal(one.response.warnings, undefined, 'c0 skipped')
  t.same(one.result.spec!.containers!.map(c => c.image), [`${env.host}/acme/missing:latest`, `${env.host}/acme/sk:${gitSha('sk-1')}`])
})

t.test('a warm review with every check on makes no registry request', async t => {
  const sha = gitSha('warmcheck-1')
  await env.registry.push({ kind: 'index', seed: 'warmcheck-1' }, 'acme/warmcheck', ['latest', sha])
  const p = await pullpin(t, 'checks: { nodePlatforms: [linux/amd64, linux/arm64] }', true)
  const images = [`${env.host}/acme/warmcheck:latest`, `${env.host}/acme/warmcheck:${sha}`]
  const first = await review(p, podWith(images))
  t.equal(first.response.warnings, undefined)
  const before = env.proxy.log.length
  const second = await review(p, podWith(images))
  t.equal(second.response.warnings, undefined)
  t.same(second.result.spec!.containers!.map(c => c.image), [`${env.host}/acme/warmcheck:${sha}`, `${env.host}/acme/warmcheck:${sha}`])
  t.equal(env.proxy.log.length, before)
  const text = (await p.get('/metrics')).text
  t.ok(metric(text, 'exists', 'ok') >= 2 && metric(text, 'platforms', 'ok') >= 2 && metric(text, 'pullAccess', 'ok') >= 2, 'every check answered')
})

t.test('namespaces.selection: all reviews unlabelled namespaces; pullpin.io/inject=disabled opts one out', async t => {
  await env.registry.push({ seed: 'sel-1' }, 'acme/sel', ['v1'])
  const yaml = env.configYaml('', '', undefined, BUDGET).replace('namespaces:\n  labels:\n', 'namespaces:\n  selection: all\n  labels:\n    team-c: { pullpin.io/inject: disabled }\n')
  const p = await startPullpin(yaml)
  t.teardown(() => p.close())
  const image = `${env.host}/acme/sel:v1`
  const other = await review(p, podWith([image], 'other'))
  t.same(other.result.spec!.imagePullSecrets, [{ name: 'local-registry' }], 'an unlabelled namespace gets its secret')
  const off = await review(p, podWith([image], 'team-c'))
  t.equal(off.response.patch, undefined, 'a disabled namespace is left alone')
  t.equal(off.response.warnings, undefined)
  const audit = await review(p, podWith([`${env.host}/acme/sel:nope`], 'team-b'))
  t.equal(audit.response.patch, undefined, 'audit still means audit')
  t.match(audit.response.warnings.join('\n'), /tag nope not found/)
})

t.test('an image volume (Kubernetes 1.31+) gets its secret, its check and its pin', async t => {
  const sha = gitSha('vol-1')
  await env.registry.push({ seed: 'vol-1' }, 'acme/vol', ['latest', sha])
  const p = await pullpin(t, '', true)
  const pod = podWith(['nginx'])
  pod.spec!.volumes = [
    { name: 'config', configMap: { name: 'web' } },
    { name: 'models', image: { reference: `${env.host}/acme/vol:latest`, pullPolicy: 'IfNotPresent' } },
    { name: 'gone', image: { reference: `${env.host}/acme/vol:${gitSha('vol-never')}` } },
  ]
  const { response, result } = await review(p, pod)
  t.same(result.spec!.imagePullSecrets, [{ name: 'local-registry' }], 'the secret, for the volume\'s registry')
  t.same(result.spec!.volumes, [
    { name: 'config', configMap: { name: 'web' } },
    { name: 'models', image: { reference: `${env.host}/acme/vol:${sha}`, pullPolicy: 'IfNotPresent' } },
    { name: 'gone', image: { reference: `${env.host}/acme/vol:${gitSha('vol-never')}` } },
  ], 'pinned in place, nothing else touched')
  t.same(response.warnings, [`pullpin: gone: tag ${gitSha('vol-never').slice(0, 7)}… not found in ${env.host}/acme/vol — not pushed by CI?`])
  t.match(JSON.parse(result.metadata!.annotations!['pullpin.io/pins']!), { models: { image: `${env.host}/acme/vol:latest`, pin: `${env.host}/acme/vol:${sha}` } })
  // skip-containers names image volumes too.
  const skipped = structuredClone(pod)
  skipped.metadata!.annotations = { 'pullpin.io/skip-containers': 'models,gone' }
  const s = await review(p, skipped)
  t.equal(s.response.patch, undefined, 'no secret, pin or warning for skipped volumes')
  t.equal(s.response.warnings, undefined)
})

t.test('odd volumes are reviewed, not refused, and never patched', async t => {
  const p = await pullpin(t, '', true)
  const pod = podWith(['nginx']) as any
  pod.spec.volumes = [null, 'text', { name: 'a', image: 'text' }, { name: 'b', image: { reference: 42 } }, { name: 'c', image: null }, { name: 'd', image: { reference: '' } }, { image: { reference: 'Bad/Ref' } }]
  const res = await p.post('/mutate', admissionReview(pod))
  t.equal(res.status, 200)
  t.equal(res.json.response.allowed, true)
  t.same(res.json.response.warnings, ['pullpin: volumes[6]: use bad/ref: repository names are lowercase'])
  t.same(applyResponsePatch(pod, res.json.response).spec.volumes, pod.spec.volumes)
})

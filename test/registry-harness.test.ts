// End-to-end proof that the registry test harness is real: a docker-registry process, skopeo
// pushes, a token server the registry trusts, and a paging/fault-injecting proxy. Only plain
// undici requests and skopeo are used here; no pullpin code.
import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Agent, fetch, request } from 'undici'
import {
  buildImage, buildIndex, writeImageLayout, writeIndexLayout, sha256Digest,
  MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST
} from './support/oci-layout.js'
import { createTestCa, startRegistry, MANIFEST_ACCEPT, sha256, type RegistryFixture } from './support/registry.js'
import { startTokenServer } from './support/token-server.js'
import { startRegistryProxy } from './support/registry-proxy.js'

const execFileP = promisify(execFile)

function parseChallenge (header: string): Record<string, string> {
  const params: Record<string, string> = {}
  for (const m of header.matchAll(/(\w+)="([^"]*)"/g)) params[m[1] ?? ''] = m[2] ?? ''
  return params
}

t.test('oci-layout: digests derive from the seed only', async (t) => {
  t.equal(buildImage({ seed: 'one' }).digest, buildImage({ seed: 'one' }).digest)
  t.not(buildImage({ seed: 'one' }).digest, buildImage({ seed: 'two' }).digest)
  t.not(buildImage({ seed: 'one' }).digest, buildImage({ seed: 'one', layerCompression: 'none' }).digest)
  const idx = buildIndex({ kind: 'index', seed: 'one' })
  t.same(idx.manifests.map((m) => `${m.platform.os}/${m.platform.architecture}`), ['linux/amd64', 'linux/arm64'])
  t.not(idx.manifests[0]?.digest, idx.manifests[1]?.digest)
  t.equal(idx.digest, sha256Digest(idx.index))

  const dir = await mkdtemp(join(tmpdir(), 'pullpin-layout-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const img = await writeImageLayout(join(dir, 'img'), { seed: 'one' }, 'v1')
  const layoutIndex = JSON.parse(await readFile(join(dir, 'img', 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; mediaType: string; annotations: Record<string, string> }> }
  t.equal(layoutIndex.manifests[0]?.digest, img.digest)
  t.equal(layoutIndex.manifests[0]?.mediaType, MEDIA_TYPE_OCI_MANIFEST)
  t.equal(layoutIndex.manifests[0]?.annotations['org.opencontainers.image.ref.name'], 'v1')
  // Every blob is stored under its own digest.
  for (const name of await readdir(join(dir, 'img', 'blobs', 'sha256'))) {
    t.equal(sha256Digest(await readFile(join(dir, 'img', 'blobs', 'sha256', name))), `sha256:${name}`)
  }
  const multi = await writeIndexLayout(join(dir, 'multi'), { kind: 'index', seed: 'one' })
  t.equal(multi.digest, idx.digest)
  t.equal((await readdir(join(dir, 'multi', 'blobs', 'sha256'))).length, 2 * 3 + 1, '2 configs, 2 layers, 2 manifests, 1 index')
})

t.test('htpasswd registry: push, multi-arch, tag fan-out, ground truth', async (t) => {
  const started = Date.now()
  const reg = await startRegistry()
  t.comment(`registry started in ${Date.now() - started} ms`)
  t.teardown(() => reg.stop())
  t.match(reg.host, /^127\.0\.0\.1:\d+$/)
  t.equal(reg.url, `https://${reg.host}`)
  t.equal(await readFile(reg.caFile, 'utf8'), reg.caPem)
  const auths = (JSON.parse(reg.dockerConfigJson) as { auths: Record<string, { auth: string }> }).auths
  t.equal(Buffer.from(auths[reg.host]?.auth ?? '', 'base64').toString(), `${reg.username}:${reg.password}`)

  const anon = await request(`${reg.url}/v2/`, { dispatcher: reg.dispatcher })
  await anon.body.dump()
  t.equal(anon.statusCode, 401)
  t.match(String(anon.headers['www-authenticate']), /^Basic realm=/)
  const wrong = await request(`${reg.url}/v2/`, { dispatcher: reg.dispatcher, headers: { authorization: 'Basic ' + Buffer.from(`${reg.username}:nope`).toString('base64') } })
  await wrong.body.dump()
  t.equal(wrong.statusCode, 401, 'bcrypt check rejects a wrong password')

  const single = await reg.push({ seed: 'app-1' }, 'app', ['latest', 'v1'])
  t.equal(single, buildImage({ seed: 'app-1' }).digest, 'skopeo keeps the layout digest')
  t.equal(await reg.inspectDigest('app', 'v1'), single)
  const res = await fetch(`${reg.url}/v2/app/manifests/latest`, { dispatcher: reg.dispatcher, headers: { accept: MANIFEST_ACCEPT, authorization: reg.authorization('app') ?? '' } })
  const bytes = Buffer.from(await res.arrayBuffer())
  t.equal(res.status, 200)
  t.equal(res.headers.get('docker-content-digest'), single)
  t.equal(res.headers.get('content-type'), MEDIA_TYPE_OCI_MANIFEST)
  t.equal(sha256(bytes), single)

  const multi = await reg.push({ kind: 'index', seed: 'app-multi' }, 'multi', ['latest'])
  const expected = buildIndex({ kind: 'index', seed: 'app-multi' })
  t.equal(multi, expected.digest, 'index digest == skopeo inspect --raw digest')
  const head = await fetch(`${reg.url}/v2/multi/manifests/latest`, { method: 'HEAD', dispatcher: reg.dispatcher, headers: { accept: MANIFEST_ACCEPT, authorization: reg.authorization('multi') ?? '' } })
  t.equal(head.headers.get('content-type'), MEDIA_TYPE_OCI_INDEX)
  t.equal(head.headers.get('docker-content-digest'), expected.digest)
  for (const child of expected.manifests) {
    const r = await fetch(`${reg.url}/v2/multi/manifests/${child.digest}`, { method: 'HEAD', dispatcher: reg.dispatcher, headers: { accept: MANIFEST_ACCEPT, authorization: reg.authorization('multi') ?? '' } })
    t.equal(r.status, 200, `child ${child.platform.architecture} pushed by digest`)
  }

  const shas = Array.from({ length: 150 }, (_, i) => `sha-${i.toString(16).padStart(7, '0')}`)
  await reg.tag('app', 'v1', shas)
  const tags = await reg.listTags('app')
  t.equal(tags.length, 152)
  t.ok(shas.every((s) => tags.includes(s)))
  t.equal(await reg.inspectDigest('app', 'sha-0000095'), single)

  // Moving a tag to another image is visible to skopeo.
  await reg.push({ seed: 'app-2' }, 'app', ['latest'])
  t.equal(await reg.inspectDigest('app', 'latest'), buildImage({ seed: 'app-2' }).digest)
  t.equal(await reg.inspectDigest('app', 'v1'), single)

  await reg.deleteManifest('app', buildImage({ seed: 'app-2' }).digest)
  await t.rejects(reg.inspectDigest('app', 'latest'), 'deleted manifest is gone')

  await reg.stop()
  t.notOk(existsSync(reg.dir), 'temp dir removed')
  await t.rejects(request(`${reg.url}/v2/`, { dispatcher: reg.dispatcher }), 'nothing listens after stop')
})

t.test('token auth: skopeo pushes through the challenge, a pulled token works', async (t) => {
  const reg = await startRegistry({ auth: 'token', tokenServer: { allowAnonymous: true } })
  t.teardown(() => reg.stop())
  const ts = reg.tokenServer
  if (ts === undefined) throw new Error('token server missing')

  const digest = await reg.push({ seed: 'tok-1' }, 'team/app', ['latest'])
  t.equal(digest, buildImage({ seed: 'tok-1' }).digest)
  t.ok(ts.requests > 0, 'skopeo asked the token server')
  t.ok(ts.log.some((r) => r.authenticated && r.scopes.some((s) => s.startsWith('repository:team/app:') && s.includes('push'))))

  const challenge = await request(`${reg.url}/v2/team/app/manifests/latest`, { method: 'HEAD', dispatcher: reg.dispatcher })
  await challenge.body.dump()
  t.equal(challenge.statusCode, 401)
  const wa = String(challenge.headers['www-authenticate'])
  t.match(wa, /^Bearer /)
  const params = parseChallenge(wa)
  t.equal(params.realm, ts.realm)
  t.equal(params.service, ts.service)
  t.equal(params.scope, 'repository:team/app:pull')

  ts.reset()
  const basic = 'Basic ' + Buffer.from(`${reg.username}:${reg.password}`).toString('base64')
  const tokenUrl = `${params.realm}?service=${encodeURIComponent(params.service ?? '')}&scope=${encodeURIComponent(params.scope ?? '')}`
  const tokRes = await fetch(tokenUrl, { dispatcher: reg.dispatcher, headers: { authorization: basic } })
  t.equal(tokRes.status, 200)
  const body = await tokRes.json() as { token: string; access_token: string; expires_in: number }
  t.equal(body.token, body.access_token)
  t.equal(body.expires_in, 300)
  t.equal(ts.requests, 1)
  const claims = JSON.parse(Buffer.from(body.token.split('.')[1] ?? '', 'base64url').toString()) as { access: unknown[]; aud: string; iss: string; sub: string }
  t.same(claims.access, [{ type: 'repository', name: 'team/app', actions: ['pull'] }])
  t.equal(claims.aud, ts.service)
  t.equal(claims.sub, reg.username)

  const pulled = await fetch(`${reg.url}/v2/team/app/manifests/latest`, { dispatcher: reg.dispatcher, headers: { accept: MANIFEST_ACCEPT, authorization: `Bearer ${body.token}` } })
  t.equal(pulled.status, 200, 'the registry accepts the token')
  t.equal(sha256(Buffer.from(await pulled.arrayBuffer())), digest)

  // The registry really checks the token: other repo, expired, wrong audience are refused.
  const other = ts.mint([{ type: 'repository', name: 'team/other', actions: ['pull'] }])
  const expired = ts.mint([{ type: 'repository', name: 'team/app', actions: ['pull'] }], { expiresIn: -3600 })
  const wrongAud = ts.mint([{ type: 'repository', name: 'team/app', actions: ['pull'] }], { audience: 'someone-else' })
  for (const [name, token] of [['other repo', other], ['expired', expired], ['wrong audience', wrongAud]] as const) {
    const r = await request(`${reg.url}/v2/team/app/manifests/latest`, { method: 'HEAD', dispatcher: reg.dispatcher, headers: { authorization: `Bearer ${token}` } })
    await r.body.dump()
    t.equal(r.statusCode, 401, `${name} token refused`)
  }

  const badCreds = await fetch(tokenUrl, { dispatcher: reg.dispatcher, headers: { authorization: 'Basic ' + Buffer.from('pullpin:wrong').toString('base64') } })
  await badCreds.arrayBuffer()
  t.equal(badCreds.status, 401)
  const anonRes = await fetch(`${params.realm}?service=${ts.service}&scope=repository:team/app:pull,push`, { dispatcher: reg.dispatcher })
  const anonClaims = JSON.parse(Buffer.from(((await anonRes.json()) as { token: string }).token.split('.')[1] ?? '', 'base64url').toString()) as { access: unknown[] }
  t.same(anonClaims.access, [{ type: 'repository', name: 'team/app', actions: ['pull'] }], 'anonymous gets pull only')

  ts.hook = (req) => (req.n === 1 ? { action: 'status', status: 503 } : undefined)
  ts.reset()
  const failed = await fetch(tokenUrl, { dispatcher: reg.dispatcher, headers: { authorization: basic } })
  await failed.arrayBuffer()
  t.equal(failed.status, 503, 'hook makes the token server fail')
  ts.hook = undefined
})

t.test('proxy: tag paging, counting, fault injection', async (t) => {
  const reg = await startRegistry()
  t.teardown(() => reg.stop())
  const proxy = await startRegistryProxy({ upstream: reg })
  t.teardown(() => proxy.stop())
  const digest = await reg.push({ seed: 'paged' }, 'app', ['latest'])
  const extra = Array.from({ length: 120 }, (_, i) => `v${String(i).padStart(3, '0')}`)
  await reg.tag('app', 'latest', extra)
  const authz = reg.authorization('app') ?? ''
  const get = (path: string, init: { method?: string } = {}): Promise<Response> =>
    fetch(`${proxy.url}${path}`, { ...init, dispatcher: reg.dispatcher, headers: { accept: MANIFEST_ACCEPT, authorization: authz } })

  // Follow Link headers until the end.
  const seen: string[] = []
  let next: string | undefined = '/v2/app/tags/list?n=50'
  let pages = 0
  while (next !== undefined) {
    const res = await get(next)
    t.equal(res.status, 200)
    const page = await res.json() as { name: string; tags: string[] }
    t.equal(page.name, 'app')
    t.ok(page.tags.length <= 50)
    seen.push(...page.tags)
    pages++
    const link = res.headers.get('link')
    next = link === null ? undefined : /^<([^>]+)>;\s*rel="next"$/.exec(link)?.[1]
  }
  const all = [...extra, 'latest'].sort()
  t.same(seen, all, 'pages cover every tag once, in lexical order')
  t.equal(pages, 3)
  t.equal(proxy.count('GET /v2/app/tags/list'), 3)
  t.equal((await (await get('/v2/app/tags/list?n=2&last=v118')).json() as { tags: string[] }).tags.join(), 'v119')
  t.equal((await get('/v2/app/tags/list?n=x')).status, 400)

  // Pass-through: auth challenge unchanged, digest header from the registry.
  const unauth = await fetch(`${proxy.url}/v2/app/manifests/latest`, { method: 'HEAD', dispatcher: reg.dispatcher })
  t.equal(unauth.status, 401)
  t.match(unauth.headers.get('www-authenticate') ?? '', /^Basic realm=/)
  const head = await get('/v2/app/manifests/latest', { method: 'HEAD' })
  t.equal(head.headers.get('docker-content-digest'), digest)
  t.equal(proxy.counts().get('HEAD /v2/app/manifests/latest'), 2)

  // Faults.
  proxy.fault = (req) => (req.key === 'HEAD /v2/app/manifests/latest' ? { action: 'status', status: 429, headers: { 'retry-after': '2' } } : undefined)
  const limited = await get('/v2/app/manifests/latest', { method: 'HEAD' })
  t.equal(limited.status, 429)
  t.equal(limited.headers.get('retry-after'), '2')

  proxy.fault = () => ({ action: 'status', status: 500 })
  t.equal((await get('/v2/app/manifests/latest')).status, 500)

  proxy.fault = () => ({ action: 'wrong-digest' })
  const lying = await get('/v2/app/manifests/latest')
  const lyingBody = Buffer.from(await lying.arrayBuffer())
  t.not(lying.headers.get('docker-content-digest'), digest)
  t.equal(sha256(lyingBody), digest, 'body is still the real manifest')

  proxy.fault = () => ({ action: 'garbage', body: 'not a manifest' })
  const junk = await get('/v2/app/manifests/latest')
  t.equal(junk.status, 200)
  t.equal(await junk.text(), 'not a manifest')

  proxy.fault = () => ({ action: 'drop' })
  await t.rejects(get('/v2/app/manifests/latest'), 'dropped connection fails the request')

  proxy.fault = () => ({ action: 'reset' })
  await t.rejects(get('/v2/app/manifests/latest').then((r) => r.arrayBuffer()), 'reset mid-body fails the read')

  await t.rejects(get('/v2/app/manifests/latest', { method: 'HEAD' }), 'reset of a HEAD fails it')

  proxy.fault = (req) => (req.seen <= 1 ? { action: 'delay', ms: 300 } : undefined)
  const before = Date.now()
  const slow = await get('/v2/app/blobs/' + buildImage({ seed: 'paged' }).config.digest)
  t.equal(slow.status, 200)
  await slow.arrayBuffer()
  t.ok(Date.now() - before >= 290, 'delayed')
  proxy.fault = undefined

  proxy.resetCounts()
  const ok = await get('/v2/app/manifests/latest')
  await ok.arrayBuffer()
  t.equal(ok.status, 200)
  t.same([...proxy.counts()], [['GET /v2/app/manifests/latest', 1]])
})

t.test('token server options: answer shape and hooks', async (t) => {
  const ca = await createTestCa()
  const ts = await startTokenServer({ ca, users: { u: 'p' }, omitExpiresIn: true, tokenField: 'access_token' })
  t.teardown(() => ts.stop())
  const dispatcher = new Agent({ connect: { ca: ca.certPem } })
  t.teardown(() => dispatcher.close())
  const basic = 'Basic ' + Buffer.from('u:p').toString('base64')
  const res = await fetch(`${ts.realm}?service=${ts.service}&scope=repository:a:pull&scope=repository:b:push`, { dispatcher, headers: { authorization: basic } })
  const body = await res.json() as Record<string, unknown>
  t.same(Object.keys(body).sort(), ['access_token', 'issued_at'])
  const claims = JSON.parse(Buffer.from(String(body.access_token).split('.')[1] ?? '', 'base64url').toString()) as { access: unknown[] }
  t.same(claims.access, [{ type: 'repository', name: 'a', actions: ['pull'] }, { type: 'repository', name: 'b', actions: ['push'] }])
  const anon = await fetch(`${ts.realm}?service=${ts.service}&scope=repository:a:pull`, { dispatcher })
  await anon.arrayBuffer()
  t.equal(anon.status, 401, 'anonymous refused unless allowAnonymous')
  ts.hook = () => ({ action: 'body', body: 'not json' })
  t.equal(await (await fetch(ts.realm, { dispatcher, headers: { authorization: basic } })).text(), 'not json')
  t.equal(ts.requests, 3)
  t.same(ts.log.map((r) => r.authenticated), [true, false, true])
})

t.test('auth none, and skopeo pushes through the proxy', async (t) => {
  const reg: RegistryFixture = await startRegistry({ auth: 'none' })
  t.teardown(() => reg.stop())
  t.equal(reg.username, undefined)
  t.same(JSON.parse(reg.dockerConfigJson), { auths: {} })
  const proxy = await startRegistryProxy({ upstream: reg })
  t.teardown(() => proxy.stop())
  const direct = await reg.push({ seed: 'open' }, 'open', ['latest'])
  t.equal(direct, buildImage({ seed: 'open' }).digest)
  // Upload Location URLs must point back at the proxy (Host passes through), or this push fails.
  const layout = await writeImageLayout(join(reg.dir, 'via-proxy'), { seed: 'via-proxy' })
  await execFileP('skopeo', ['--insecure-policy', 'copy', '--quiet', '--dest-tls-verify=true', '--dest-cert-dir', reg.certDir,
    '--dest-no-creds', layout.ociReference, `docker://${proxy.host}/open:via-proxy`])
  t.ok(proxy.count('PUT /v2/open/manifests/via-proxy') >= 1)
  t.ok([...proxy.counts().keys()].some((k) => k.startsWith('PUT /v2/open/blobs/uploads/')), 'blob upload went through the proxy')
  t.equal(await reg.inspectDigest('open', 'via-proxy'), layout.digest)
  const res = await fetch(`${proxy.url}/v2/open/tags/list?n=10`, { dispatcher: reg.dispatcher })
  t.same(await res.json(), { name: 'open', tags: ['latest', 'via-proxy'] })
})

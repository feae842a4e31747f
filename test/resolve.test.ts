// `pullpin resolve` against the real registry.
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main } from '../src/cli.js'
import { gitSha, startPinningEnv, type PinningEnv } from './support/pinning-env.js'

let env: PinningEnv
t.before(async () => { env = await startPinningEnv() })
t.teardown(() => env.stop())

function io () {
  const out: string[] = []
  const err: string[] = []
  return { out, err, io: { out: (s: string) => out.push(s), err: (s: string) => err.push(s), env: {} } }
}

t.test('resolve prints the digest, media type, SHA tags and the pin (text and JSON)', async t => {
  const sha = gitSha('resolve-1')
  const digest = await env.registry.push({ kind: 'index', seed: 'resolve-1' }, 'acme/cli', ['latest', sha, `sha-${sha.slice(0, 7)}`])
  const image = `${env.host}/acme/cli:latest`
  const common = ['--docker-config', env.dockerConfigFile, '--ca-file', env.registry.caFile, '--allow-private']
  const a = io()
  t.equal(await main(['resolve', image, ...common], a.io), 0, a.err.join(''))
  const text = a.out.join('')
  t.match(text, new RegExp(`digest\\s+${digest}`))
  t.match(text, /media type\s+application\/vnd\.oci\.image\.index\.v1\+json/)
  t.match(text, new RegExp(`SHA tags\\s+${sha}, sha-${sha.slice(0, 7)}`))
  t.match(text, new RegExp(`pinned\\s+${env.host}/acme/cli:${sha}`))
  const b = io()
  t.equal(await main(['resolve', image, ...common, '--json', '--format', 'digest'], b.io), 0)
  const json = JSON.parse(b.out.join(''))
  t.same(json.reference, { registry: env.host, repository: 'acme/cli', name: `${env.host}/acme/cli`, tag: 'latest' })
  t.equal(json.digest, digest)
  t.equal(json.digest, await env.registry.inspectDigest('acme/cli', 'latest'), 'the digest skopeo inspect reports')
  t.equal(json.pinned, `${env.host}/acme/cli@${digest}`)
})

t.test('resolve: a missing tag exits 1 with the reason; an invalid reference exits 2; private address refused', async t => {
  const common = ['--docker-config', env.dockerConfigFile, '--ca-file', env.registry.caFile]
  const a = io()
  t.equal(await main(['resolve', `${env.host}/acme/none:latest`, ...common, '--allow-private'], a.io), 1)
  t.match(a.out.join(''), /not found/)
  const b = io()
  t.equal(await main(['resolve', 'ghcr.io/Acme/App:v1'], b.io), 2)
  t.match(b.err.join(''), /must be lowercase.*ghcr\.io\/acme\/app:v1/)
  const c = io()
  t.equal(await main(['resolve', `${env.host}/acme/cli:latest`, ...common], c.io), 1, 'loopback refused without --allow-private')
  t.match(c.out.join(''), /registry\.allowPrivate/)
  const d = io()
  t.equal(await main(['resolve'], d.io), 2)
  t.match(d.err.join(''), /exactly one IMAGE/)
})

t.test('resolve reports the webhook\'s checks: a SHA tag never pushed, an index without the nodes\' platform', async t => {
  await env.registry.push({ kind: 'index', seed: 'resolve-amd', platforms: [{ os: 'linux', architecture: 'amd64' }] }, 'acme/amd', ['v1'])
  const common = ['--docker-config', env.dockerConfigFile, '--ca-file', env.registry.caFile, '--allow-private']
  const clean = io()
  t.equal(await main(['resolve', `${env.host}/acme/amd:v1`, ...common], clean.io), 0)
  t.match(clean.out.join(''), /^checks\s+ok$/m)
  const cfg = join(env.dir, 'resolve-arm.yaml')
  await writeFile(cfg, 'checks: { nodePlatforms: [linux/arm64] }\n')
  const arm = io()
  t.equal(await main(['resolve', `${env.host}/acme/amd:v1`, ...common, '--config', cfg, '--json'], arm.io), 0)
  t.same(JSON.parse(arm.out.join('')).findings, [{ check: 'platforms', reason: 'PlatformMissing', message: `image: ${env.host}/acme/amd has no linux/arm64 build (has linux/amd64)` }])
  const never = io()
  t.equal(await main(['resolve', `${env.host}/acme/amd:${gitSha('never')}`, ...common], never.io), 1)
  t.match(never.out.join(''), /^checks\s+exists: ImageNotFound$/m)
  t.match(never.out.join(''), /not pushed by CI\?/)
})

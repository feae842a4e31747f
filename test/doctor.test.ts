// `pullpin doctor` as a process: against the real registry (htpasswd, and token auth with the test
// token server) for all good, a wrong password, a credential scoped to another repository, a
// missing tag, an uppercase owner and an untrusted certificate
// (test/doctor-cluster.test.ts has the cluster side).
import t from 'tap'
import { startRegistry, type RegistryFixture } from './support/registry.js'
import { checkLine, doctorConfigFor, inProcess, spawnCli, TempFiles, type Ran } from './support/cli.js'
import { gitSha } from './support/pinning-env.js'

let files: TempFiles
let basic: RegistryFixture
let token: RegistryFixture
const SCOPED_PASSWORD = 'scoped-secret-pw'
t.before(async () => {
  files = await TempFiles.create('pullpin-doctor-')
  basic = await startRegistry()
  token = await startRegistry({
    auth: 'token',
    extraUsers: { scoped: SCOPED_PASSWORD },
    tokenServer: {
      // "scoped" may pull acme/other only; the registry then refuses its token for acme/web.
      grant: (req, resource) => req.account === 'scoped' ? (resource.name === 'acme/other' ? ['pull'] : []) : resource.actions,
    },
  })
})
t.teardown(async () => {
  await basic.stop()
  await token.stop()
  await files.remove()
})
const doctor = (args: string[]): Promise<Ran> => inProcess(args)
const pullpin = (args: string[]): Promise<Ran> => spawnCli(args)
const configFor = (r: RegistryFixture, opts: Parameters<typeof doctorConfigFor>[2] = {}): Promise<string[]> => doctorConfigFor(files, r, opts)
const line = checkLine

t.test('all good: every check passes, exit 0, the SHA tag is named; the password is never printed', async t => {
  const sha = gitSha('doctor-ok')
  await basic.push({ kind: 'index', seed: 'doctor-ok' }, 'acme/web', ['latest', sha])
  const r = await pullpin(['doctor', `${basic.host}/acme/web:latest`, ...await configFor(basic), '--platform', 'linux/amd64'])
  t.equal(r.code, 0, r.stdout + r.stderr)
  for (const title of ['reference is valid', 'registry allowed', 'DNS resolves', 'TCP connection', 'TLS certificate trusted', '/v2/ challenge', 'credential that applies', 'access to the repository', 'tag or digest exists', 'platforms', 'SHA tag to pin to']) {
    t.match(line(r.stdout, title), /^✓ /, title)
  }
  t.match(line(r.stdout, '/v2/ challenge'), /Basic/)
  t.match(line(r.stdout, 'credential that applies'), /entry "127\.0\.0\.1:\d+" \(user pullpin\)/)
  t.match(line(r.stdout, 'platforms'), /linux\/amd64/)
  t.match(line(r.stdout, 'SHA tag'), `would pin to ${basic.host}/acme/web:${sha}`)
  t.match(r.stdout, /all checks passed/)
  t.notMatch(r.stdout, basic.password!, 'no secret material')
  const json = await doctor(['doctor', `${basic.host}/acme/web:latest`, ...await configFor(basic), '--output', 'json'])
  t.equal(json.code, 0)
  const doc = JSON.parse(json.stdout)
  t.equal(doc.ok, true)
  t.same(doc.checks.map((c: any) => c.id), ['reference', 'allowlist', 'dns', 'tcp', 'tls', 'challenge', 'credential', 'token', 'exists', 'platforms', 'pin'])
  const arm = await doctor(['doctor', `${basic.host}/acme/web:latest`, ...await configFor(basic), '--platform', 'linux/riscv64'])
  t.equal(arm.code, 1, 'a platform the index does not have fails')
  t.match(line(arm.stdout, 'platforms'), /^✗ .*not linux\/riscv64/)
})

t.test('wrong password: the registry answers 401, the fix says to renew the credential', async t => {
  await basic.push({ kind: 'image', seed: 'doctor-401' }, 'acme/api', ['v1'])
  const r = await pullpin(['doctor', `${basic.host}/acme/api:v1`, ...await configFor(basic, { password: 'wrong-password' })])
  t.equal(r.code, 1)
  t.match(line(r.stdout, 'access to the repository'), /^✗ .*HTTP 401 with Basic credentials/)
  t.match(r.stdout, /fix: the user name or password is wrong/)
  t.match(line(r.stdout, 'tag or digest exists'), /^– /, 'later checks skipped')
  t.notMatch(r.stdout, 'wrong-password')
})

t.test('token auth: a credential scoped to another repository is refused for this one; a 403 from the realm too', async t => {
  await token.push({ kind: 'image', seed: 'doctor-403' }, 'acme/web', ['v1', gitSha('doctor-403')])
  const good = await doctor(['doctor', `${token.host}/acme/web:v1`, ...await configFor(token)])
  t.equal(good.code, 0, good.stdout)
  t.match(line(good.stdout, '/v2/ challenge'), /Bearer, realm https:\/\/127\.0\.0\.1:\d+\/token, service pullpin-test-registry \(allowed\)/)
  t.match(line(good.stdout, 'access to the repository'), /token for repository:acme\/web:pull accepted/)

  const scoped = await doctor(['doctor', `${token.host}/acme/web:v1`, ...await configFor(token, { user: 'scoped', password: SCOPED_PASSWORD })])
  t.equal(scoped.code, 1)
  t.match(line(scoped.stdout, 'access to the repository'), /^✗ .*HTTP 401 \(insufficient_scope\) with a token for repository:acme\/web:pull/)
  t.match(scoped.stdout, /fix: the credential works but is scoped to other repositories: grant it pull on acme\/web/)

  token.tokenServer!.hook = (req) => req.account === 'scoped' ? { action: 'status', status: 403, body: { errors: [{ code: 'DENIED', message: 'denied' }] } } : undefined
  t.teardown(() => { token.tokenServer!.hook = undefined })
  const denied = await doctor(['doctor', `${token.host}/acme/web:v1`, ...await configFor(token, { user: 'scoped', password: SCOPED_PASSWORD })])
  t.equal(denied.code, 1)
  t.match(line(denied.stdout, 'access to the repository'), /^✗ the token realm answered HTTP 403 for repository:acme\/web:pull/)
  t.match(denied.stdout, /fix: the credential is valid but may not pull acme\/web/)
  t.notMatch(denied.stdout, SCOPED_PASSWORD)
})

t.test('missing tag, uppercase owner, untrusted TLS', async t => {
  const missing = await doctor(['doctor', `${basic.host}/acme/web:never-pushed`, ...await configFor(basic)])
  t.equal(missing.code, 1)
  t.match(line(missing.stdout, 'tag or digest exists'), /^✗ .*acme\/web:never-pushed is not on .*ImagePullBackOff/)
  t.match(line(missing.stdout, 'access to the repository'), /^✓ /, 'access is fine: only the tag is missing')

  const upper = await doctor(['doctor', `${basic.host}/Acme/web:latest`, ...await configFor(basic)])
  t.equal(upper.code, 1)
  t.match(line(upper.stdout, 'reference is valid'), /^✗ .*must be lowercase/)
  t.match(upper.stdout, new RegExp(`fix: use ${basic.host.replace(/\./g, '\\.')}/acme/web:latest`))

  const tls = await doctor(['doctor', `${basic.host}/acme/web:latest`, ...await configFor(basic, { ca: false })])
  t.equal(tls.code, 1)
  t.match(line(tls.stdout, 'TLS certificate trusted'), /^✗ (UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|unable to verify).*issued by pullpin test CA/)
  t.match(tls.stdout, /fix: a registry behind a private CA needs that CA: set registry\.options\."127\.0\.0\.1:\d+"\.caFile/)
  t.match(line(tls.stdout, 'TCP connection'), /^✓ /)
  const withCa = await doctor(['doctor', `${basic.host}/acme/web:latest`, ...await configFor(basic, { ca: false }), '--ca-file', basic.caFile])
  t.equal(withCa.code, 0, '--ca-file supplies the CA')
})

// Keyring lookups (kubelet BasicDockerKeyring semantics) and secret hygiene.
import t from 'tap'
import { inspect } from 'node:util'
import { Keyring, type RegistryCredential } from '../src/registry/keyring.js'
import { parseImageReference } from '../src/reference/index.js'
import { isCodedError } from '../src/errors.js'

const b64 = (s: string): string => Buffer.from(s).toString('base64')
const users = (creds: RegistryCredential[]): string[] => creds.map((c) => c.username)

function configError (configs: Parameters<typeof Keyring.fromDockerConfigs>[0]): Error & { code: string } {
  try {
    Keyring.fromDockerConfigs(configs)
  } catch (err) {
    if (isCodedError(err)) return err
    throw err
  }
  throw new Error('expected fromDockerConfigs to throw')
}

t.test('kubelet TestDockerKeyringLookup: most specific key first', async (t) => {
  const kr = Keyring.fromDockerConfigs([{
    source: 'ns/pull',
    json: {
      auths: {
        'bar.example.com/pong': { username: 'grace', password: 'squash' },
        'bar.example.com': { username: 'ada', password: 'smash' },
      }
    },
  }])
  t.same(users(kr.lookup('bar.example.com/x')), ['ada'], 'direct host match')
  t.same(users(kr.lookup('bar.example.com/pong')), ['grace', 'ada'], 'deeper match first')
  t.same(users(kr.lookup('bar.example.com/ping')), ['ada'], 'no direct match, deeper path ignored')
  t.same(users(kr.lookup('bar.example.com/pongz')), ['grace', 'ada'], 'match first part of path token')
  t.same(users(kr.lookup('bar.example.com/pong/pang:v1')), ['grace', 'ada'], 'match regardless of sub-path, tag dropped')
  t.same(users(kr.lookup('example.com/x')), [], 'no host match')
  t.same(users(kr.lookup('foo.example.com/x')), [], 'no host match')
  t.equal(kr.size, 2)
  const [grace] = kr.lookup('bar.example.com/pong')
  t.equal(grace?.password, 'squash')
  t.equal(grace?.source, 'ns/pull')
  t.equal(grace?.key, 'bar.example.com/pong')
})

t.test('kubelet TestIssue3797: scheme and /v1/ path stripped from keys', async (t) => {
  const kr = Keyring.fromDockerConfigs([{ source: 'f', json: { 'https://quay.io/v1/': { username: 'rex', password: 'tiny arms' } } }])
  for (const image of ['quay.io/foo', 'quay.io/foo/bar', 'quay.io/foo/bar:1']) t.same(users(kr.lookup(image)), ['rex'], image)
  t.equal(kr.lookup('quay.io/foo')[0]?.key, 'https://quay.io/v1/', 'the key as written is reported')
})

t.test('precedence across several configs', async (t) => {
  const kr = Keyring.fromDockerConfigs([
    { source: '/etc/pullpin/config.json', json: JSON.stringify({ auths: { 'ghcr.io': { auth: b64('file-user:file-pass') } } }) },
    { source: 'team-a/ghcr', json: { auths: { 'https://ghcr.io/v2/': { username: 'secret-user', password: 'secret-pass' }, 'ghcr.io/org': { username: 'org-user', password: 'org-pass' } } } },
    { source: 'team-b/gcr', json: { auths: { '*.gcr.io': { username: 'wild', password: 'w' }, 'us.gcr.io': { username: 'us', password: 'u' } } } },
  ])
  // ghcr.io/org sorts before ghcr.io; both ghcr.io keys normalize to the same key, config order kept
  t.same(users(kr.lookup('ghcr.io/org/app:v1')), ['org-user', 'file-user', 'secret-user'])
  t.same(kr.lookup('ghcr.io/org/app').map((c) => c.source), ['team-a/ghcr', '/etc/pullpin/config.json', 'team-a/ghcr'])
  t.same(users(kr.lookup('ghcr.io/other/app')), ['file-user', 'secret-user'])
  t.same(users(kr.lookup('us.gcr.io/p/app')), ['us', 'wild'], 'exact host before wildcard')
  t.same(users(kr.lookup('eu.gcr.io/p/app')), ['wild'])
  t.same(users(kr.lookup('gcr.io/p/app')), [])
  t.same(users(kr.lookup(parseImageReference('us.gcr.io/p/app@sha256:' + 'a'.repeat(64)))), ['us', 'wild'], 'parsed references accepted')
  t.same(users(kr.lookup('nginx')), [], 'no Docker Hub credentials configured')
  t.same(users(kr.lookup('Not/A/Valid:-image')), [], 'unparsable image gets nothing')
  t.equal(kr.size, 5)
  t.not(kr.lookup('ghcr.io/x'), kr.lookup('ghcr.io/x'), 'a fresh array each call')
})

t.test('Docker Hub aliases and the default-registry fallback', async (t) => {
  const hub = Keyring.fromDockerConfigs([{ source: 's', json: { auths: { 'https://index.docker.io/v1/': { auth: b64('hubuser:hubpass') } } } }])
  for (const image of ['nginx', 'nginx:1.25', 'library/nginx', 'user/app', 'google/docker-registry', 'jenkins', 'docker.io/user/app', 'index.docker.io/user/app:v1']) {
    t.same(users(hub.lookup(image)), ['hubuser'], image)
  }
  for (const image of ['ghcr.io/user/app', 'world.mesos.org/foo/bar', 'localhost/app', 'localhost:5000/app', 'Foo/bar']) {
    t.same(users(hub.lookup(image)), [], `${image} gets no Docker Hub credentials`)
  }

  // "docker.io" matches hub images directly; the fallback is only used when nothing matched
  const both = Keyring.fromDockerConfigs([
    { source: 'a', json: { auths: { 'https://index.docker.io/v1/': { username: 'legacy', password: 'x' } } } },
    { source: 'b', json: { auths: { 'docker.io': { username: 'modern', password: 'y' }, 'docker.io/myorg': { username: 'org', password: 'z' } } } },
  ])
  t.same(users(both.lookup('nginx')), ['modern'])
  t.same(users(both.lookup('myorg/app')), ['org', 'modern'])
  t.same(users(both.lookup('docker.io/myorg/app')), ['org', 'modern'])

  const plain = Keyring.fromDockerConfigs([{ source: 'c', json: { auths: { 'index.docker.io': { username: 'bare', password: 'x' } } } }])
  t.same(users(plain.lookup('user/app')), ['bare'], 'index.docker.io without scheme is the same key')
})

t.test('ports and paths in keys', async (t) => {
  const kr = Keyring.fromDockerConfigs([{
    source: 's',
    json: {
      auths: {
        'registry.example.com:5000/team': { username: 'team', password: 'p' },
        'localhost:5000': { username: 'local', password: 'p' },
      }
    }
  }])
  t.same(users(kr.lookup('registry.example.com:5000/team/app:1')), ['team'])
  t.same(users(kr.lookup('registry.example.com/team/app')), [])
  t.same(users(kr.lookup('registry.example.com:5001/team/app')), [])
  t.same(users(kr.lookup('registry.example.com:5000/other/app')), [])
  t.same(users(kr.lookup('localhost:5000/app')), ['local'])
  t.same(users(kr.lookup('localhost/app')), [])
})

t.test('entry formats', async (t) => {
  const kr = Keyring.fromDockerConfigs([
    { source: 'padded', json: { auths: { 'a.example.com': { auth: b64('user-a:pa:ss:word') } } } },
    { source: 'unpadded', json: { auths: { 'b.example.com': { auth: b64('user-b:pw').replace(/=+$/, '') } } } },
    { source: 'override', json: { auths: { 'c.example.com': { username: 'ignored', password: 'ignored', auth: b64('user-c:pw-c') } } } },
    { source: 'fields', json: { auths: { 'd.example.com': { username: 'user-d', password: 'pw-d', email: 'd@example.com' } } } },
    { source: 'wrapped', json: { auths: { 'e.example.com': { auth: `${b64('user-e:pw-e').slice(0, 4)}\n${b64('user-e:pw-e').slice(4)}` } } } },
    { source: 'empty-auth', json: { auths: { 'f.example.com': { auth: '', username: 'user-f', password: 'pw-f' } } } },
    { source: 'legacy-dockercfg', json: JSON.stringify({ 'https://g.example.com': { auth: b64('user-g:pw-g'), email: 'g@example.com' } }) },
    { source: 'bytes', json: Buffer.from(JSON.stringify({ auths: { 'h.example.com': { username: 'user-h', password: 'pw-h' } } })) },
    { source: 'token-only', json: { auths: { 'i.example.com': { identitytoken: 'refresh-token' }, 'j.example.com': { registrytoken: 'bearer' }, 'k.example.com': {}, 'l.example.com': null } } },
    { source: 'helpers-only', json: { credsStore: 'desktop', credHelpers: { 'gcr.io': 'gcloud' } } },
    { source: 'null-auths', json: { auths: null } },
  ])
  const one = (image: string): [string, string] | undefined => {
    const c = kr.lookup(image)[0]
    return c === undefined ? undefined : [c.username, c.password]
  }
  t.same(one('a.example.com/x'), ['user-a', 'pa:ss:word'], 'split on the first colon')
  t.same(one('b.example.com/x'), ['user-b', 'pw'], 'unpadded base64')
  t.same(one('c.example.com/x'), ['user-c', 'pw-c'], 'auth overrides username/password')
  t.same(one('d.example.com/x'), ['user-d', 'pw-d'])
  t.same(one('e.example.com/x'), ['user-e', 'pw-e'], 'newlines inside base64 are skipped, as by Go')
  t.same(one('f.example.com/x'), ['user-f', 'pw-f'], 'an empty auth falls back to username/password')
  t.same(one('g.example.com/x'), ['user-g', 'pw-g'], 'legacy dockercfg')
  t.same(one('h.example.com/x'), ['user-h', 'pw-h'], 'Uint8Array input')
  for (const host of ['i', 'j', 'k', 'l']) t.equal(one(`${host}.example.com/x`), undefined, `${host}: no username/password, skipped`)
  t.equal(kr.size, 8)
  t.equal(Keyring.fromDockerConfigs([]).size, 0)
})

t.test('malformed input: coded error naming the source, never the secret', async (t) => {
  const PASSWORD = 'hunter2-Sup3rS3cret'
  const cases: Array<{ name: string; json: string | object; reason: RegExp }> = [
    { name: 'broken JSON right after the password', json: `{"auths":{"ghcr.io":{"username":"u","password":"${PASSWORD}"}}`, reason: /not valid JSON/ },
    { name: 'password in an unquoted token', json: `{"auths":{"ghcr.io":{"password":${PASSWORD}}}}`, reason: /not valid JSON/ },
    { name: 'auth that is not base64', json: { auths: { 'ghcr.io': { auth: `${PASSWORD}!!` } } }, reason: /auths entry "ghcr.io": "auth" must be base64 of "username:password"/ },
    { name: 'auth without a colon', json: { auths: { 'ghcr.io': { auth: b64(PASSWORD) } } }, reason: /"auth" must be base64/ },
    { name: 'padded auth with bad length', json: { auths: { 'ghcr.io': { auth: `${b64(`u:${PASSWORD}`)}A=` } } }, reason: /"auth" must be base64/ },
    { name: 'password not a string', json: { auths: { 'ghcr.io': { username: PASSWORD, password: 12345 } } }, reason: /"password" must be a string/ },
    { name: 'entry not an object', json: { auths: { 'ghcr.io': PASSWORD } }, reason: /auths entry "ghcr.io" must be an object/ },
    { name: 'auths not an object', json: { auths: [PASSWORD] }, reason: /"auths" must be an object/ },
    { name: 'top level array', json: `["${PASSWORD}"]`, reason: /must be a JSON object/ },
    { name: 'empty', json: '  ', reason: /empty/ },
  ]
  // V8's JSON.parse messages quote about ten characters around the error, so look for a
  // fragment of the password, not just the whole of it.
  const FRAGMENT = PASSWORD.slice(0, 7)
  for (const c of cases) {
    const err = configError([{ source: 'team-a/ghcr-pull', json: c.json }])
    t.equal(err.code, 'PULLPIN_CONFIG_INVALID', c.name)
    t.match(err.message, /^invalid config team-a\/ghcr-pull: /, `${c.name}: names the source`)
    t.match(err.message, c.reason, `${c.name}: ${err.message}`)
    t.notOk(err.message.includes(FRAGMENT), `${c.name}: password absent from message`)
    t.notOk(JSON.stringify(err).includes(FRAGMENT), `${c.name}: password absent from JSON.stringify(err)`)
    t.notOk(String(err.stack).includes(FRAGMENT), `${c.name}: password absent from stack`)
    t.notOk(inspect(err).includes(FRAGMENT), `${c.name}: password absent from inspect(err)`)
  }
  // one bad config fails the whole build, like the kubelet's unmarshal
  const err = configError([{ source: 'good', json: { auths: { 'a.io': { username: 'u', password: 'p' } } } }, { source: 'bad', json: '{' }])
  t.match(err.message, /invalid config bad: docker config is not valid JSON/)
})

t.test('the keyring never serializes credentials', async (t) => {
  const PASSWORD = 'p4ss-w0rd-value'
  const AUTH = b64(`robot:${PASSWORD}`)
  const kr = Keyring.fromDockerConfigs([
    { source: '/etc/pullpin/docker.json', json: { auths: { 'ghcr.io': { auth: AUTH } } } },
    { source: 'ns/secret', json: { auths: { 'https://index.docker.io/v1/': { username: 'hub', password: PASSWORD } } } },
  ])
  const json = JSON.stringify(kr)
  t.notOk(json.includes(PASSWORD))
  t.notOk(json.includes(AUTH))
  t.same(JSON.parse(json), [
    { key: 'https://index.docker.io/v1/', source: 'ns/secret' },
    { key: 'ghcr.io', source: '/etc/pullpin/docker.json' },
  ], 'only keys and sources, in index order (reverse lexical by normalized key)')
  t.notOk(String(kr).includes(PASSWORD))
  t.equal(String(kr), 'Keyring(2 credentials)')
  t.notOk(inspect(kr, { depth: 10, showHidden: true }).includes(PASSWORD))
  t.notOk(JSON.stringify({ kr }).includes(PASSWORD))

  // a credential handed out by lookup keeps its password readable but redacts it when serialized
  const [cred] = kr.lookup('ghcr.io/org/app')
  t.equal(cred?.username, 'robot')
  t.equal(cred?.password, PASSWORD)
  t.notOk(JSON.stringify(cred).includes(PASSWORD))
  t.match(JSON.parse(JSON.stringify(cred)), { username: 'robot', password: '[redacted]', key: 'ghcr.io', source: '/etc/pullpin/docker.json' })
  t.notOk(inspect(cred).includes(PASSWORD))
  t.notOk(JSON.stringify(kr.lookup('nginx')).includes(PASSWORD))
  t.ok(Object.isFrozen(cred), 'credentials cannot be altered by a caller')
})

t.test('a parsed reference finds exactly what its string finds', async (t) => {
  const kr = Keyring.fromDockerConfigs([{
    source: 'ns/pull',
    json: {
      auths: {
        'bar.example.com/pong': { username: 'grace', password: 'a' },
        'bar.example.com': { username: 'ada', password: 'b' },
        '*.example.com:5000': { username: 'port', password: 'c' },
        'https://index.docker.io/v1/': { username: 'hub', password: 'd' },
        '[::1]:5000/team': { username: 'v6', password: 'e' },
        '127.0.0.1:5000': { username: 'local', password: 'f' },
      },
    },
  }])
  const images = ['bar.example.com/pong/x:1', 'bar.example.com/x', 'r.example.com:5000/a', 'x.r.example.com:5000/a', 'nginx', 'library/nginx:1',
    '[::1]:5000/team/app', '[::1]:5000/other', '127.0.0.1:5000/acme/web:latest', '127.0.0.1:5001/acme/web', 'ghcr.io/acme/web']
  for (const image of images) {
    const byString = users(kr.lookup(image))
    t.same(users(kr.lookup(parseImageReference(image))), byString, `${image}: ${byString.join(',') || 'none'}`)
  }
  t.same(users(kr.lookup('nginx')), ['hub'], 'Docker Hub falls back to index.docker.io')
  t.same(users(kr.lookup('[::1]:5000/team/app')), ['v6'])
  t.same(users(kr.lookup('r.example.com:5000/a')), ['port'])
})

// Registry glob matching, checked against the kubelet's own cases
// (k8s.io/kubernetes pkg/credentialprovider/keyring_test.go: TestURLsMatch,
// TestDockerKeyringForGlob, TestKeyringMiss, TestIsDefaultRegistryMatch) plus Docker Hub and ports.
import t from 'tap'
import {
  compileRegistryGlob,
  compileRegistryKey,
  isDockerHubImage,
  normalizeRegistryKey,
  normalizedImageName,
  parseImageReference,
  registryGlobMatches,
  registryUrlsMatch,
} from '../src/reference/index.js'
import { createSecretSelector } from '../src/mutate/inject-secrets.js'
import { Keyring } from '../src/registry/keyring.js'
import { tryParseImageReference } from '../src/reference/parse.js'

const SHA256 = `sha256:${'e'.repeat(64)}`

t.test('kubelet TestURLsMatch (schemeless URLs)', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    // match when there is no path component
    ['*.kubernetes.io', 'prefix.kubernetes.io', true],
    ['prefix.*.io', 'prefix.kubernetes.io', true],
    ['prefix.kubernetes.*', 'prefix.kubernetes.io', true],
    ['*-good.kubernetes.io', 'prefix-good.kubernetes.io', true],
    // match with path components
    ['*.kubernetes.io/blah', 'prefix.kubernetes.io/blah', true],
    ['prefix.*.io/foo', 'prefix.kubernetes.io/foo/bar', true],
    // match with path components and ports
    ['*.kubernetes.io:1111/blah', 'prefix.kubernetes.io:1111/blah', true],
    ['prefix.*.io:1111/foo', 'prefix.kubernetes.io:1111/foo/bar', true],
    // no match when number of parts mismatch
    ['*.kubernetes.io', 'kubernetes.io', false],
    ['*.*.kubernetes.io', 'prefix.kubernetes.io', false],
    ['*.*.kubernetes.io', 'kubernetes.io', false],
    // no match when some parts mismatch
    ['kubernetes.io', 'kubernetes.com', false],
    ['k*.io', 'quay.io', false],
    // no match when ports mismatch
    ['*.kubernetes.io:1234/blah', 'prefix.kubernetes.io:1111/blah', false],
    ['prefix.*.io/foo', 'prefix.kubernetes.io:1111/foo/bar', false],
  ]
  for (const [glob, target, expected] of cases) {
    t.equal(registryUrlsMatch(glob, target), expected, `${glob} vs ${target}`)
  }
})

t.test('kubelet TestDockerKeyringForGlob / TestKeyringMiss (keys normalized like Add)', async (t) => {
  const hits: Array<[string, string]> = [
    ['https://hello.kubernetes.io', 'hello.kubernetes.io'],
    ['https://*.docker.io', 'prefix.docker.io'],
    ['https://prefix.*.io', 'prefix.docker.io'],
    ['https://prefix.docker.*', 'prefix.docker.io'],
    ['https://*.docker.io/path', 'prefix.docker.io/path'],
    ['https://prefix.*.io/path', 'prefix.docker.io/path/subpath'],
    ['https://prefix.docker.*/path', 'prefix.docker.io/path'],
    ['https://*.docker.io:8888', 'prefix.docker.io:8888'],
    ['https://prefix.*.io:8888', 'prefix.docker.io:8888'],
    ['https://prefix.docker.*:8888', 'prefix.docker.io:8888'],
    ['https://*.docker.io/path:1111', 'prefix.docker.io/path:1111'],
    ['https://*.docker.io/v1/', 'prefix.docker.io/path:1111'],
    ['https://*.docker.io/v2/', 'prefix.docker.io/path:1111'],
    ['https://prefix.docker.*/path:1111', 'prefix.docker.io/path:1111'],
    ['prefix.docker.io:1111', 'prefix.docker.io:1111/path'],
    ['*.docker.io:1111', 'prefix.docker.io:1111/path'],
  ]
  for (const [glob, target] of hits) {
    t.ok(registryUrlsMatch(normalizeRegistryKey(glob), `${target}/foo/bar`), `${glob} finds ${target}`)
  }
  const misses: Array<[string, string]> = [
    ['https://hello.kubernetes.io', 'world.mesos.org/foo/bar'],
    ['https://*.docker.com', 'prefix.docker.io'],
    ['https://suffix.*.io', 'prefix.docker.io'],
    ['https://prefix.docker.c*', 'prefix.docker.io'],
    ['https://prefix.*.io/path:1111', 'prefix.docker.io/path/subpath:1111'],
    ['suffix.*.io', 'prefix.docker.io'],
  ]
  for (const [glob, target] of misses) {
    t.notOk(registryUrlsMatch(normalizeRegistryKey(glob), `${target}/foo/bar`), `${glob} misses ${target}`)
  }
})

t.test('the same globs against pod image strings', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['*.kubernetes.io', 'prefix.kubernetes.io/app:1', true],
    ['prefix.*.io', 'prefix.kubernetes.io/app', true],
    ['*-good.kubernetes.io', 'prefix-good.kubernetes.io/app', true],
    ['*.kubernetes.io/blah', 'prefix.kubernetes.io/blah/app', true],
    ['*.kubernetes.io/blah', 'prefix.kubernetes.io/other/app', false],
    ['*.kubernetes.io:1111/blah', 'prefix.kubernetes.io:1111/blah/app:v2', true],
    ['*.kubernetes.io', 'kubernetes.io/app', false],
    ['*.*.kubernetes.io', 'prefix.kubernetes.io/app', false],
    ['k*.io', 'quay.io/app', false],
    ['*.kubernetes.io:1234/blah', 'prefix.kubernetes.io:1111/blah/app', false],
    ['prefix.*.io/foo', 'prefix.kubernetes.io:1111/foo/bar', false],
    ['*.gcr.io', 'us.gcr.io/proj/app:1', true],
    ['*.gcr.io', 'gcr.io/proj/app:1', false],
    ['*.gcr.io', 'a.b.gcr.io/proj/app', false],
    ['ghcr.io', 'ghcr.io/org/app:v1', true],
    ['ghcr.io', 'ghcr.io.evil.com/org/app', false],
    ['ghcr.io', 'evilghcr.io/org/app', false],
    ['https://ghcr.io/v2/', 'ghcr.io/org/app', true],
    ['http://ghcr.io', 'ghcr.io/org/app', true],
    // tag and digest are dropped before matching
    ['ghcr.io/org', `ghcr.io/org/app:v1@${SHA256}`, true],
    ['ghcr.io/org', `ghcr.io/org/app@${SHA256}`, true],
    // the path is a string prefix, exactly as the kubelet does it
    ['registry.example.com/team', 'registry.example.com/team/app:1', true],
    ['registry.example.com/team', 'registry.example.com/teamster/app', true],
    ['registry.example.com/team/', 'registry.example.com/teamster/app', false],
    ['registry.example.com/team', 'registry.example.com/other/app', false],
    ['registry.example.com/', 'registry.example.com/other/app', true],
    // Go filepath.Match syntax in host parts
    ['?cr.io', 'gcr.io/x', true],
    ['?cr.io', 'ghcr.io/x', false],
    ['[gq]cr.io', 'gcr.io/x', true],
    ['[gq]cr.io', 'qcr.io/x', true],
    ['[gq]cr.io', 'xcr.io/x', false],
    ['[^g]cr.io', 'gcr.io/x', false],
    ['[^g]cr.io', 'qcr.io/x', true],
    ['[a-h]cr.io', 'gcr.io/x', true],
    ['[a-f]cr.io', 'gcr.io/x', false],
    ['g\\cr.io', 'gcr.io/x', true],
    ['*', 'localhost/x', true],
    ['*', 'localhost:5000/x', false],
    ['*.*', 'ghcr.io/x', true],
    ['*.*', 'docker.io/x', true],
    // host comparison is case-sensitive, like filepath.Match in the kubelet
    ['GHCR.io', 'ghcr.io/x', false],
    ['ghcr.io', 'GHCR.io/x', false],
  ]
  for (const [glob, image, expected] of cases) {
    t.equal(registryGlobMatches(glob, image), expected, `${glob} vs ${image}`)
  }
})

t.test('ports', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['localhost:5000', 'localhost:5000/app', true],
    ['localhost:5000', 'localhost:5000/app:v1', true],
    ['localhost:5000', 'localhost/app', false],
    ['localhost:5000', 'localhost:5001/app', false],
    ['localhost', 'localhost:5000/app', false],
    ['localhost', 'localhost/app', true],
    ['127.0.0.1:5443', '127.0.0.1:5443/team/app:1.0', true],
    ['127.0.0.1', '127.0.0.1:5443/team/app', false],
    ['127.0.0.*:5443', '127.0.0.1:5443/app', true],
    ['registry.example.com:5000/team', 'registry.example.com:5000/team/app', true],
    ['registry.example.com:5000/team', 'registry.example.com/team/app', false],
    ['registry.example.com:5000/team', 'registry.example.com:5001/team/app', false],
    ['https://registry.example.com:5000/v2/', 'registry.example.com:5000/team/app', true],
    ['[::1]:5000', '[::1]:5000/repo', true],
    ['[::1]:5000', '[::1]:5001/repo', false],
    ['[::1]', '[::1]/repo', true],
    ['[::1]', '[::1]:5000/repo', false],
    ['[2001:db8::1]:5000', '[2001:db8::1]:5000/repo:tag', true],
  ]
  for (const [glob, image, expected] of cases) {
    t.equal(registryGlobMatches(glob, image), expected, `${glob} vs ${image}`)
  }
})

t.test('Docker Hub default-registry fallback', async (t) => {
  const hubImages = ['nginx', 'nginx:1.25', 'library/nginx', 'user/app', `user/app@${SHA256}`, 'docker.io/user/app', 'docker.io/library/nginx:latest', 'index.docker.io/library/nginx', 'index.docker.io/user/app:v1']
  const notHub = ['ghcr.io/user/app', 'localhost/app', 'localhost:5000/app', 'registry.tld/foo/bar', 'registry:5000/foo/bar', 'myhostdocker.io/foo/bar', 'Foo/bar']
  for (const pattern of ['docker.io', 'index.docker.io', 'https://index.docker.io/v1/', 'https://index.docker.io/v2/', 'http://index.docker.io']) {
    for (const image of hubImages) t.ok(registryGlobMatches(pattern, image), `${pattern} matches ${image}`)
    for (const image of notHub) t.notOk(registryGlobMatches(pattern, image), `${pattern} does not match ${image}`)
  }
  // only the bare default key falls back; a path under it is matched like any other key
  t.notOk(registryGlobMatches('index.docker.io/user', 'user/app'))
  t.ok(registryGlobMatches('docker.io/user', 'user/app'))
  t.notOk(registryGlobMatches('docker.io/user', 'other/app'))
  t.ok(registryGlobMatches('docker.io/library', 'nginx'))
  // the fallback belongs to registryGlobMatches/compileRegistryGlob, not to raw URL matching
  t.notOk(registryUrlsMatch('index.docker.io', 'docker.io/library/nginx'))
  t.ok(registryUrlsMatch('docker.io', 'docker.io/library/nginx'))

  // kubelet TestIsDefaultRegistryMatch, on normalized images
  const hub: Array<[string, boolean]> = [
    ['foo/bar', true], ['docker.io/foo/bar', true], ['index.docker.io/foo/bar', true], ['foo', true],
    ['', false], ['registry.tld/foo/bar', false], ['registry:5000/foo/bar', false], ['myhostdocker.io/foo/bar', false],
  ]
  for (const [image, expected] of hub) t.equal(isDockerHubImage(image), expected, `isDockerHubImage(${JSON.stringify(image)})`)
  t.ok(isDockerHubImage(parseImageReference('nginx')))
  t.notOk(isDockerHubImage({ registry: 'ghcr.io', repository: 'x/y' }))
})

t.test('normalizeRegistryKey is BasicDockerKeyring.Add', async (t) => {
  const cases: Array<[string, string]> = [
    ['https://index.docker.io/v1/', 'index.docker.io'],
    ['https://index.docker.io/v2/', 'index.docker.io'],
    ['index.docker.io/v1/', 'index.docker.io'],
    ['index.docker.io/v1', 'index.docker.io/v1'],
    ['https://ghcr.io/v2/', 'ghcr.io'],
    ['http://registry.example.com:5000/team', 'registry.example.com:5000/team'],
    ['https://quay.io/v1/coreos', 'quay.io/coreos'],
    ['ghcr.io/', 'ghcr.io'],
    ['ghcr.io', 'ghcr.io'],
    ['*.gcr.io', '*.gcr.io'],
    ['https://user@ghcr.io', 'ghcr.io'],
  ]
  for (const [input, key] of cases) t.equal(normalizeRegistryKey(input), key, input)
  t.equal(compileRegistryKey('https://index.docker.io/v1/').isDefaultRegistryKey, true)
  t.equal(compileRegistryKey('docker.io').isDefaultRegistryKey, false)
})

t.test('compileRegistryGlob', async (t) => {
  const m = compileRegistryGlob('*.gcr.io')
  t.ok(m('us.gcr.io/p/app'))
  t.ok(m(parseImageReference('eu.gcr.io/p/app:1')), 'accepts a parsed reference')
  t.notOk(m({ registry: 'gcr.io', repository: 'p/app' }))
  t.notOk(m('not a valid image'), 'an unparsable image never matches')
  t.notOk(m(''))
  const hub = compileRegistryGlob('https://index.docker.io/v1/')
  t.ok(hub('nginx'))
  t.notOk(hub('ghcr.io/nginx'))

  for (const bad of ['', '[.io', 'gcr.io\\', '[]a].io', '[a-].io', '[^].io']) {
    t.throws(() => compileRegistryGlob(bad), { code: 'PULLPIN_CONFIG_INVALID' }, `compile ${JSON.stringify(bad)} throws`)
    t.notOk(registryGlobMatches(bad, 'gcr.io/x'), `${JSON.stringify(bad)} never matches`)
  }
  t.match(compileRegistryKey('[.io').error, /malformed glob/)
  t.equal(compileRegistryKey('ghcr.io').error, undefined)
})

t.test('normalizedImageName', async (t) => {
  t.equal(normalizedImageName('nginx:1'), 'docker.io/library/nginx')
  t.equal(normalizedImageName(`ghcr.io/org/app:v1@${SHA256}`), 'ghcr.io/org/app')
  t.equal(normalizedImageName('index.docker.io/user/app'), 'docker.io/user/app')
  t.equal(normalizedImageName('Bad/Name'), undefined)
  t.equal(normalizedImageName({ registry: 'r.io', repository: 'a/b' }), 'r.io/a/b')
})

// The one-level wildcard held at the level of full image URLs too, not only by the glob unit: a
// `*` is one DNS label (kubelet URLsMatch splits hosts on '.'), so *.gcr.io is eu.gcr.io, never a.eu.gcr.io.
t.test('*.gcr.io against full image URLs: secret selection and credential lookup', async (t) => {
  const select = createSecretSelector([{ name: 'gcr-wild', registries: ['*.gcr.io'] }, { name: 'eu-deep', registries: ['*.eu.gcr.io'] }])
  const images = (...list: string[]) => list.map(tryParseImageReference)
  t.same(select(images('eu.gcr.io/proj/app:1')), ['gcr-wild'])
  t.same(select(images('a.eu.gcr.io/proj/app:1')), ['eu-deep'], 'a.eu.gcr.io is not *.gcr.io')
  t.same(select(images(`a.eu.gcr.io/proj/app@${SHA256}`, 'gcr.io/proj/app')), ['eu-deep'])
  const kr = Keyring.fromDockerConfigs([{ source: 'team/gcr', json: { auths: { '*.gcr.io': { username: 'wild', password: 'w' } } } }])
  t.same(kr.lookup('eu.gcr.io/proj/app:1').map(c => c.source), ['team/gcr'])
  t.same(kr.lookup('a.eu.gcr.io/proj/app:1'), [], 'no credentials for a.eu.gcr.io from *.gcr.io')
})

t.test('a parsed image matches as its "registry/repository" name does (literal hosts compared whole)', async (t) => {
  const patterns = ['ghcr.io', 'GHCR.io', 'ghcr.io:443', 'ghcr.io/acme', 'ghcr.io/acme/', 'https://ghcr.io/v2/', '*.gcr.io', 'us.gcr.io',
    'us.gcr.io/proj', 'localhost', 'localhost:5000', 'localhost:5000/team', '127.0.0.1:5000', '[::1]:5000', 'index.docker.io',
    'docker.io', 'docker.io/library', 'registry.example.com:', 'a.b', 'a', 'ghcr.io/acme/web/deeper']
  const images = ['ghcr.io/acme/web', 'ghcr.io/acmeco/web', 'GHCR.io/acme/web', 'ghcr.io:443/acme/web', 'us.gcr.io/proj/app',
    'eu.gcr.io/proj/app', 'gcr.io/proj/app', 'localhost/app', 'localhost:5000/team/app', 'localhost:5000/other/app',
    '127.0.0.1:5000/app', '[::1]:5000/app', 'nginx', 'library/nginx', 'docker.io/library/nginx', 'a.b/c', 'a/b', 'ghcr.io/acme/web/deeper/x']
  let compared = 0
  for (const pattern of patterns) {
    const compiled = compileRegistryKey(pattern)
    for (const image of images) {
      const parsed = tryParseImageReference(image)
      if (!parsed.ok) continue
      const ref = parsed.ref
      t.equal(compiled.matchesImage(ref), compiled.matchesUrl(`${ref.registry}/${ref.repository}`), `${pattern} vs ${image}`)
      t.equal(registryGlobMatches(pattern, ref), registryGlobMatches(pattern, image), `${pattern} vs ${image}, parsed or not`)
      compared++
    }
  }
  t.ok(compared > 300)
  // A registry no parse makes (the doctor's host argument): read the long way, as the kubelet would read the name.
  t.equal(compileRegistryKey('host').matchesImage({ registry: 'user@host', repository: 'app' }), true)
  t.equal(compileRegistryKey('host').matchesImage({ registry: 'host/sub', repository: 'app' }), compileRegistryKey('host').matchesUrl('host/sub/app'))
})

// Table-driven tests for image reference parsing. Most cases come from distribution/reference's
// own reference_test.go (TestReferenceParse) and normalize_test.go (TestValidateReferenceName,
// TestValidateRemoteName, TestParseRepositoryInfo, TestParseAnyReference,
// TestNormalizedSplitHostname), restated with the fields ParseNormalizedNamed + TagNameOnly give.
import t from 'tap'
import fc from 'fast-check'
import { formatImageReference, isValidDigest, isValidTag, parseImageReference, type ImageReference } from '../src/reference/index.js'
import { tryParseImageReference } from '../src/reference/parse.js'
import { isCodedError } from '../src/errors.js'

const F64 = 'f'.repeat(64)
const SHA256 = `sha256:${F64}`
const SHA512 = `sha512:${'f'.repeat(128)}`
const SHA384 = `sha384:${'a'.repeat(96)}`
const REDIS = 'sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c'
const BUSYBOX = 'sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa'
const HEX64 = '1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a'

interface Valid {
  input: string
  registry: string
  repository: string
  tag?: string
  digest?: string
  tagDefaulted?: boolean
  written?: string
}

const valid: Valid[] = [
  // familiar Docker Hub names
  { input: 'nginx', registry: 'docker.io', repository: 'library/nginx', tag: 'latest', tagDefaulted: true },
  { input: 'nginx:1.25', registry: 'docker.io', repository: 'library/nginx', tag: '1.25', written: 'nginx' },
  { input: 'library/nginx', registry: 'docker.io', repository: 'library/nginx', tag: 'latest', tagDefaulted: true },
  { input: 'docker.io/nginx', registry: 'docker.io', repository: 'library/nginx', tag: 'latest', tagDefaulted: true },
  { input: 'docker.io/library/nginx:latest', registry: 'docker.io', repository: 'library/nginx', tag: 'latest', tagDefaulted: false },
  { input: 'debian', registry: 'docker.io', repository: 'library/debian', tag: 'latest', tagDefaulted: true },
  { input: 'docker/docker', registry: 'docker.io', repository: 'docker/docker', tag: 'latest', tagDefaulted: true },
  { input: 'docker.io/docker/docker', registry: 'docker.io', repository: 'docker/docker', tag: 'latest', tagDefaulted: true },
  { input: 'docker.io/library/debian', registry: 'docker.io', repository: 'library/debian', tag: 'latest', tagDefaulted: true },
  // index.docker.io is folded into docker.io
  { input: 'index.docker.io/docker/docker', registry: 'docker.io', repository: 'docker/docker', tag: 'latest', tagDefaulted: true },
  { input: 'index.docker.io/library/debian', registry: 'docker.io', repository: 'library/debian', tag: 'latest', tagDefaulted: true },
  { input: 'index.docker.io/debian:12', registry: 'docker.io', repository: 'library/debian', tag: '12', written: 'index.docker.io/debian' },
  { input: 'index.docker.io/fooo/bar', registry: 'docker.io', repository: 'fooo/bar', tag: 'latest', tagDefaulted: true },
  { input: 'dmcgowan/myapp:latest', registry: 'docker.io', repository: 'dmcgowan/myapp', tag: 'latest', tagDefaulted: false },
  { input: 'other/library', registry: 'docker.io', repository: 'other/library', tag: 'latest', tagDefaulted: true },
  { input: 'library/foo/bar', registry: 'docker.io', repository: 'library/foo/bar', tag: 'latest', tagDefaulted: true },
  { input: 'store/foo/bar', registry: 'docker.io', repository: 'store/foo/bar', tag: 'latest', tagDefaulted: true },
  { input: 'docker.io/library/foo/bar', registry: 'docker.io', repository: 'library/foo/bar', tag: 'latest', tagDefaulted: true },
  { input: 'ubuntu-12.04-base', registry: 'docker.io', repository: 'library/ubuntu-12.04-base', tag: 'latest', tagDefaulted: true },
  { input: 'test_com', registry: 'docker.io', repository: 'library/test_com', tag: 'latest', tagDefaulted: true },
  { input: 'test_com/foo', registry: 'docker.io', repository: 'test_com/foo', tag: 'latest', tagDefaulted: true },
  { input: 'docker/migrator', registry: 'docker.io', repository: 'docker/migrator', tag: 'latest', tagDefaulted: true },
  // a single component is always a Docker Hub name, even when it looks like a host or host:port
  { input: 'test.com:tag', registry: 'docker.io', repository: 'library/test.com', tag: 'tag', written: 'test.com' },
  { input: 'test.com:5000', registry: 'docker.io', repository: 'library/test.com', tag: '5000', written: 'test.com' },
  { input: 'foo_bar.com:8080', registry: 'docker.io', repository: 'library/foo_bar.com', tag: '8080' },
  { input: 'foo/foo_bar.com:8080', registry: 'docker.io', repository: 'foo/foo_bar.com', tag: '8080' },
  { input: '192.168.1.1', registry: 'docker.io', repository: 'library/192.168.1.1', tag: 'latest', tagDefaulted: true },
  { input: '192.168.1.1:tag', registry: 'docker.io', repository: 'library/192.168.1.1', tag: 'tag' },
  { input: '192.168.0.1:80', registry: 'docker.io', repository: 'library/192.168.0.1', tag: '80' },
  { input: 'localhost', registry: 'docker.io', repository: 'library/localhost', tag: 'latest', tagDefaulted: true },
  { input: 'dbcc1', registry: 'docker.io', repository: 'library/dbcc1', tag: 'latest', tagDefaulted: true },
  { input: REDIS.slice(7, -1), registry: 'docker.io', repository: `library/${REDIS.slice(7, -1)}`, tag: 'latest', tagDefaulted: true },
  { input: 'thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev', registry: 'docker.io', repository: 'library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev', tag: 'latest', tagDefaulted: true },
  // a 64-hex name is only an image ID when it stands alone
  { input: `docker.io/${HEX64}`, registry: 'docker.io', repository: `library/${HEX64}`, tag: 'latest', tagDefaulted: true },
  // path component separators
  { input: 'docker-rules/docker', registry: 'docker.io', repository: 'docker-rules/docker', tag: 'latest', tagDefaulted: true },
  { input: 'docker---rules/docker', registry: 'docker.io', repository: 'docker---rules/docker', tag: 'latest', tagDefaulted: true },
  { input: 'dock__er/docker', registry: 'docker.io', repository: 'dock__er/docker', tag: 'latest', tagDefaulted: true },
  { input: 'd/docker', registry: 'docker.io', repository: 'd/docker', tag: 'latest', tagDefaulted: true },
  { input: 'jess/t', registry: 'docker.io', repository: 'jess/t', tag: 'latest', tagDefaulted: true },
  // registries
  { input: 'ghcr.io/org/app:v1', registry: 'ghcr.io', repository: 'org/app', tag: 'v1', written: 'ghcr.io/org/app' },
  { input: 'localhost/app', registry: 'localhost', repository: 'app', tag: 'latest', tagDefaulted: true },
  { input: 'localhost:5000/app', registry: 'localhost:5000', repository: 'app', tag: 'latest', tagDefaulted: true },
  { input: '127.0.0.1:5443/team/app:1.0', registry: '127.0.0.1:5443', repository: 'team/app', tag: '1.0' },
  { input: '127.0.0.1:5000/docker/docker', registry: '127.0.0.1:5000', repository: 'docker/docker', tag: 'latest', tagDefaulted: true },
  { input: '192.168.1.1/repo', registry: '192.168.1.1', repository: 'repo', tag: 'latest', tagDefaulted: true },
  { input: '192.168.1.1:5000/repo:5050', registry: '192.168.1.1:5000', repository: 'repo', tag: '5050' },
  { input: '192.168.0.1:8/debian', registry: '192.168.0.1:8', repository: 'debian', tag: 'latest', tagDefaulted: true },
  { input: 'test.com/repo:tag', registry: 'test.com', repository: 'repo', tag: 'tag' },
  { input: 'test:5000/repo', registry: 'test:5000', repository: 'repo', tag: 'latest', tagDefaulted: true },
  { input: 'test-com:8080/foo', registry: 'test-com:8080', repository: 'foo', tag: 'latest', tagDefaulted: true },
  { input: `test:5000/repo@${SHA256}`, registry: 'test:5000', repository: 'repo', digest: SHA256, tagDefaulted: false, written: 'test:5000/repo' },
  { input: `test:5000/repo:tag@${SHA256}`, registry: 'test:5000', repository: 'repo', tag: 'tag', digest: SHA256, written: 'test:5000/repo' },
  { input: 'sub-dom1.foo.com/bar/baz/quux:some-long-tag', registry: 'sub-dom1.foo.com', repository: 'bar/baz/quux', tag: 'some-long-tag' },
  { input: 'b.gcr.io/test.example.com/my-app:test.example.com', registry: 'b.gcr.io', repository: 'test.example.com/my-app', tag: 'test.example.com' },
  { input: 'xn--n3h.com/myimage:xn--n3h.com', registry: 'xn--n3h.com', repository: 'myimage', tag: 'xn--n3h.com' },
  { input: 'xn--n3h.com:18080/foo', registry: 'xn--n3h.com:18080', repository: 'foo', tag: 'latest', tagDefaulted: true },
  { input: `xn--7o8h.com/myimage:xn--7o8h.com@${SHA512}`, registry: 'xn--7o8h.com', repository: 'myimage', tag: 'xn--7o8h.com', digest: SHA512 },
  { input: 'example.com:8000/private/moonbase', registry: 'example.com:8000', repository: 'private/moonbase', tag: 'latest', tagDefaulted: true },
  { input: 'registry.example.com:5000/team/app:v1.2.3-rc.1', registry: 'registry.example.com:5000', repository: 'team/app', tag: 'v1.2.3-rc.1' },
  // IPv6 hosts in brackets
  { input: '[2001:db8::1]/repo', registry: '[2001:db8::1]', repository: 'repo', tag: 'latest', tagDefaulted: true },
  { input: '[2001:db8:1:2:3:4:5:6]/repo:tag', registry: '[2001:db8:1:2:3:4:5:6]', repository: 'repo', tag: 'tag' },
  { input: '[2001:db8::1]:5000/repo', registry: '[2001:db8::1]:5000', repository: 'repo', tag: 'latest', tagDefaulted: true },
  { input: `[2001:db8::1]:5000/repo:tag@${SHA256}`, registry: '[2001:db8::1]:5000', repository: 'repo', tag: 'tag', digest: SHA256 },
  { input: '[2001:db8::]:5000/repo', registry: '[2001:db8::]:5000', repository: 'repo', tag: 'latest', tagDefaulted: true },
  { input: '[::1]:5000/repo', registry: '[::1]:5000', repository: 'repo', tag: 'latest', tagDefaulted: true },
  { input: '[fc00:1:2:3:4:5:6:7]:5000/library/debian', registry: '[fc00:1:2:3:4:5:6:7]:5000', repository: 'library/debian', tag: 'latest', tagDefaulted: true },
  // tags and digests
  { input: 'lowercase:Uppercase', registry: 'docker.io', repository: 'library/lowercase', tag: 'Uppercase' },
  { input: `busybox:latest@${BUSYBOX}`, registry: 'docker.io', repository: 'library/busybox', tag: 'latest', digest: BUSYBOX, tagDefaulted: false, written: 'busybox' },
  { input: `redis@${REDIS}`, registry: 'docker.io', repository: 'library/redis', digest: REDIS, tagDefaulted: false, written: 'redis' },
  { input: `docker.io/dmcgowan/myapp@${REDIS}`, registry: 'docker.io', repository: 'dmcgowan/myapp', digest: REDIS },
  { input: `nginx@${SHA384}`, registry: 'docker.io', repository: 'library/nginx', digest: SHA384 },
  { input: `app:${'a'.repeat(128)}`, registry: 'docker.io', repository: 'library/app', tag: 'a'.repeat(128) },
  { input: 'app:_x.Y-1', registry: 'docker.io', repository: 'library/app', tag: '_x.Y-1' },
  // the repository length limit counts the path only (distribution/reference v0.6.0)
  { input: `${'a/'.repeat(127)}a:tag-puts-this-over-max`, registry: 'docker.io', repository: `${'a/'.repeat(127)}a`, tag: 'tag-puts-this-over-max' },
  { input: `${'r'.repeat(40)}.example.com/${'a/'.repeat(127)}a`, registry: `${'r'.repeat(40)}.example.com`, repository: `${'a/'.repeat(127)}a`, tag: 'latest', tagDefaulted: true },
  // upstream keeps an uppercase host, and takes an uppercase first component as a host name
  { input: 'GHCR.IO/org/app', registry: 'GHCR.IO', repository: 'org/app', tag: 'latest', tagDefaulted: true },
  { input: 'Docker/docker', registry: 'Docker', repository: 'docker', tag: 'latest', tagDefaulted: true },
  { input: 'DOCKER/docker', registry: 'DOCKER', repository: 'docker', tag: 'latest', tagDefaulted: true },
  { input: 'Foo/bar', registry: 'Foo', repository: 'bar', tag: 'latest', tagDefaulted: true },
]

interface Invalid {
  input: string
  reason: string
  /** substrings the message must not contain */
  not?: string[]
}

const invalid: Invalid[] = [
  { input: '', reason: 'empty reference' },
  { input: ':justtag', reason: 'invalid reference format' },
  { input: `@${SHA256}`, reason: 'invalid reference format' },
  { input: `repo@sha256:${'f'.repeat(34)}`, reason: 'invalid digest format: a sha256 digest is 64 lowercase hex characters' },
  { input: `validname@invaliddigest:${F64}`, reason: 'unsupported digest algorithm "invaliddigest"' },
  { input: `nginx@md5:${'a'.repeat(32)}`, reason: 'unsupported digest algorithm "md5"' },
  { input: `nginx@sha256:${'F'.repeat(64)}`, reason: 'invalid digest format: a sha256 digest is 64 lowercase hex characters' },
  { input: `nginx@sha512:${F64}`, reason: 'a sha512 digest is 128 lowercase hex characters' },
  { input: 'nginx@sha256:abc', reason: 'invalid digest format' },
  { input: 'nginx@', reason: 'invalid digest format' },
  { input: 'Uppercase:tag', reason: 'repository name must be lowercase (registries such as GHCR require lowercase owners): try uppercase:tag' },
  { input: 'test:5000/Uppercase/lowercase:tag', reason: 'must be lowercase (registries such as GHCR require lowercase owners): try test:5000/uppercase/lowercase:tag' },
  { input: 'ghcr.io/MyOrg/app:v1', reason: 'repository name must be lowercase (registries such as GHCR require lowercase owners): try ghcr.io/myorg/app:v1' },
  { input: 'ghcr.io/MyOrg/App:V1', reason: 'try ghcr.io/myorg/app:V1' },
  { input: `ghcr.io/Org/app@${SHA256}`, reason: `try ghcr.io/org/app@${SHA256}` },
  { input: 'docker/Docker', reason: 'try docker/docker' },
  { input: 'docker.io/docker/Docker', reason: 'repository name must be lowercase' },
  { input: 'localhost:5000/Foo', reason: 'try localhost:5000/foo' },
  // no suggestion when lowercasing alone would not make it valid
  { input: 'ghcr.io/Org/app:-bad', reason: 'repository name must be lowercase (registries such as GHCR require lowercase owners)', not: ['try '] },
  { input: `${'a/'.repeat(128)}a:tag`, reason: 'repository name must not be longer than 255 characters' },
  { input: `this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_${'x'.repeat(200)}/docker`, reason: 'repository name must not be longer than 255 characters' },
  { input: 'aa/asdf$$^/aa', reason: 'invalid reference format' },
  { input: '[2001:db8::1]', reason: 'invalid reference format' },
  { input: '[2001:db8::1]:5000', reason: 'invalid reference format' },
  { input: '[2001:db8::1]:tag', reason: 'invalid reference format' },
  { input: '[fe80::1%eth0]:5000/repo', reason: 'invalid reference format' },
  { input: '[fe80::1%@invalidzone]:5000/repo', reason: 'invalid reference format' },
  { input: '[2001:db8:3:4::192.0.2.33]:5000/debian', reason: 'invalid reference format' },
  { input: 'fc00::1:5000/debian', reason: 'invalid reference format' },
  { input: 'https://github.com/docker/docker', reason: 'invalid reference format' },
  { input: '-docker', reason: 'invalid reference format' },
  { input: '-docker/docker', reason: 'invalid reference format' },
  { input: '-docker.io/docker/docker', reason: 'invalid reference format' },
  { input: 'docker-/docker', reason: 'invalid reference format' },
  { input: '-docker-/docker', reason: 'invalid reference format' },
  { input: 'docker///docker', reason: 'invalid reference format' },
  { input: 'docker.io/docker///docker', reason: 'invalid reference format' },
  { input: '____/____', reason: 'invalid reference format' },
  { input: '_docker/_docker', reason: 'invalid reference format' },
  { input: 'dock..er/docker', reason: 'invalid reference format' },
  { input: 'dock_.er/docker', reason: 'invalid reference format' },
  { input: 'dock-.er/docker', reason: 'invalid reference format' },
  { input: 'docker/', reason: 'invalid reference format' },
  { input: ' nginx', reason: 'invalid reference format' },
  { input: 'nginx ', reason: 'invalid reference format' },
  { input: HEX64, reason: 'image ID, not a name' },
  { input: 'nginx:-bad', reason: 'invalid tag format' },
  { input: 'nginx:.bad', reason: 'invalid tag format' },
  { input: 'nginx:', reason: 'invalid tag format' },
  { input: `nginx:${'a'.repeat(129)}`, reason: 'invalid tag format' },
  { input: 'nginx:a/b', reason: 'invalid reference format' },
  { input: 'a_b.com/x', reason: '"a_b.com" is not a valid registry host' },
]

function fail (input: string): unknown {
  try {
    parseImageReference(input)
  } catch (err) {
    return err
  }
  return undefined
}

t.test('valid references', async (t) => {
  t.ok(valid.length >= 70, `at least 70 valid cases (${valid.length})`)
  for (const c of valid) {
    let ref: ImageReference
    try {
      ref = parseImageReference(c.input)
    } catch (err) {
      t.fail(`${c.input}: ${(err as Error).message}`)
      continue
    }
    const label = JSON.stringify(c.input)
    t.equal(ref.original, c.input, `${label} original`)
    t.equal(ref.registry, c.registry, `${label} registry`)
    t.equal(ref.repository, c.repository, `${label} repository`)
    t.equal(ref.name, `${c.registry}/${c.repository}`, `${label} name`)
    t.equal(ref.tag, c.tag, `${label} tag`)
    t.equal(ref.digest, c.digest, `${label} digest`)
    t.equal(ref.tagDefaulted, c.tagDefaulted ?? false, `${label} tagDefaulted`)
    if (c.written !== undefined) t.equal(ref.written, c.written, `${label} written`)
    // written + explicit suffixes always reproduces the input
    const explicitTag = ref.tagDefaulted ? undefined : ref.tag
    const rebuilt = formatImageReference(ref, { ...(explicitTag === undefined ? {} : { tag: explicitTag }), ...(ref.digest === undefined ? {} : { digest: ref.digest }) })
    t.equal(rebuilt, c.input, `${label} round-trips`)
  }
})

t.test('invalid references', async (t) => {
  t.ok(invalid.length >= 50, `at least 50 invalid cases (${invalid.length})`)
  for (const c of invalid) {
    const err = fail(c.input)
    const label = JSON.stringify(c.input.slice(0, 60))
    if (!isCodedError(err, 'PULLPIN_REFERENCE_INVALID')) {
      t.fail(`${label} should throw PULLPIN_REFERENCE_INVALID, got ${String(err)}`)
      continue
    }
    t.ok(err.message.includes(c.reason), `${label}: ${err.message.slice(0, 200)} includes ${c.reason}`)
    for (const s of c.not ?? []) t.notOk(err.message.includes(s), `${label} message has no ${JSON.stringify(s)}`)
  }
})

t.test('error shape', async (t) => {
  const err = fail('ghcr.io/MyOrg/app:v1')
  t.ok(err instanceof Error)
  t.equal((err as { code?: string }).code, 'PULLPIN_REFERENCE_INVALID')
  t.equal((err as { statusCode?: number }).statusCode, 400)
  t.equal((err as Error).message, 'invalid image reference "ghcr.io/MyOrg/app:v1": repository name must be lowercase (registries such as GHCR require lowercase owners): try ghcr.io/myorg/app:v1')
  const long = fail(`${'a'.repeat(5000)}!`) as Error
  t.ok(long.message.length < 700, 'a huge input is cut in the message')
  t.match(long.message, /a…"/)
  t.match((fail('') as Error).message, /^invalid image reference "": empty reference$/)
})

t.test('formatImageReference', async (t) => {
  const ref = parseImageReference('nginx')
  t.equal(formatImageReference(ref, { tag: 'abc' }), 'nginx:abc')
  t.equal(formatImageReference(ref, { digest: SHA256 }), `nginx@${SHA256}`)
  t.equal(formatImageReference(ref, { tag: 'abc', digest: SHA256 }), `nginx:abc@${SHA256}`)
  t.equal(formatImageReference(ref, {}), 'nginx')
  t.equal(formatImageReference(parseImageReference('localhost:5000/app:latest'), { tag: 'git-1a2b3c' }), 'localhost:5000/app:git-1a2b3c')
  t.equal(formatImageReference(parseImageReference(`ghcr.io/org/app:old@${SHA256}`), { tag: 'new' }), 'ghcr.io/org/app:new')
  t.throws(() => formatImageReference(ref, { tag: '-x' }), { code: 'PULLPIN_REFERENCE_INVALID', message: /invalid tag format/ })
  t.throws(() => formatImageReference(ref, { digest: 'sha256:abc' }), { code: 'PULLPIN_REFERENCE_INVALID', message: /invalid digest format/ })
  t.throws(() => formatImageReference(ref, { digest: `sha256:${'A'.repeat(64)}` }), { code: 'PULLPIN_REFERENCE_INVALID' })
})

t.test('isValidTag / isValidDigest', async (t) => {
  t.ok(isValidTag('v1.2.3'))
  t.ok(isValidTag('_'))
  t.notOk(isValidTag(''))
  t.notOk(isValidTag('.x'))
  t.notOk(isValidTag('a'.repeat(129)))
  t.ok(isValidDigest(SHA256))
  t.ok(isValidDigest(SHA512))
  t.ok(isValidDigest(SHA384))
  t.notOk(isValidDigest(`sha256:${'F'.repeat(64)}`))
  t.notOk(isValidDigest(`sha1:${'f'.repeat(40)}`))
  t.notOk(isValidDigest(F64))
})

t.test('generated references round-trip and normalize', async (t) => {
  const alnum = fc.stringMatching(/^[a-z0-9]{1,8}$/)
  const sep = fc.constantFrom('.', '_', '__', '-', '---')
  const component = fc.tuple(alnum, fc.array(fc.tuple(sep, alnum), { maxLength: 2 }))
    .map(([first, rest]) => first + rest.map(([s, a]) => s + a).join(''))
  const path = fc.array(component, { minLength: 1, maxLength: 4 }).map((cs) => cs.join('/'))
  const registry = fc.constantFrom('', 'ghcr.io/', 'localhost/', 'localhost:5000/', '127.0.0.1:5443/', 'docker.io/', 'index.docker.io/', '[::1]:5000/', 'reg-1.example.com/')
  const tag = fc.option(fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}$/), { nil: undefined })
  const digest = fc.option(fc.stringMatching(/^[a-f0-9]{64}$/).map((h) => `sha256:${h}`), { nil: undefined })
  fc.assert(fc.property(registry, path, tag, digest, (reg, p, tg, dg) => {
    const written = reg + p
    const input = written + (tg === undefined ? '' : `:${tg}`) + (dg === undefined ? '' : `@${dg}`)
    const slash = p.indexOf('/')
    const first = slash < 0 ? '' : p.slice(0, slash)
    if (reg === '' && first.includes('.') && first.includes('_')) {
      // looks like a host but is not a valid one: rejected (upstream would return an empty domain)
      return fail(input) !== undefined
    }
    const ref = parseImageReference(input)
    if (ref.written !== written) return false
    if (ref.tag !== (tg ?? (dg === undefined ? 'latest' : undefined))) return false
    if (ref.digest !== dg) return false
    // with no explicit registry, a dotted first component (there is more than one) is the registry
    if (reg === '' && first.includes('.')) {
      if (ref.registry !== first || ref.repository !== p.slice(slash + 1)) return false
    } else if (reg === '' || reg === 'docker.io/' || reg === 'index.docker.io/') {
      if (ref.registry !== 'docker.io') return false
      if (ref.repository !== (p.includes('/') ? p : `library/${p}`)) return false
    } else if (ref.registry !== reg.slice(0, -1) || ref.repository !== p) {
      return false
    }
    return formatImageReference(ref, { ...(tg === undefined ? {} : { tag: tg }), ...(dg === undefined ? {} : { digest: dg }) }) === input
  }), { numRuns: 500 })
  t.pass('500 generated references')
})

t.test('adversarial inputs stay linear', async (t) => {
  const started = performance.now()
  for (const s of [`${'a'.repeat(100_000)}!`, `${'a-'.repeat(50_000)}!`, `${'a.'.repeat(50_000)}/!`, `nginx:${'a'.repeat(100_000)}`, `${'aaaaaaaaaa.'.repeat(10_000)}/`]) {
    t.ok(fail(s) !== undefined)
  }
  t.ok(performance.now() - started < 1000, 'all five 100 kB probes parse in under a second')
})

t.test('an input longer than any reference can be is refused at once, without the grammar', async t => {
  const huge = `quay.io/org/${'x'.repeat(3 * 1024 * 1024)}:latest`
  const r = tryParseImageReference(huge)
  t.equal(r.ok, false)
  if (!r.ok) {
    t.match(r.reason, /longer than 1024 characters/)
    t.ok(r.message.length < 500, 'the message quotes only the start of it')
  }
  t.equal(tryParseImageReference(`r.io/${'a'.repeat(255)}:${'t'.repeat(128)}@sha256:${'a'.repeat(64)}`).ok, true, 'the longest valid references still parse')
})

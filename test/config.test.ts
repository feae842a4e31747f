import t from 'tap'
import { readFileSync } from 'node:fs'
import { parseConfig, loadConfig, validateConfig } from '../src/policy/config.js'

t.test('defaults fill an empty document', async t => {
  const c = parseConfig('')
  t.equal(c.mode, 'enforce')
  t.equal(c.failOpen, true)
  t.equal(c.namespaces.optInLabel, 'pullpin.io/inject')
  t.same(c.namespaces.exclude, ['kube-system', 'kube-public', 'kube-node-lease'])
  t.same(c.pullSecrets, [])
})

t.test('the example config is valid', async t => {
  const c = await loadConfig(new URL('../examples/pullpin.yaml', import.meta.url).pathname)
  t.equal(c.pullSecrets[0]?.name, 'ghcr-credentials')
  t.same(c.pullSecrets[0]?.registries, ['ghcr.io'])
  t.equal(c.namespaces.labels['team-b']?.['pullpin.io/inject'], 'audit')
})

t.test('config is deep-frozen', async t => {
  const c = parseConfig('pullSecrets: [{name: a, registries: [ghcr.io]}]')
  t.ok(Object.isFrozen(c))
  t.ok(Object.isFrozen(c.pullSecrets[0]?.registries))
  t.throws(() => { (c as any).mode = 'audit' }, TypeError)
})

t.test('unknown key is refused with its path', async t => {
  t.throws(() => parseConfig('namespaces:\n  optinLabel: x\n', 'f.yaml'), {
    code: 'PULLPIN_CONFIG_INVALID',
    message: /f\.yaml.*\/namespaces: unknown key "optinLabel"/,
  })
  t.throws(() => parseConfig('pullSecrets: [{name: a, registry: [x]}]'), { message: /\/pullSecrets\/0: unknown key "registry"/ })
})

t.test('wrong types and values name path and reason', async t => {
  t.throws(() => parseConfig('failOpen: "yes"'), { message: /\/failOpen: must be boolean/ })
  t.throws(() => parseConfig('mode: warn'), { message: /\/mode: must be one of "enforce", "audit"/ })
  t.throws(() => parseConfig('pullSecrets: [{name: Bad_Name}]'), { message: /\/pullSecrets\/0\/name: must match pattern/ })
  t.throws(() => parseConfig('pullSecrets: [{registries: [ghcr.io]}]'), { message: /must have required property 'name'/ })
  t.throws(() => parseConfig('pullSecrets: [{name: a}, {name: a}]'), { message: /duplicate secret name "a"/ })
  t.throws(() => parseConfig('namespaces: {labels: {ns1: {k: 1}}}'), { message: /\/namespaces\/labels\/ns1\/k: must be string/ })
})

t.test('all errors are reported at once', async t => {
  const err = t.throws(() => parseConfig('mode: x\nfailOpen: 3\n')) as Error
  t.match(err.message, /\/mode/)
  t.match(err.message, /\/failOpen/)
})

t.test('YAML syntax error and unreadable file', async t => {
  t.throws(() => parseConfig('mode: [', 'bad.yaml'), { code: 'PULLPIN_CONFIG_INVALID', message: /bad\.yaml: YAML/ })
  await t.rejects(loadConfig('/nonexistent/pullpin.yaml'), { code: 'PULLPIN_CONFIG_READ', message: /\/nonexistent\/pullpin\.yaml: ENOENT/ })
})

t.test('validateConfig does not change the caller object', async t => {
  const doc = { mode: 'audit' }
  validateConfig(doc)
  t.same(doc, { mode: 'audit' })
})

t.test('README config reference names every top-level key of the schema', async t => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
  const { configSchema } = await import('../src/policy/config-schema.js')
  for (const key of Object.keys(configSchema.properties)) t.match(readme, new RegExp('`' + key + '[`.[]'), `README documents ${key}`)
})

t.test('pullSecrets[].source: errors speak of the shape written (Secret, ecr or exec), and mixing shapes is named', async t => {
  const message = (yaml: string): string => { try { parseConfig(yaml); return '' } catch (e) { return (e as Error).message } }
  t.equal(message('pullSecrets: [{name: a, source: {namespace: ns}}]'), 'invalid config config: /pullSecrets/0/source: must have required property \'name\'')
  t.equal(message('pullSecrets: [{name: a, source: {ecr: {regio: x}}}]'), 'invalid config config: /pullSecrets/0/source/ecr: must have required property \'region\'; /pullSecrets/0/source/ecr: unknown key "regio"')
  t.equal(message('pullSecrets: [{name: a, source: {namespace: ns, name: s, ecr: {region: x}}}]'), 'invalid config config: /pullSecrets/0/source: takes exactly one of: namespace and name (a Secret), ecr, exec')
  t.equal(message('pullSecrets: [{name: a, source: {exec: {command: p, images: [x]}}}]'), 'invalid config config: /pullSecrets/0/source/exec/command: must match pattern "^/"')
  t.equal(message('pullSecrets: [{name: a, source: 3}]'), 'invalid config config: /pullSecrets/0/source: must be object')
})

t.test('registry access moved to its own section: every old pinning key is refused naming the new key', async t => {
  const moved: Array<[string, RegExp]> = [
    ['pinning: { registries: [ghcr.io] }', /\/pinning\/registries: moved to registry\.hosts/],
    ['pinning: { allowPrivateRegistries: [r.local] }', /\/pinning\/allowPrivateRegistries: moved to registry\.allowPrivate/],
    ['pinning: { credentials: { dockerConfigFiles: [] } }', /\/pinning\/credentials: moved to registry\.credentials/],
    ['pinning: { registryOptions: {} }', /\/pinning\/registryOptions: moved to registry\.options/],
    ['pinning: { cache: { ttlSeconds: 5 } }', /\/pinning\/cache: moved to registry\.cache/],
    ['pinning: { lookupBudgetMs: 900 }', /\/pinning\/lookupBudgetMs: moved to registry\.lookupBudgetMs/],
    ['pinning: { onMissingImage: deny }', /\/pinning\/onMissingImage: moved to checks\.exists/],
  ]
  for (const [yaml, message] of moved) t.throws(() => parseConfig(yaml, 'old.yaml'), { code: 'PULLPIN_CONFIG_INVALID', message }, yaml)
  const c = parseConfig('registry: { hosts: [ghcr.io], cache: { ttlSeconds: 5 } }\nchecks: { exists: deny, nodePlatforms: [linux/arm64, linux/arm/v7] }')
  t.same(c.registry.hosts, ['ghcr.io'])
  t.equal(c.registry.cache.ttlSeconds, 5)
  t.equal(c.registry.cache.maxImmutableEntries, 10000)
  t.same([c.checks.exists, c.checks.pullAccess, c.checks.platforms], ['deny', 'warn', 'warn'])
  t.same(c.checks.nodePlatforms, ['linux/arm64', 'linux/arm/v7'])
  t.equal(c.namespaces.selection, 'optIn')
  t.throws(() => parseConfig('checks: { nodePlatforms: [arm64] }'), { message: /\/checks\/nodePlatforms\/0: must match pattern/ })
  t.throws(() => parseConfig('checks: { pullAccess: deny }'), { message: /\/checks\/pullAccess: must be one of "warn", "off"/ })
  // Helm (YAML 1.1) turns a bare `off` into false before pullpin reads the rendered ConfigMap.
  t.same(parseConfig('checks: { exists: false, pullAccess: false, platforms: off }').checks, { exists: 'off', pullAccess: 'off', platforms: 'off', nodePlatforms: ['linux/amd64'] })
})

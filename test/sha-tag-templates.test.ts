// pinning.shaTagTemplates: checked against pinning.shaTagPatterns at start, and how a revision
// from image metadata becomes candidate tags (issue 15).
import t from 'tap'
import { parseConfig } from '../src/policy/config.js'
import { candidateTags, commitOf, compileShaTagTemplate, type ShaTagTemplate } from '../src/policy/sha-tag-templates.js'

const SHA = '2f1c9e0d5b7a4c3e8f6a1b2c3d4e5f6a7b8c9d0e'
const DEFAULT_PATTERNS = [/^[0-9a-f]{40}$/, /^sha-[0-9a-f]{7,40}$/]

t.test('defaults: the full SHA and sha-<7>, as docker/metadata-action tags them', async (t) => {
  const config = parseConfig('pinning: { enabled: true }')
  t.same(config.pinning.shaTagTemplates, ['{revision}', 'sha-{revision:7}'])
  t.equal(config.registry.cache.activeSeconds, 600)
})

t.test('a template whose tags no SHA pattern matches is refused at start, saying which and why', async (t) => {
  t.throws(() => parseConfig('pinning:\n  shaTagTemplates: ["{revision}", "v-{revision:7}"]'), {
    code: 'PULLPIN_CONFIG_INVALID',
    message: /\/pinning\/shaTagTemplates\/1: "v-\{revision:7\}" gives tags like "v-0123456", which no pinning.shaTagPatterns entry matches/,
  })
  t.throws(() => parseConfig('pinning:\n  shaTagTemplates: ["latest"]'), { message: /shaTagTemplates\/0: "latest" names no \{revision\}/ })
  t.throws(() => parseConfig('pinning:\n  shaTagTemplates: ["sha-{revision:0}"]'), { message: /the length must be 1 to 64/ })
  t.throws(() => parseConfig('pinning:\n  shaTagTemplates: ["sha/{revision}"]'), { message: /not a valid tag/ })
  // The same template is fine once a pattern says its tags are SHA tags.
  const ok = parseConfig('pinning:\n  shaTagPatterns: ["^v-[0-9a-f]{7}$"]\n  shaTagTemplates: ["v-{revision:7}"]')
  t.same(ok.pinning.shaTagTemplates, ['v-{revision:7}'])
  t.same(parseConfig('pinning: { shaTagTemplates: [] }').pinning.shaTagTemplates, [], '[] turns it off')
})

t.test('a revision becomes candidate tags: git object names only, each tag once, only SHA tags', async (t) => {
  const templates = ['{revision}', 'sha-{revision:7}', 'sha-{revision:7}'].map(s => compileShaTagTemplate(s, DEFAULT_PATTERNS) as ShaTagTemplate)
  t.same(candidateTags(SHA, templates, DEFAULT_PATTERNS), [SHA, `sha-${SHA.slice(0, 7)}`])
  t.same(candidateTags(SHA.toUpperCase(), templates, DEFAULT_PATTERNS), [SHA, `sha-${SHA.slice(0, 7)}`], 'lower-cased')
  t.same(candidateTags(`main@sha1:${SHA}`, templates, DEFAULT_PATTERNS), [SHA, `sha-${SHA.slice(0, 7)}`], 'Flux\'s <ref>@sha1:<hex>')
  t.same(candidateTags('2f1c9e0', templates, DEFAULT_PATTERNS), ['sha-2f1c9e0'], 'a short revision makes no full-SHA tag')
  t.same(candidateTags('v1.2.3', templates, DEFAULT_PATTERNS), [], 'not a commit')
  t.same(candidateTags('../../etc/passwd', templates, DEFAULT_PATTERNS), [])
  t.same(candidateTags(`${SHA}\nsha-evil`, templates, DEFAULT_PATTERNS), [])
  t.equal(commitOf('x'.repeat(10_000)), undefined)
})

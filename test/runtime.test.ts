// `npm test` runs the suite twice, on the machine's Node and on Node 24 (scripts/test.sh,
// scripts/node24.sh), and names the major version it meant in PULLPIN_TEST_NODE_MAJOR: if the
// tests ran on another Node, both runs would silently test the same one. Also: the runtime never
// loads light-my-request, the only package (through cookie@2) that wants Node >= 22 (README,
// "Requirements").
import t from 'tap'
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { startPullpin } from './support/pullpin.js'
import { admissionReview, richPod } from './support/pods.js'
import { BASE_CONFIG } from './support/handler.js'

t.comment(`node ${process.version}`)

t.test('the tests run on the Node scripts/test.sh asked for', async t => {
  const wanted = process.env.PULLPIN_TEST_NODE_MAJOR
  const major = process.versions.node.split('.')[0]
  if (wanted !== undefined && wanted !== '') t.equal(major, wanted, `tap ran this file on Node ${process.version}`)
  // Whatever runs the tests must be a Node package.json says pullpin supports.
  const engines = (JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')) as { engines: { node: string } }).engines.node
  t.ok(satisfies(process.versions.node, engines), `Node ${process.version} satisfies engines "${engines}"`)
})

t.test('serving reviews never loads light-my-request (fastify loads it only for inject())', async t => {
  const p = await startPullpin(BASE_CONFIG)
  t.teardown(() => p.close())
  const res = await p.post('/mutate', admissionReview(richPod('team-a')))
  t.equal(res.status, 200)
  t.ok((res.json as { response: { patch?: string } }).response.patch, 'a real review, with a patch')
  const require = createRequire(import.meta.url)
  const loaded = Object.keys(require.cache).filter(f => /[\\/]node_modules[\\/](light-my-request|cookie)[\\/]/.test(f))
  t.same(loaded, [])
  t.ok(Object.keys(require.cache).some(f => /[\\/]node_modules[\\/]fastify[\\/]/.test(f)), 'the check sees CommonJS packages: fastify is in the cache')
})

/** The subset of npm's ranges engines uses: `||` of `>=X.Y.Z`, `^X.Y.Z` and bare majors. */
function satisfies (version: string, range: string): boolean {
  const v = version.split('.').map(Number)
  const cmp = (a: number[], b: number[]): number => (a[0]! - b[0]!) || ((a[1] ?? 0) - (b[1] ?? 0)) || ((a[2] ?? 0) - (b[2] ?? 0))
  return range.split('||').map(s => s.trim()).some(part => {
    const m = /^(>=|\^)?\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(part)
    if (m === null) throw new Error(`engines range "${part}" is not one this test understands`)
    const min = [Number(m[2]), Number(m[3] ?? 0), Number(m[4] ?? 0)]
    if (m[1] === '>=') return cmp(v, min) >= 0
    return v[0] === min[0] && cmp(v, min) >= 0
  })
}

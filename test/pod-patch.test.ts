// podPatch (src/mutate/mutator.ts) diffs the annotations itself instead of through fast-json-patch's
// compare (which deep-copies a map it adds whole). Its operations must still be compare's, in
// compare's order, for any annotations a pod may carry: added whole, keys added, replaced and
// removed, keys that need escaping in a JSON Pointer, and values that are not strings (a hostile
// review, before the API server validates the pod).
import t from 'tap'
import fc from 'fast-check'
import fastJsonPatch from 'fast-json-patch'
import { draftOf, podPatch } from '../src/mutate/mutator.js'
import type { Pod } from '../src/mutate/pod.js'
import { patchProjection } from './support/pods.js'

const key = fc.constantFrom('pullpin.io/pins', 'a/b', 'x~y', '~1', '__proto__', 'constructor', '', 'z')
const value = fc.oneof({ weight: 5, arbitrary: fc.string({ maxLength: 8 }) }, fc.constant(null), fc.integer(), fc.constant({ nested: 'v' }), fc.constant(['l']))
// null: the map is absent; a map is built by defining each key (JSON.parse's way: "__proto__" stays a key).
const map = fc.option(fc.array(fc.tuple(key, value), { maxLength: 6 }), { nil: undefined })
const toMap = (entries: Array<[string, unknown]>): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const [k, v] of entries) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true })
  return out
}

function pod (annotations: Record<string, unknown> | undefined, withSpec: boolean): Pod {
  return {
    metadata: { name: 'p', ...(annotations !== undefined ? { annotations } : {}) },
    ...(withSpec ? { spec: { containers: [{ name: 'c', image: 'ghcr.io/acme/web:latest' }] } } : {}),
  } as Pod
}

t.test('the annotations\' operations are compare\'s, in its order, whatever the maps hold', async t => {
  let compared = 0
  await fc.assert(fc.asyncProperty(map, map, fc.boolean(), fc.boolean(), async (before, after, withSpec, pin) => {
    const original = pod(before === undefined ? undefined : toMap(before), withSpec)
    const draft = draftOf(original)
    if (after !== undefined) draft.metadata!.annotations = toMap(after) as Record<string, string>
    else delete draft.metadata!.annotations
    if (pin && withSpec) draft.spec!.containers![0]!.image = 'ghcr.io/acme/web:c6cd88ef'
    const expected = fastJsonPatch.compare(patchProjection(original) as object, patchProjection(draft) as object)
    t.same(await podPatch(original, draft), expected)
    compared++
    // Applied to the request's object, the patch gives the draft's annotations (the API server
    // applies it in Go; applied here in JavaScript, a "__proto__" key would set a prototype).
    if ([...before ?? [], ...after ?? []].some(([k]) => k === '__proto__')) return
    const patched = fastJsonPatch.applyPatch(structuredClone(original), await podPatch(original, draft), false, false, false).newDocument
    t.same(patched.metadata?.annotations, draft.metadata?.annotations)
  }), { numRuns: 300 })
  t.equal(compared, 300)
})

t.test('a map added whole is one "add" of the draft\'s map, and a string key is escaped', async t => {
  const original = pod({ 'a/b': '1', keep: 'k' }, true)
  const draft = draftOf(original)
  draft.metadata!.annotations!['pullpin.io/pins'] = '{}'
  draft.metadata!.annotations!['a/b'] = '2'
  delete draft.metadata!.annotations!.keep
  t.same(await podPatch(original, draft), [
    { op: 'remove', path: '/metadata/annotations/keep' },
    { op: 'replace', path: '/metadata/annotations/a~1b', value: '2' },
    { op: 'add', path: '/metadata/annotations/pullpin.io~1pins', value: '{}' },
  ])
  const bare = pod(undefined, true)
  const pinned = draftOf(bare)
  pinned.metadata!.annotations = { 'pullpin.io/pins': '{}' }
  t.same(await podPatch(bare, pinned), [{ op: 'add', path: '/metadata/annotations', value: { 'pullpin.io/pins': '{}' } }])
})

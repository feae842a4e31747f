import t from 'tap'
import { memoize } from '../src/mutate/memoize.js'

t.test('memoize computes once per key and stays within its bound', async t => {
  const calls: string[] = []
  const f = memoize(3, (k: string) => { calls.push(k); return { k } })
  const a = f('a')
  t.equal(f('a'), a, 'same value on a hit')
  f('b'); f('c')
  t.same(calls, ['a', 'b', 'c'])
  f('d') // the bound is reached: the memo starts over
  t.not(f('a'), a, 'recomputed after the memo was emptied')
  t.same(calls, ['a', 'b', 'c', 'd', 'a'])
})

t.test('a key longer than any image reference is computed, never kept', async t => {
  const calls: number[] = []
  const f = memoize(3, (k: string) => { calls.push(k.length); return { n: k.length } })
  const long = 'x'.repeat(3 * 1024 * 1024)
  t.not(f(long), f(long), 'computed each time: the memo holds no megabyte keys')
  t.same(calls, [long.length, long.length])
})

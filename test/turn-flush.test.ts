import t from 'tap'
import { turnFlush } from '../src/server/turn-flush.js'

t.test('answers of one turn share one release, at the end of that turn', async t => {
  const endOfTurn = turnFlush()
  const order: string[] = []
  const a = endOfTurn()
  const b = endOfTurn()
  t.equal(a, b, 'one Promise per turn')
  void a.then(() => order.push('released'))
  // Work of the same turn (microtasks and nextTicks) comes before the release.
  await Promise.resolve()
  process.nextTick(() => order.push('nextTick'))
  setImmediate(() => order.push('later immediate'))
  await a
  t.same(order, ['nextTick', 'released'])
  await new Promise(resolve => setImmediate(resolve))
  t.same(order, ['nextTick', 'released', 'later immediate'])
})

t.test('the next turn gets its own release', async t => {
  const endOfTurn = turnFlush()
  const first = endOfTurn()
  await first
  const second = endOfTurn()
  t.not(second, first)
  let released = false
  void second.then(() => { released = true })
  await Promise.resolve()
  t.equal(released, false, 'not released before its turn ends')
  await second
  t.equal(released, true)
})

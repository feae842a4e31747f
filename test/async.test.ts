// The bottom-layer async helpers every layer shares (src/async): waiting with a signal, sleeping,
// backing off and coalescing.
import t from 'tap'
import { getEventListeners } from 'node:events'
import { abortable, abortReason } from '../src/async/abort.js'
import { Backoff, backoffDelay } from '../src/async/backoff.js'
import { InFlight } from '../src/async/in-flight.js'
import { sleep } from '../src/async/sleep.js'

function deferred<T> (): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void
  let reject!: (e: unknown) => void
  const promise = new Promise<T>((_resolve, _reject) => { resolve = _resolve; reject = _reject })
  return { promise, resolve, reject }
}

await t.test('abortable: the waiter stops at once with the reason, the work goes on; one listener per signal', async (t) => {
  const controller = new AbortController()
  const works = Array.from({ length: 50 }, () => deferred<number>())
  const waits = works.map((w) => abortable(w.promise, controller.signal))
  t.equal(getEventListeners(controller.signal, 'abort').length, 1, 'fifty waits, one listener')
  works[0]!.resolve(7)
  t.equal(await waits[0], 7)
  const reason = new Error('deadline')
  controller.abort(reason)
  for (const w of waits.slice(1)) await t.rejects(w, reason)
  t.equal(getEventListeners(controller.signal, 'abort').length, 0)
  works[1]!.reject(new Error('late failure, nobody waits'))

  const other = new AbortController()
  const ok = abortable(Promise.resolve('v'), other.signal)
  t.equal(await ok, 'v')
  t.equal(getEventListeners(other.signal, 'abort').length, 0, 'the listener goes with the last wait')
  // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- what is tested
  await t.rejects(abortable(Promise.reject('text'), other.signal), { message: 'text' }, 'a non-Error rejection becomes an Error')
  other.abort()
  await t.rejects(abortable(new Promise(() => {}), other.signal), { name: 'AbortError' }, 'already aborted: AbortError')
  t.equal(abortReason(AbortSignal.abort('not an error')).name, 'AbortError')
})

await t.test('sleep: true when the time has passed, false as soon as the signal aborts', async (t) => {
  t.equal(await sleep(1), true)
  const controller = new AbortController()
  const s = sleep(60_000, controller.signal)
  controller.abort()
  t.equal(await s, false)
  t.equal(await sleep(60_000, controller.signal), false, 'already aborted')
})

await t.test('backoff: equal jitter, the ceiling growing to its cap', (t) => {
  const top = { initialMs: 100, maxMs: 1000, random: () => 1 }
  t.same([0, 1, 2, 3, 4, 10].map((n) => backoffDelay(n, top)), [100, 200, 400, 800, 1000, 1000])
  t.same([0, 3, 10].map((n) => backoffDelay(n, { ...top, random: () => 0 })), [50, 400, 500], 'never below half the ceiling')
  const b = new Backoff({ initialMs: 10, random: () => 1 })
  t.same([b.next(), b.next(), b.failures], [10, 20, 2])
  b.reset()
  t.equal(b.next(), 10)
  t.end()
})

await t.test('InFlight: concurrent callers share one run, forgotten once it settles (also on failure)', async (t) => {
  const flights = new InFlight<string, number>()
  let starts = 0
  const gate = deferred<number>()
  const start = (): Promise<number> => { starts++; return gate.promise }
  const a = flights.run('k', start)
  const b = flights.run('k', start)
  t.equal(a, b)
  t.equal(flights.size, 1)
  gate.resolve(3)
  t.same(await Promise.all([a, b]), [3, 3])
  t.equal(starts, 1)
  t.equal(flights.size, 0)
  await t.rejects(flights.run('k', () => Promise.reject(new Error('down'))), { message: 'down' })
  t.equal(flights.size, 0, 'a failure is not remembered')
  t.equal(await flights.run('k', () => Promise.resolve(4)), 4)
})

import t from 'tap'
import { limitWarnings, MAX_WARNING_CHARS, MAX_WARNINGS_BYTES } from '../src/admission/warnings.js'

t.test('each warning is short, single-line and unique', async t => {
  const out = limitWarnings(['a'.repeat(300), 'two\nlines', 'dup', 'dup', ''])
  t.equal(out.length, 3)
  t.equal(out[0]!.length, MAX_WARNING_CHARS)
  t.ok(out[0]!.endsWith('…'))
  t.equal(out[1], 'two lines')
})

t.test('the total stays under 4 KiB and says what was left out', async t => {
  const many = Array.from({ length: 200 }, (_, i) => `warning number ${i} `.padEnd(100, 'x'))
  const out = limitWarnings(many)
  const bytes = out.reduce((n, w) => n + Buffer.byteLength(w), 0)
  t.ok(bytes <= MAX_WARNINGS_BYTES, `total ${bytes} bytes`)
  t.match(out.at(-1)!, /^pullpin: \d+ more warning\(s\) left out$/)
  const left = Number(/(\d+) more/.exec(out.at(-1)!)![1])
  t.equal(out.length - 1 + left, 200)
})

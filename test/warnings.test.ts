import t from 'tap'
import { limitWarnings, MAX_WARNING_CHARS, MAX_WARNINGS_BYTES } from '../src/admission/warnings.js'
import fc from 'fast-check'

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

t.test('any whitespace becomes one space between words, as /\\s+/ → " " and trim() would make it', async t => {
  const ws = fc.constantFrom(' ', '  ', '\t', '\n', '\r\n', '\u00a0', '\u2028', '\u3000', '\ufeff')
  const word = fc.string({ minLength: 1, maxLength: 8, unit: fc.constantFrom('a', 'Z', '9', '-', ':', '…', 'é', '/') })
  const text = fc.array(fc.oneof(ws, word), { maxLength: 12 }).map(parts => parts.join(''))
  fc.assert(fc.property(text, s => {
    const expected = s.replace(/\s+/g, ' ').trim()
    const out = limitWarnings([s])
    if (expected === '') return out.length === 0
    return out.length === 1 && out[0] === (expected.length <= MAX_WARNING_CHARS ? expected : expected.slice(0, MAX_WARNING_CHARS - 1) + '…')
  }), { numRuns: 2000 })
  t.pass('2,000 random strings')
})

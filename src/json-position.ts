// Where a JSON text stops being JSON, as a line and column, without quoting any of it.
//
// V8's JSON.parse messages quote the text around the error ("Unexpected token 'S', ..."{"auths":
// SUPERSECRE"... is not valid JSON"), and only some of them carry a position. For files that hold
// credentials (docker config files) and for request bodies, pullpin reports where the error is and
// nothing of the text, so it finds the position itself with this small scanner (RFC 8259 grammar).

export interface TextPosition {
  /** 1-based. */
  readonly line: number
  /** 1-based, in UTF-16 code units. */
  readonly column: number
}

/** The position of the first character that is not valid JSON (the end, when the text stops early); undefined if the text is valid JSON. */
export function jsonErrorPosition (text: string): TextPosition | undefined {
  const offset = jsonErrorOffset(text)
  return offset === undefined ? undefined : positionOf(text, offset)
}

/** Line and column of a character offset. */
export function positionOf (text: string, offset: number): TextPosition {
  let line = 1
  let lineStart = 0
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) { line++; lineStart = i + 1 }
  }
  return { line, column: offset - lineStart + 1 }
}

export function formatPosition (p: TextPosition): string {
  return `line ${p.line}, column ${p.column}`
}

const NUMBER_RE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y
const STRING_RE = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y // eslint-disable-line no-control-regex

/** Thrown only on the way out of an invalid text (an error path, never a hot loop). */
class Invalid extends Error {
  constructor (readonly offset: number) { super('invalid JSON') }
}

/** The offset of the first invalid character; undefined for valid JSON. Iterative: deep nesting cannot overflow the stack. */
function jsonErrorOffset (text: string): number | undefined {
  let i = 0
  const ws = (): void => {
    while (i < text.length) {
      const c = text.charCodeAt(i)
      if (c === 32 || c === 9 || c === 10 || c === 13) i++
      else break
    }
  }
  const sticky = (re: RegExp): boolean => {
    re.lastIndex = i
    if (!re.test(text)) return false
    i = re.lastIndex
    return true
  }
  const fail = (at = i): never => { throw new Invalid(at) }
  /** Open containers: '{' or '['. */
  const stack: string[] = []
  try {
    for (;;) {
      // A value.
      ws()
      const c = text[i]
      if (c === '{' || c === '[') {
        i++
        ws()
        if (text[i] === (c === '{' ? '}' : ']')) {
          i++
        } else {
          stack.push(c)
          if (c === '{') {
            if (!sticky(STRING_RE)) fail()
            ws()
            if (text[i] !== ':') fail()
            i++
          }
          continue
        }
      } else if (c === '"') {
        if (!sticky(STRING_RE)) fail()
      } else if (text.startsWith('true', i)) i += 4
      else if (text.startsWith('false', i)) i += 5
      else if (text.startsWith('null', i)) i += 4
      else if (!sticky(NUMBER_RE)) fail()
      // After a value: a separator, a close, or the end.
      for (;;) {
        ws()
        const open = stack[stack.length - 1]
        if (open === undefined) {
          if (i !== text.length) fail()
          return undefined
        }
        if (text[i] === ',') {
          i++
          if (open === '{') {
            ws()
            if (!sticky(STRING_RE)) fail()
            ws()
            if (text[i] !== ':') fail()
            i++
          }
          break
        }
        if (text[i] !== (open === '{' ? '}' : ']')) fail()
        i++
        stack.pop()
      }
    }
  } catch (err) {
    if (err instanceof Invalid) return err.offset
    throw err
  }
}

// WWW-Authenticate parsing (RFC 9110 §11.6.1, the grammar of RFC 7235 §4.1):
//
//   WWW-Authenticate = #challenge
//   challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//   auth-param = token BWS "=" BWS ( token / quoted-string )
//
// The list syntax makes "," separate both the parameters of one challenge and the challenges
// themselves, so a token after a comma is a parameter when "=" follows it and the next scheme
// otherwise. Quoted strings may hold commas, "=" and escaped quotes (quoted-pair), which is
// why a regular expression over the header is not good enough: realms such as
// `"https://auth.example/token?a=1,b=2"` exist in the wild.
//
// The small scanner is shared with the RFC 8288 Link parser (endpoint.ts), which uses the same
// token / quoted-string rules.

export interface Challenge {
  /** auth-scheme, lowercased ("bearer", "basic"): schemes are case-insensitive. */
  scheme: string
  /** auth-params by lowercased name (names are case-insensitive); values as sent, unquoted. */
  params: Readonly<Record<string, string>>
  /** The token68 form (`Basic abc==`), when the challenge used it instead of parameters. */
  token68?: string
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/
const TOKEN68_CHAR = /[A-Za-z0-9\-._~+/]/

/** A cursor over one header value with the RFC 9110 token / quoted-string / OWS primitives. */
export class HeaderScanner {
  pos = 0
  constructor (readonly text: string) {}

  get done (): boolean { return this.pos >= this.text.length }
  peek (): string { return this.text[this.pos] ?? '' }

  /** OWS = *( SP / HTAB ) */
  skipSpace (): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.pos++
  }

  /** Skips OWS and any number of list separators (the #rule allows empty elements). */
  skipListSeparators (): void {
    while (this.peek() === ' ' || this.peek() === '\t' || this.peek() === ',') this.pos++
  }

  /** token = 1*tchar; '' when there is none here. */
  token (): string {
    const start = this.pos
    while (!this.done && TCHAR.test(this.peek())) this.pos++
    return this.text.slice(start, this.pos)
  }

  /** quoted-string with quoted-pair unescaped; undefined (cursor unchanged) if not at a complete one. */
  quoted (): string | undefined {
    if (this.peek() !== '"') return undefined
    let out = ''
    for (let i = this.pos + 1; i < this.text.length; i++) {
      const c = this.text[i] ?? ''
      if (c === '\\') {
        i++
        if (i >= this.text.length) return undefined
        out += this.text[i] ?? ''
      } else if (c === '"') {
        this.pos = i + 1
        return out
      } else {
        out += c
      }
    }
    return undefined
  }

  /** token / quoted-string */
  value (): string | undefined {
    if (this.peek() === '"') return this.quoted()
    const t = this.token()
    return t === '' ? undefined : t
  }

  /** Moves past the next top-level "," (outside quoted strings), or to the end. */
  skipElement (): void {
    while (!this.done && this.peek() !== ',') {
      if (this.peek() === '"') {
        if (this.quoted() === undefined) { this.pos = this.text.length; return }
      } else {
        this.pos++
      }
    }
  }
}

/**
 * Parses every challenge of one or several WWW-Authenticate header values. Malformed pieces are
 * skipped, never guessed at: a challenge whose parameter list breaks keeps the parameters
 * read before the break.
 */
export function parseChallenges (header: string | readonly string[] | undefined): Challenge[] {
  if (header === undefined) return []
  const text = typeof header === 'string' ? header : header.join(', ')
  const s = new HeaderScanner(text)
  const out: Challenge[] = []
  for (;;) {
    s.skipListSeparators()
    if (s.done) break
    const scheme = s.token()
    if (scheme === '') { s.skipElement(); continue }
    const params: Record<string, string> = Object.create(null) as Record<string, string>
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params }
    out.push(challenge)
    if (s.peek() !== ' ' && s.peek() !== '\t') continue // bare scheme, or malformed: next element
    s.skipSpace()

    // token68 is allowed only directly after the scheme, and must then end the element.
    const t68 = tryToken68(s)
    if (t68 !== undefined) { challenge.token68 = t68; continue }

    // #auth-param, until a token without "=" starts the next challenge.
    for (;;) {
      s.skipListSeparators()
      if (s.done) break
      const save = s.pos
      const name = s.token()
      s.skipSpace()
      if (name === '' || s.peek() !== '=') { s.pos = save; break }
      s.pos++
      s.skipSpace()
      const value = s.value()
      if (value === undefined) { s.skipElement(); break }
      s.skipSpace()
      // Anything but "," or the end after the value: malformed, so this parameter is not kept.
      if (!s.done && s.peek() !== ',') { s.skipElement(); break }
      const key = name.toLowerCase()
      // RFC 9110: a parameter name occurs once per challenge; keep the first if a server repeats it.
      if (!(key in params)) params[key] = value
    }
  }
  return out
}

function tryToken68 (s: HeaderScanner): string | undefined {
  const start = s.pos
  while (!s.done && TOKEN68_CHAR.test(s.peek())) s.pos++
  if (s.pos === start) return undefined
  while (s.peek() === '=') s.pos++
  const candidate = s.text.slice(start, s.pos)
  s.skipSpace()
  if (s.done || s.peek() === ',') return candidate
  s.pos = start
  return undefined
}

/** The first challenge with this scheme (case-insensitive). */
export function findChallenge (challenges: readonly Challenge[], scheme: string): Challenge | undefined {
  const want = scheme.toLowerCase()
  return challenges.find((c) => c.scheme === want)
}

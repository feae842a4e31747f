// Plain name globs for namespaces and image names: `*` matches any run of characters
// (including `/`), `?` exactly one. Registry host globs follow the kubelet's different rules
// and live in src/reference/host-glob.ts.

export type NameMatcher = (name: string) => boolean

export function compileGlob (pattern: string): RegExp {
  let re = '^'
  for (const ch of pattern) {
    if (ch === '*') re += '.*'
    else if (ch === '?') re += '.'
    else re += ch.replace(/[.+^${}()|[\]\\/-]/g, '\\$&')
  }
  return new RegExp(re + '$')
}

/** One matcher for a list of globs; compiled once, so the hot path only runs regexes. */
export function compileGlobs (patterns: readonly string[]): NameMatcher {
  if (patterns.length === 0) return () => false
  const res = patterns.map(compileGlob)
  return (name) => res.some(re => re.test(name))
}

// Admission warnings are shown by kubectl and client libraries. The API server truncates long
// ones and caps the total (Kubernetes docs, "Response: warnings": keep each under 120
// characters; all warnings together are limited to 4 KiB), so pullpin enforces those limits itself
// and says how many it had to leave out instead of letting them be cut mid-word.

import { forEachChunked } from '../mutate/chunks.js'

export const MAX_WARNING_CHARS = 119
export const MAX_WARNINGS_BYTES = 4000

export function limitWarnings (warnings: readonly string[]): string[] {
  const { out, from } = head(warnings)
  if (from !== undefined) out.push(leftOut(new Set(warnings.slice(from).map(x => truncate(oneLine(x)))).size))
  return out
}

/**
 * limitWarnings, with the warnings left out counted in slices when there are many (a huge pod
 * warns per container): a Promise then, so the count does not hold up other reviews (chunks.ts).
 */
export async function limitWarningsInSlices (warnings: readonly string[]): Promise<string[]> {
  const { out, from } = head(warnings)
  if (from === undefined) return out
  const distinct = new Set<string>()
  await forEachChunked(warnings.length - from, k => { distinct.add(truncate(oneLine(warnings[from + k]!))) })
  out.push(leftOut(distinct.size))
  return out
}

/** The warnings that fit the budget, and where the ones left out begin (undefined: none is). */
function head (warnings: readonly string[]): { out: string[], from: number | undefined } {
  const out: string[] = []
  const seen = new Set<string>()
  let bytes = 0
  for (let i = 0; i < warnings.length; i++) {
    const w = truncate(oneLine(warnings[i] ?? ''))
    if (w === '' || seen.has(w)) continue
    const size = Buffer.byteLength(w)
    // Reserve room for the "and N more" line.
    if (bytes + size > MAX_WARNINGS_BYTES - 40) return { out, from: i }
    seen.add(w)
    out.push(w)
    bytes += size
  }
  return { out, from: undefined }
}

function leftOut (n: number): string {
  return `pullpin: ${n} more warning(s) left out`
}

function oneLine (s: string): string {
  return isOneLine(s) ? s : s.replace(/\s+/g, ' ').trim()
}

/**
 * pullpin's own warnings are already one line: a scan of their characters answers that without
 * the regex's new string (an audit review has a warning per finding). Any whitespace but single
 * inner spaces, or any non-ASCII character, takes the regex path.
 */
function isOneLine (s: string): boolean {
  let afterSpace = true // a leading space is not one line
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 32) {
      if (afterSpace) return false
      afterSpace = true
    } else if (c < 32 || c > 126) {
      return false
    } else {
      afterSpace = false
    }
  }
  return !afterSpace || s.length === 0
}

function truncate (s: string): string {
  return s.length <= MAX_WARNING_CHARS ? s : s.slice(0, MAX_WARNING_CHARS - 1) + '…'
}

// Admission warnings are shown by kubectl and client libraries. The API server truncates long
// ones and caps the total (Kubernetes docs, "Response: warnings": keep each under 120
// characters; all warnings together are limited to 4 KiB), so pullpin enforces those limits itself
// and says how many it had to leave out instead of letting them be cut mid-word.

export const MAX_WARNING_CHARS = 119
export const MAX_WARNINGS_BYTES = 4000

export function limitWarnings (warnings: readonly string[]): string[] {
  const out: string[] = []
  const seen = new Set<string>()
  let bytes = 0
  for (let i = 0; i < warnings.length; i++) {
    const w = truncate(oneLine(warnings[i] ?? ''))
    if (w === '' || seen.has(w)) continue
    const size = Buffer.byteLength(w)
    // Reserve room for the "and N more" line.
    if (bytes + size > MAX_WARNINGS_BYTES - 40) {
      const left = new Set(warnings.slice(i).map(x => truncate(oneLine(x)))).size
      out.push(`pullpin: ${left} more warning(s) left out`)
      break
    }
    seen.add(w)
    out.push(w)
    bytes += size
  }
  return out
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

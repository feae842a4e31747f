// A review's result as findings: one reason, severity and note per thing pullpin found, for the
// places people look besides the admission warnings — workload warnings (src/admission/workload.ts),
// Events and PolicyReports (src/cluster/events.ts, policy-reports.ts). This is the ONE mapping from
// the Mutator's result to them: the pull-readiness checks' structured findings (src/mutate/findings.ts)
// as they are, the pins from the changes, and the few warnings that are not check findings
// (an image left unpinned, a pull secret not added) by their wording in src/mutate/pin-images.ts and
// src/cluster/copy-availability.ts.
import type { Mode } from '../policy/config.js'
import type { MutationResult } from '../mutate/mutator.js'
import type { FindingReason as CheckReason } from '../mutate/findings.js'

/**
 * Stable reasons: they are Event reasons and PolicyReport rules, so renaming one breaks queries.
 * The checks' own (src/mutate/findings.ts), and what pinning and the review itself add.
 */
export type FindingReason = CheckReason | 'ImagePinned' | 'WouldPin' | 'NotPinned' | 'WouldDeny' | 'CheckFailed'

/** PolicyReport severities (wgpolicyk8s.io/v1alpha2 PolicyReportResult.severity). */
export type FindingSeverity = 'high' | 'medium' | 'low' | 'info'
/** PolicyReport results: fail (denied or would be), warn (a problem), pass (pinned). */
export type FindingResult = 'fail' | 'warn' | 'pass'

export interface Finding {
  readonly reason: FindingReason
  readonly severity: FindingSeverity
  readonly result: FindingResult
  /** One line for a person: the admission warning's text, or what was pinned. */
  readonly note: string
  /** The image the finding is about, when there is one (PolicyReport resource and grouping). */
  readonly image?: string
}

interface Rule { readonly reason: FindingReason; readonly severity: FindingSeverity; readonly test: RegExp }

// Warnings that are not check findings; first match wins. The wording comes from
// src/mutate/pin-images.ts and src/cluster/copy-availability.ts.
const RULES: readonly Rule[] = [
  { reason: 'NoPullSecret', severity: 'high', test: /^pullpin: \S+ not (added|copied to)/ },
  { reason: 'NotPinned', severity: 'low', test: /^pullpin: \S+ not pinned: / },
]

function classify (warning: string): { reason: FindingReason; severity: FindingSeverity } {
  for (const r of RULES) if (r.test.test(warning)) return r
  return { reason: 'CheckFailed', severity: 'medium' }
}

/** The image a warning names: the first word after "pullpin: " or "image ". */
function imageOf (warning: string): string | undefined {
  const m = /^pullpin: (?:image )?(\S+)/.exec(warning)
  const word = m?.[1]
  return word !== undefined && /[/:@]/.test(word) ? word : undefined
}

/**
 * The findings of one review of a pod (or pod template) in `mode`. Secret injections are not
 * findings (they are the normal case); pins are, so that audit mode says what it would do.
 */
export function findingsOf (result: Pick<MutationResult, 'changes' | 'warnings' | 'deny' | 'findings'>, mode: Mode): Finding[] {
  const out: Finding[] = []
  // The checks' findings as recorded; their warnings (applyFindings) are not counted twice.
  const told = new Set<string>()
  for (const f of result.findings) {
    const note = `pullpin: ${f.message}`
    told.add(note)
    out.push({ reason: f.reason, severity: 'high', result: f.severity === 'deny' ? 'fail' : 'warn', note, image: f.image })
  }
  for (const w of result.warnings) {
    if (told.has(w)) continue
    const { reason, severity } = classify(w)
    const image = imageOf(w)
    out.push({ reason, severity, result: 'warn', note: w, ...(image !== undefined ? { image } : {}) })
  }
  for (const c of result.changes) {
    if (c.kind !== 'pin') continue
    out.push(mode === 'enforce'
      ? { reason: 'ImagePinned', severity: 'info', result: 'pass', note: `pullpin: ${c.container} pinned to ${c.to}`, image: c.from }
      : { reason: 'WouldPin', severity: 'info', result: 'warn', note: `pullpin audit: would pin ${c.container} to ${c.to}`, image: c.from })
  }
  if (result.deny !== undefined && mode === 'audit') {
    out.push({ reason: 'WouldDeny', severity: 'high', result: 'fail', note: `pullpin audit: would deny: ${result.deny}` })
  }
  return out
}

// A review's result as findings: one reason, severity and note per thing pullpin found, for the
// places people look besides the admission warnings — workload warnings (src/admission/workload.ts),
// Events and PolicyReports (src/cluster/findings-*.ts). This is the ONE mapping from the
// Mutator's result to findings: when the pull-readiness checks of issue 13 return structured
// findings, only the body of findingsOf changes. Until then the mutator's warnings are strings,
// and their reasons are read from the wording of src/mutate/pin-images.ts and
// src/cluster/copy-availability.ts.
import type { Mode } from '../policy/config.js'
import type { MutationResult } from '../mutate/mutator.js'

/** Stable reasons: they are Event reasons and PolicyReport rules, so renaming one breaks queries. */
export type FindingReason =
  | 'ImageNotFound'
  | 'PullAccessDenied'
  | 'NoPullSecret'
  | 'PlatformMissing'
  | 'ReferenceInvalid'
  | 'ImagePinned'
  | 'WouldPin'
  | 'NotPinned'
  | 'WouldDeny'
  | 'CheckFailed'

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

// First match wins; the wording comes from src/mutate/pin-images.ts and src/cluster/copy-availability.ts.
const RULES: readonly Rule[] = [
  { reason: 'ImageNotFound', severity: 'high', test: /^pullpin: image \S+ not found on / },
  { reason: 'PullAccessDenied', severity: 'high', test: /refused the credentials/ },
  { reason: 'NoPullSecret', severity: 'high', test: /^pullpin: \S+ not (added|copied to)/ },
  { reason: 'PlatformMissing', severity: 'high', test: /platform/i },
  { reason: 'ReferenceInvalid', severity: 'high', test: /^pullpin: invalid image reference / },
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
export function findingsOf (result: Pick<MutationResult, 'changes' | 'warnings' | 'deny'>, mode: Mode): Finding[] {
  const out: Finding[] = []
  for (const w of result.warnings) {
    const { reason, severity } = classify(w)
    const image = imageOf(w)
    // A warning whose check denies in enforce mode is a failure; in audit mode it would be.
    const denies = result.deny !== undefined && image !== undefined && result.deny.includes(image)
    out.push({ reason, severity, result: denies ? 'fail' : 'warn', note: w, ...(image !== undefined ? { image } : {}) })
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

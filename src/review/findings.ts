// The one place where what the webhook's mutator answered (a MutationResult) becomes review
// findings: the pull-readiness checks' structured findings (src/mutate/findings.ts), the pins and
// secrets it would add, and the warnings that are not check findings (an image left unpinned, a
// registry that failed) by their wording in src/mutate/pin-images.ts.
import type { MutationResult } from '../mutate/mutator.js'
import type { FindingReason } from '../mutate/findings.js'
import type { ImageSite } from '../mutate/pod.js'

export const CHECKS = ['missing-image', 'reference-error', 'pull-access', 'platforms', 'registry-error', 'not-pinned', 'pin', 'secret'] as const
export type Check = typeof CHECKS[number]

/** What `--fail-on` defaults to: a pod that would never start. */
export const DEFAULT_FAIL_ON: readonly Check[] = ['missing-image', 'reference-error']

export type Severity = 'error' | 'warning' | 'note'

export interface Finding {
  readonly check: Check
  readonly severity: Severity
  readonly message: string
  /** The image as written, when the finding is about one. */
  readonly image?: string
  readonly container?: string
  /** Pins: the image as the webhook would write it. */
  readonly to?: string
  /** Secrets: the imagePullSecret the webhook would add. */
  readonly secret?: string
}

const SEVERITY: Readonly<Record<Check, Severity>> = {
  'missing-image': 'error',
  'reference-error': 'error',
  'pull-access': 'error',
  platforms: 'error',
  'registry-error': 'warning',
  'not-pinned': 'warning',
  pin: 'note',
  secret: 'note',
}

const CHECK_OF: Readonly<Record<FindingReason, Check>> = {
  ImageNotFound: 'missing-image',
  ReferenceInvalid: 'reference-error',
  PullAccessDenied: 'pull-access',
  NoPullSecret: 'pull-access',
  PlatformMissing: 'platforms',
}

/** Warning texts of src/mutate/pin-images.ts that are not check findings, most specific first. */
const WARNING_CHECKS: ReadonlyArray<readonly [RegExp, Check]> = [
  [/registry (unavailable|timed out|sent a bad response|sent a digest|resolves to a private)|lookup failed|lookup cut|lookupBudgetMs/, 'registry-error'],
]

export function findingsFromMutation (result: MutationResult, sites: readonly ImageSite[]): Finding[] {
  const out: Finding[] = []
  for (const change of result.changes) {
    if (change.kind === 'pin') {
      out.push({ check: 'pin', severity: SEVERITY.pin, image: change.from, container: change.container, to: change.to, message: `would pin ${change.from} to ${change.to}` })
    } else {
      out.push({ check: 'secret', severity: SEVERITY.secret, secret: change.secret, message: `would add imagePullSecret ${change.secret}` })
    }
  }
  // The checks' findings name their container: the image as written is that container's.
  const told = new Set<string>()
  for (const f of result.findings) {
    told.add(`pullpin: ${f.message}`)
    const site = sites.find(s => s.container === f.container && s.field === f.field)
    const check = CHECK_OF[f.reason]
    out.push({ check, severity: SEVERITY[check], image: site?.image ?? f.image, container: f.container, message: f.message })
  }
  for (const warning of result.warnings) {
    if (told.has(warning)) continue
    const text = warning.replace(/^pullpin: /, '')
    const check = WARNING_CHECKS.find(([re]) => re.test(text))?.[1] ?? 'not-pinned'
    // The warning names the image as written: the containers using it are the finding's place.
    const users = sites.filter(s => text.includes(s.image))
    const image = users.reduce<string | undefined>((best, s) => best === undefined || s.image.length > best.length ? s.image : best, undefined)
    const containers = users.filter(s => s.image === image)
    if (containers.length === 0) {
      out.push({ check, severity: SEVERITY[check], message: text })
      continue
    }
    for (const site of containers) out.push({ check, severity: SEVERITY[check], image: site.image, container: site.container, message: text })
  }
  return out
}

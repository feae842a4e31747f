// The one place where what the webhook's mutator answered (a MutationResult) becomes review
// findings. Today the mutator reports pull-readiness problems as warning strings plus `deny`
// (pinning.onMissingImage); when structured findings (check, reason, image, container) come
// out of src/mutate, only this function changes.
import type { MutationResult } from '../mutate/mutator.js'
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

/** Warning texts of src/mutate/pin-images.ts, most specific first. */
const WARNING_CHECKS: ReadonlyArray<readonly [RegExp, Check]> = [
  [/ not found on .*ImagePullBackOff/, 'missing-image'],
  [/invalid image reference/, 'reference-error'],
  [/refused the credentials|token realm refused/, 'pull-access'],
  [/platform/, 'platforms'],
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
  for (const warning of result.warnings) {
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

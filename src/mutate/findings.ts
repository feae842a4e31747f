// Findings: what the pull-readiness checks (check-images.ts) found about a pod's images, as data.
// The checks only record findings; one place (applyFindings) turns them into admission warnings, a
// denial and diagnostics, so that other consumers (a review CLI, Events, PolicyReports, a
// validating webhook) read the same structured list rather than parse warning strings.
import type { ImageField } from './pod.js'

export type CheckName = 'exists' | 'pullAccess' | 'platforms' | 'reference'

export type FindingReason =
  | 'ImageNotFound'
  | 'PullAccessDenied'
  | 'NoPullSecret'
  | 'PlatformMissing'
  | 'ReferenceInvalid'

export type { ImageField }

export interface Finding {
  readonly check: CheckName
  readonly reason: FindingReason
  readonly field: ImageField
  /** Container (or image volume) name. */
  readonly container: string
  /** The image as the kubelet will see it (after pinning). */
  readonly image: string
  /** deny: the pod is rejected in enforce mode (checks.exists: deny, on a definite "not found"). */
  readonly severity: 'warning' | 'deny'
  /** Short, for kubectl: `pullpin: ${message}` stays within WARNING_MAX_CHARS. */
  readonly message: string
  /** The full story for the log (registry error text…); never sent to the client. */
  readonly detail?: string
}

/**
 * The API server truncates a warning longer than this (k8s.io/apiserver pkg/warning:
 * "truncate warnings longer than 120 characters"; kubectl prints what it gets).
 */
export const WARNING_MAX_CHARS = 120

const PREFIX = 'pullpin: '

/** `text` cut to fit a warning with the pullpin prefix, marking the cut. */
export function fitWarning (text: string, prefix = PREFIX): string {
  const room = WARNING_MAX_CHARS - prefix.length
  return text.length <= room ? text : text.slice(0, room - 1) + '…'
}

/**
 * `s` shortened in the middle to at most `max` characters: the start of a long image name says
 * which registry, its end which repository, and both help more than either alone.
 */
export function middle (s: string, max: number): string {
  if (s.length <= max) return s
  const head = Math.ceil((max - 1) / 2)
  return s.slice(0, head) + '…' + s.slice(s.length - (max - 1 - head))
}

export interface FindingSink {
  readonly mode: 'enforce' | 'audit'
  readonly warnings: string[]
  readonly diagnostics: string[]
  deny: string | undefined
}

/**
 * The one place findings become what the API server and the log see: a warning each, the first
 * deny finding as the denial (the handler turns it into "would deny" in audit mode), details as
 * diagnostics.
 */
export function applyFindings (findings: readonly Finding[], sink: FindingSink): void {
  for (const f of findings) {
    sink.warnings.push(PREFIX + f.message)
    if (f.detail !== undefined) sink.diagnostics.push(`${f.container}: ${f.detail}`)
    if (f.severity === 'deny' && sink.deny === undefined) sink.deny = f.message
  }
}

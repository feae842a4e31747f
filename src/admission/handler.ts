// AdmissionReview in → AdmissionReview out. This module only maps a request to a response (the
// k8s-digester model): which namespaces take part is policy, what changes is the mutator's, and
// transport (HTTP, TLS) is the server's. It never throws for a well-formed review: internal
// failures become an allowed-with-warning or a denied response according to `failOpen`.
import type { Logger } from 'pino'
import type { Labels, NamespacePolicy } from '../policy/namespace-mode.js'
import { SKIP_ANNOTATION } from '../policy/annotations.js'
import type { Change, MutationResult, Mutator } from '../mutate/mutator.js'
import type { Finding } from '../mutate/findings.js'
import type { Pod } from '../mutate/pod.js'
import { isPodMutation, parseAdmissionReview, reviewResponse, type AdmissionRequest, type AdmissionResponse, type AdmissionReviewOut } from './review.js'
import { limitWarnings, limitWarningsInSlices } from './warnings.js'
import { ReviewDeadline } from './deadline.js'
import { addLogList, logError, logString } from './log-fields.js'
import { encodePatch, stringifyMap } from './response-pieces.js'
import { CHUNK_SIZE } from '../mutate/chunks.js'

export type Outcome = 'mutated' | 'unchanged' | 'audited' | 'denied' | 'error' | 'skipped'

/** Where namespace labels come from: the static config, or the cluster's namespace informer. */
export interface NamespaceDirectory {
  /** No I/O on a hit (the hot path); the API server is asked only for a namespace not seen yet. */
  labels (namespace: string): Promise<Labels | undefined>
}

export interface AdmissionMetrics {
  observe (outcome: Outcome, seconds: number): void
  secretsInjected (secret: string, dryRun: boolean): void
  auditFinding (kind: Change['kind']): void
}

export interface AdmissionOptions {
  readonly policy: NamespacePolicy
  readonly namespaces: NamespaceDirectory
  readonly mutator: Mutator
  readonly logger: Logger
  readonly metrics: AdmissionMetrics
  readonly failOpen: boolean
  /** The whole review must finish within this; past it the pod is admitted unchanged (or denied when !failOpen). */
  readonly deadlineMs: number
  /**
   * Told about a reviewed pod with findings and a controlling owner (src/cluster/events.ts turns
   * it into an Event on that owner), never for a dry run. It only queues: the findings are made
   * and written in the background, after the answer.
   */
  readonly onReviewed?: (reviewed: ReviewedPod) => void
}

/** A pod review's result, for Events and PolicyReports (src/admission/findings.ts maps it). */
export interface ReviewedPod {
  readonly namespace: string
  /** The pod's controlling ownerReference (ReplicaSet, StatefulSet, DaemonSet, Job…). */
  readonly owner: { readonly apiVersion: string; readonly kind: string; readonly name: string; readonly uid: string }
  readonly mode: 'enforce' | 'audit'
  readonly result: Pick<MutationResult, 'changes' | 'warnings' | 'deny' | 'findings'>
}

export type AdmissionHandler = (body: unknown) => Promise<AdmissionReviewOut>

export function createAdmissionHandler (opts: AdmissionOptions): AdmissionHandler {
  const { policy, namespaces, mutator, logger, metrics, failOpen, deadlineMs, onReviewed } = opts

  return async function handle (body) {
    const req = parseAdmissionReview(body) // throws ERR_REVIEW_MALFORMED → HTTP 400
    const started = performance.now()
    const done = (outcome: Outcome, response: AdmissionResponse): AdmissionReviewOut => {
      metrics.observe(outcome, (performance.now() - started) / 1000)
      return reviewResponse(response)
    }
    if (!isPodMutation(req)) return done('skipped', { uid: req.uid, allowed: true })

    const pod = req.object as Pod
    if (pod.metadata?.annotations?.[SKIP_ANNOTATION] === 'true') {
      return done('skipped', { uid: req.uid, allowed: true, auditAnnotations: { skipped: SKIP_ANNOTATION } })
    }
    const namespace = req.namespace ?? pod.metadata?.namespace ?? ''
    // The per-review logger is made only when a line is written: most reviews write none, or one.
    let reviewLog: Logger | undefined
    const log = (): Logger => (reviewLog ??= logger.child({ uid: logString(req.uid), namespace: logString(namespace), pod: logString(podName(pod, req)), operation: req.operation }))

    let reviewed: { readonly mode: 'enforce' | 'audit'; readonly result: MutationResult } | { readonly mode: 'off'; readonly reason: string }
    const deadline = new ReviewDeadline(deadlineMs)
    const review = async (): Promise<typeof reviewed> => {
      const labels = await namespaces.labels(namespace)
      const decision = policy.decide(namespace, labels)
      if (decision.mode === 'off') return { mode: 'off', reason: decision.reason }
      const result = await mutator({
        operation: req.operation as 'CREATE' | 'UPDATE',
        subResource: req.subResource === '' ? undefined : req.subResource,
        namespace,
        mode: decision.mode,
        dryRun: req.dryRun === true,
        object: pod,
        oldObject: req.oldObject as Pod | undefined,
        deadline,
      })
      return { mode: decision.mode, result }
    }
    const failed = (err: unknown): AdmissionReviewOut => {
      const reason = (err as Error).message
      log().error({ err: logError(err) }, 'mutation failed')
      if (failOpen) {
        return done('error', { uid: req.uid, allowed: true, warnings: limitWarnings([`pullpin: internal error, pod admitted unchanged: ${reason}`]) })
      }
      return done('error', { uid: req.uid, allowed: false, status: { code: 500, reason: 'InternalError', message: `pullpin: internal error (failOpen is false): ${reason}` } })
    }
    try {
      // One race for the whole review, whatever it waits on; a review answered from caches
      // settles within its turn and makes no timer (src/admission/deadline.ts).
      reviewed = await deadline.race(review())
    } catch (err) {
      return failed(err)
    } finally {
      deadline.clear()
    }
    // A huge pod's response is built in slices after the race (response-pieces.ts, warnings.ts):
    // when that took it past the deadline, the answer is the one the race would have given.
    const late = (): AdmissionReviewOut | undefined => deadline.remainingMs() > 0 ? undefined : failed(new Error(`no answer within ${deadlineMs} ms`))
    if (reviewed.mode === 'off') {
      if (logger.isLevelEnabled('debug')) log().debug({ reason: reviewed.reason }, 'namespace not mutated')
      return done('skipped', { uid: req.uid, allowed: true })
    }
    const { mode, result } = reviewed
    // Queued before the answer is built, written after it (and never on a dry run).
    if (onReviewed !== undefined && req.dryRun !== true && hasFindings(result)) {
      const owner = controllerOf(pod)
      if (owner !== undefined) onReviewed({ namespace, owner, mode, result })
    }

    // A huge pod's warnings are counted in slices (warnings.ts); past the deadline, late() answers.
    if (result.deny !== undefined && mode === 'enforce') {
      const warnings = await limitWarningsInSlices(result.warnings)
      const answer = late()
      if (answer !== undefined) return answer
      log().info(reviewLine({ mode, outcome: 'denied', reason: logString(result.deny) }, result), 'pod denied')
      return done('denied', {
        uid: req.uid,
        allowed: false,
        status: { code: 403, reason: 'Forbidden', message: `pullpin: ${result.deny}` },
        warnings,
      })
    }

    if (mode === 'audit') {
      for (const c of result.changes) metrics.auditFinding(c.kind)
      const findings = [...result.changes.map(describeAuditChange), ...result.warnings]
      if (result.deny !== undefined) findings.push(`pullpin audit: would deny: ${result.deny}`)
      const response: AdmissionResponse = { uid: req.uid, allowed: true, auditAnnotations: withFindings(await auditAnnotations('audit', result.changes, 'would-'), result.findings, 'would-') }
      if (findings.length > 0) {
        response.warnings = await limitWarningsInSlices(findings)
        const answer = late()
        if (answer !== undefined) return answer
        log().info(reviewLine({ mode, outcome: 'audited', wouldDeny: result.deny === undefined ? undefined : logString(result.deny) }, result, 'wouldChange'), 'audit: pod would be mutated')
      } else if (logger.isLevelEnabled('debug')) {
        log().debug({ mode, outcome: 'audited' }, 'audit: pod would be unchanged')
      }
      return done('audited', response)
    }

    const dryRun = req.dryRun === true
    for (const c of result.changes) if (c.kind === 'secret') metrics.secretsInjected(c.secret, dryRun)
    const response: AdmissionResponse = { uid: req.uid, allowed: true }
    const warnings = await limitWarningsInSlices(result.warnings)
    const lateAnswer = late()
    if (lateAnswer !== undefined) return lateAnswer
    if (warnings.length > 0) response.warnings = warnings
    if (result.findings.length > 0) response.auditAnnotations = withFindings({ mode }, result.findings, '')
    if (result.patch.length === 0) {
      // Unchanged with warnings is worth a line (a registry problem); plain unchanged is not.
      // Diagnostics too: a check the registry did not answer in time leaves no warning, only them.
      if (result.warnings.length > 0 || result.diagnostics.length > 0) log().info(reviewLine({ mode, outcome: 'unchanged' }, result), 'pod unchanged, with warnings')
      else if (logger.isLevelEnabled('debug')) log().debug({ mode, outcome: 'unchanged' }, 'pod unchanged')
      return done('unchanged', response)
    }
    response.patchType = 'JSONPatch'
    // A huge pod's patch and annotations are built in slices (response-pieces.ts).
    response.patch = await encodePatch(result.patch)
    response.auditAnnotations = withFindings(await auditAnnotations('enforce', result.changes, ''), result.findings, '')
    const answer = late()
    if (answer !== undefined) return answer
    // A clean mutation is recorded on the pod (pullpin.io/pins), in the API server's
    // audit log (the audit annotations above) and in the metrics; its log line is debug, since at
    // info it was a third of the review's CPU (BENCHMARKS.md). Anything with a warning is info.
    if (result.warnings.length > 0 || result.diagnostics.length > 0) log().info(reviewLine({ mode, outcome: 'mutated', dryRun }, result, 'changes'), 'pod mutated, with warnings')
    else if (logger.isLevelEnabled('debug')) log().debug(reviewLine({ mode, outcome: 'mutated', dryRun }, { changes: result.changes }, 'changes'), 'pod mutated')
    return done('mutated', response)
  }
}

/**
 * A review's log line: `fields`, plus the result's lists that grow with the pod (changes under
 * `changesAs`, warnings, diagnostics), each bounded by log-fields.ts.
 */
function reviewLine (fields: Record<string, unknown>, result: Partial<Pick<MutationResult, 'changes' | 'warnings' | 'diagnostics'>>, changesAs?: 'changes' | 'wouldChange'): Record<string, unknown> {
  if (changesAs !== undefined && result.changes !== undefined) addLogList(fields, changesAs, result.changes)
  if (result.warnings !== undefined) addLogList(fields, 'warnings', result.warnings)
  if (result.diagnostics !== undefined) addLogList(fields, 'diagnostics', result.diagnostics)
  return fields
}

function hasFindings (result: MutationResult): boolean {
  if (result.warnings.length > 0 || result.deny !== undefined) return true
  for (const c of result.changes) if (c.kind === 'pin') return true
  return false
}

/** The controlling ownerReference, when it is well-formed (a bare pod has none). */
function controllerOf (pod: Pod): ReviewedPod['owner'] | undefined {
  const refs = pod.metadata?.ownerReferences
  if (!Array.isArray(refs)) return undefined
  for (const o of refs as unknown[]) {
    if (o === null || typeof o !== 'object') continue
    const { controller, apiVersion, kind, name, uid } = o as Record<string, unknown>
    if (controller !== true) continue
    if (typeof apiVersion !== 'string' || typeof kind !== 'string' || typeof name !== 'string' || typeof uid !== 'string' || name === '' || uid === '') return undefined
    return { apiVersion, kind, name, uid }
  }
  return undefined
}

function podName (pod: Pod, req: AdmissionRequest): string {
  return pod.metadata?.name ?? req.name ?? (pod.metadata?.generateName !== undefined ? `${pod.metadata.generateName}*` : '')
}

function describeAuditChange (c: Change): string {
  return c.kind === 'secret'
    ? `pullpin audit: would add imagePullSecret ${c.secret}`
    : `pullpin audit: would pin ${c.container} to ${c.to}`
}

/**
 * The checks' findings in the API server's audit log (findings.ts): container, check and reason
 * per finding, as a JSON list. "would-findings" in audit mode: every finding there is a would-finding.
 */
function withFindings (annotations: Record<string, string>, findings: readonly Finding[], prefix: '' | 'would-'): Record<string, string> {
  if (findings.length === 0) return annotations
  annotations[`${prefix}findings`] = JSON.stringify(findings.map(f => ({ container: f.container, check: f.check, reason: f.reason })))
  return annotations
}

// Audit annotation keys must be qualified names without a prefix (the API server prefixes them
// with the webhook's name) and at most 63 characters.
// A huge pod's pins are serialized in slices (response-pieces.ts).
export async function auditAnnotations (mode: 'enforce' | 'audit', changes: readonly Change[], prefix: '' | 'would-'): Promise<Record<string, string>> {
  const out: Record<string, string> = { mode }
  // One plain loop rather than flatMap/fromEntries: it is on every review's path (BENCHMARKS.md,
  // "Profile findings", bench/pieces.ts).
  const secrets: string[] = []
  // No prototype: a container named "__proto__" (webhooks run before validation) stays a key.
  let pins: Record<string, string> | undefined
  let pinned = 0
  for (const c of changes) {
    if (c.kind === 'secret') secrets.push(c.secret)
    else { (pins ??= Object.create(null) as Record<string, string>)[c.container] = c.to; pinned++ }
  }
  if (secrets.length > 0) out[`${prefix}inject-secrets`] = secrets.join(',')
  if (pins === undefined) return out
  out[`${prefix}pin-images`] = pinned <= CHUNK_SIZE ? JSON.stringify(pins) : await stringifyMap(pins)
  return out
}

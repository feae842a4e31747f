// The validating webhook for workloads (issue 18): a Deployment, StatefulSet, DaemonSet, Job or
// CronJob is reviewed as the pods it will make, so the person who runs `kubectl apply` (or whose
// Argo CD syncs) reads pullpin's findings as warnings before any pod exists. The pods of a
// Deployment are created by the ReplicaSet controller, which is who reads the pod webhook's
// warnings; nobody reads those.
//
// The pod template goes through the same Mutator as a pod, in the namespace's mode, always as a
// dry run: a validating webhook has sideEffects None (no pull-secret copies are created, no owner
// pin is remembered), and the answer is allowed + warnings, never a patch. It denies only when
// the config says deny for a check (checks.exists: deny, in an enforcing namespace), or
// on an internal error with failOpen: false — the same answers the pod webhook would give the
// pods, given earlier.
import type { Logger } from 'pino'
import type { NamespacePolicy } from '../policy/namespace-mode.js'
import { SKIP_ANNOTATION } from '../policy/annotations.js'
import type { Mutator } from '../mutate/mutator.js'
import type { Pod } from '../mutate/pod.js'
import { parseAdmissionReview, reviewResponse, type AdmissionRequest, type AdmissionResponse, type AdmissionReviewOut } from './review.js'
import { limitWarnings, limitWarningsInSlices } from './warnings.js'
import { ReviewDeadline } from './deadline.js'
import { logError, logString } from './log-fields.js'
import { findingsOf, type Finding } from './findings.js'
import type { AdmissionHandler, NamespaceDirectory } from './handler.js'

export type WorkloadOutcome = 'warned' | 'clean' | 'denied' | 'error' | 'skipped'

export interface WorkloadMetrics {
  workloadReview (kind: string, outcome: WorkloadOutcome, seconds: number): void
}

/** A workload's findings, for the PolicyReport writer (src/cluster/policy-reports.ts). */
export interface WorkloadFindings {
  readonly namespace: string
  readonly workload: { readonly apiVersion: string; readonly kind: string; readonly name: string; readonly uid?: string }
  readonly findings: readonly Finding[]
}

export interface WorkloadAdmissionOptions {
  readonly policy: NamespacePolicy
  readonly namespaces: NamespaceDirectory
  readonly mutator: Mutator
  readonly logger: Logger
  readonly metrics?: WorkloadMetrics
  readonly failOpen: boolean
  readonly deadlineMs: number
  /** Told after the answer is made, never for a dry run; must not block (it queues). */
  readonly onFindings?: (f: WorkloadFindings) => void
}

/** The workload resources reviewed, and where each keeps its pod template. */
const WORKLOADS: Readonly<Record<string, { readonly group: string; readonly template: readonly string[] }>> = {
  deployments: { group: 'apps', template: ['spec', 'template'] },
  statefulsets: { group: 'apps', template: ['spec', 'template'] },
  daemonsets: { group: 'apps', template: ['spec', 'template'] },
  jobs: { group: 'batch', template: ['spec', 'template'] },
  cronjobs: { group: 'batch', template: ['spec', 'jobTemplate', 'spec', 'template'] },
}

function isObject (v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** The pod template of a workload request, or undefined when the request is not one pullpin reviews. */
export function workloadTemplate (req: AdmissionRequest): { metadata?: unknown; spec?: unknown } | undefined {
  if (req.operation !== 'CREATE' && req.operation !== 'UPDATE') return undefined
  if (req.subResource !== undefined && req.subResource !== '') return undefined
  const w = Object.hasOwn(WORKLOADS, req.resource.resource) ? WORKLOADS[req.resource.resource] : undefined
  if (w === undefined || req.resource.group !== w.group) return undefined
  let at: unknown = req.object
  for (const key of w.template) at = isObject(at) && Object.hasOwn(at, key) ? at[key] : undefined
  return isObject(at) ? at : undefined
}

/** The pod a controller would make from a template: what the pod webhook will see. */
function podOf (template: { metadata?: unknown; spec?: unknown }, namespace: string): Pod {
  const metadata = isObject(template.metadata) ? { ...template.metadata, namespace } : { namespace }
  return { apiVersion: 'v1', kind: 'Pod', metadata, ...(template.spec !== undefined ? { spec: template.spec as Pod['spec'] } : {}) }
}

export function createWorkloadHandler (opts: WorkloadAdmissionOptions): AdmissionHandler {
  const { policy, namespaces, mutator, logger, metrics, failOpen, deadlineMs, onFindings } = opts
  return async function handle (body) {
    const req = parseAdmissionReview(body) // throws ERR_REVIEW_MALFORMED → HTTP 400
    const started = performance.now()
    const kind = req.kind.kind
    const template = workloadTemplate(req)
    // The kind label only for reviewed resources: anyone can POST any kind (series stay bounded).
    const label = template !== undefined ? kind : 'other'
    const done = (outcome: WorkloadOutcome, response: AdmissionResponse): AdmissionReviewOut => {
      metrics?.workloadReview(label, outcome, (performance.now() - started) / 1000)
      return reviewResponse(response)
    }
    if (template === undefined) return done('skipped', { uid: req.uid, allowed: true })
    const object = req.object as { metadata?: { name?: unknown; namespace?: unknown; uid?: unknown; annotations?: unknown } }
    const pod = podOf(template, req.namespace ?? (typeof object.metadata?.namespace === 'string' ? object.metadata.namespace : ''))
    if (pod.metadata?.annotations?.[SKIP_ANNOTATION] === 'true') return done('skipped', { uid: req.uid, allowed: true })
    const namespace = pod.metadata!.namespace!
    const name = typeof object.metadata?.name === 'string' ? object.metadata.name : (req.name ?? '')
    const log = (): Logger => logger.child({ uid: logString(req.uid), namespace: logString(namespace), workload: logString(`${kind}/${name}`), operation: req.operation })

    const deadline = new ReviewDeadline(deadlineMs)
    let findings: Finding[]
    let deny: string | undefined
    let mode: 'enforce' | 'audit'
    try {
      const reviewed = await deadline.race((async () => {
        const decision = policy.decide(namespace, await namespaces.labels(namespace))
        if (decision.mode === 'off') return undefined
        // Always a dry run: no copies created, no owner pins remembered (sideEffects: None).
        const result = await mutator({ operation: 'CREATE', namespace, mode: decision.mode, dryRun: true, object: pod, deadline })
        return { mode: decision.mode, result }
      })())
      if (reviewed === undefined) return done('skipped', { uid: req.uid, allowed: true })
      mode = reviewed.mode
      findings = findingsOf(reviewed.result, mode)
      deny = mode === 'enforce' ? reviewed.result.deny : undefined
    } catch (err) {
      const reason = (err as Error).message
      log().error({ err: logError(err) }, 'workload review failed')
      if (failOpen) return done('error', { uid: req.uid, allowed: true, warnings: limitWarnings([`pullpin: internal error, ${kind} not reviewed: ${reason}`]) })
      return done('error', { uid: req.uid, allowed: false, status: { code: 500, reason: 'InternalError', message: `pullpin: internal error (failOpen is false): ${reason}` } })
    } finally {
      deadline.clear()
    }

    const warnings = await limitWarningsInSlices(findings.map(f => f.note))
    const response: AdmissionResponse = { uid: req.uid, allowed: deny === undefined }
    if (warnings.length > 0) response.warnings = warnings
    if (deny !== undefined) response.status = { code: 403, reason: 'Forbidden', message: `pullpin: ${deny}` }
    if (findings.length > 0) log().info({ mode, findings: findings.length, reasons: [...new Set(findings.map(f => f.reason))], denied: deny !== undefined }, `${kind} reviewed, with findings`)
    const answer = done(deny !== undefined ? 'denied' : findings.length > 0 ? 'warned' : 'clean', response)
    if (onFindings !== undefined && req.dryRun !== true) {
      onFindings({
        namespace,
        workload: { apiVersion: req.kind.group === '' ? req.kind.version : `${req.kind.group}/${req.kind.version}`, kind, name, ...(typeof object.metadata?.uid === 'string' ? { uid: object.metadata.uid } : {}) },
        findings,
      })
    }
    return answer
  }
}

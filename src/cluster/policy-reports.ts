// Findings as wgpolicyk8s.io/v1alpha2 PolicyReports (issue 18 part 3, opt-in with
// reports.policyReports): one report per namespace, named `pullpin`, with a result per workload
// and finding, so `kubectl get policyreport` and the Policy Reporter UI show pullpin's audit next
// to other policy engines'. Report format: kubernetes-sigs/wg-policy-prototypes, PolicyReport
// v1alpha2 (results[].policy/rule/result/severity/message/resources/timestamp, summary counts).
//
// Only the leader writes (src/cluster/leader-election.ts), debounced: a change marks its
// namespace, and the namespace is written policyReportDelaySeconds later, once for a whole
// rollout. The report itself is the state: a write merges the findings reviewed since the last
// write into the results already there (a new leader keeps what the previous one wrote), and
// drops the results of workloads that are gone (each subject is read before the write; the
// periodic resync revisits every report). A pod's findings are filed under its controlling
// owner, and a ReplicaSet under the Deployment that controls it (one read per ReplicaSet,
// remembered), so a rollout's findings and the workload webhook's land on the same Deployment.
import type { Logger } from 'pino'
import type { ReviewedPod } from '../admission/handler.js'
import type { WorkloadFindings } from '../admission/workload.js'
import { findingsOf, type Finding } from '../admission/findings.js'
import type { ClusterConnection } from './connection.js'
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE } from './copy-plan.js'
import { callOptions, describeError, isConflict, isNotFound } from './kube-api.js'
import { systemClock, type Clock, type FindingMetrics } from './events.js'

export const REPORT_GROUP = 'wgpolicyk8s.io'
export const REPORT_VERSION = 'v1alpha2'
export const REPORT_PLURAL = 'policyreports'
export const REPORT_NAME = 'pullpin'
export const REPORT_SOURCE = 'pullpin'

/** The workload kinds whose existence is checked, by group/version and plural. */
const KINDS: Readonly<Record<string, { readonly group: string; readonly version: string; readonly plural: string }>> = {
  Deployment: { group: 'apps', version: 'v1', plural: 'deployments' },
  ReplicaSet: { group: 'apps', version: 'v1', plural: 'replicasets' },
  StatefulSet: { group: 'apps', version: 'v1', plural: 'statefulsets' },
  DaemonSet: { group: 'apps', version: 'v1', plural: 'daemonsets' },
  Job: { group: 'batch', version: 'v1', plural: 'jobs' },
  CronJob: { group: 'batch', version: 'v1', plural: 'cronjobs' },
}

export interface Subject { readonly apiVersion: string; readonly kind: string; readonly name: string; readonly namespace: string; readonly uid?: string }

export interface ReportResult {
  source: string
  policy: string
  rule: string
  result: string
  severity?: string
  category?: string
  message?: string
  scored?: boolean
  timestamp?: { seconds: number; nanos: number }
  resources?: Subject[]
  properties?: Record<string, string>
}

interface PolicyReport {
  apiVersion?: string
  kind?: string
  metadata: { name: string; namespace: string; resourceVersion?: string; labels?: Record<string, string> }
  summary?: Record<string, number>
  results?: ReportResult[]
}

export interface PolicyReporterOptions {
  readonly connection: ClusterConnection
  readonly logger: Logger
  readonly metrics?: FindingMetrics
  readonly isLeader: () => boolean
  /** Debounce: a changed namespace is written this long after its first change. */
  readonly delayMs: number
  readonly clock?: Clock
}

const subjectKey = (s: Pick<Subject, 'kind' | 'name'>): string => `${s.kind}/${s.name}`

interface Pending { readonly subject: Subject; readonly findings: readonly Finding[]; readonly mode: string; readonly at: number }

export class PolicyReporter {
  readonly #opts: PolicyReporterOptions
  readonly #clock: Clock
  /** namespace → subject key → findings reviewed since the last write. */
  readonly #pending = new Map<string, Map<string, Pending>>()
  /** Namespaces due for a write (debounce timers running). */
  readonly #scheduled = new Set<string>()
  /** ReplicaSet uid → the Deployment controlling it (or the ReplicaSet itself). */
  readonly #owners = new Map<string, Subject>()
  readonly #stop = new AbortController()
  readonly #writes = new Set<Promise<void>>()
  #available: boolean | undefined

  constructor (opts: PolicyReporterOptions) {
    this.#opts = opts
    this.#clock = opts.clock ?? systemClock
  }

  /** Whether the PolicyReport CRD is served (API discovery, once at start; no extra RBAC needed). */
  async discover (): Promise<boolean> {
    const { connection, logger } = this.#opts
    try {
      const list = await connection.customObjects.getAPIResources({ group: REPORT_GROUP, version: REPORT_VERSION }, callOptions({ signal: this.#stop.signal }))
      this.#available = list.resources.some(r => r.name === REPORT_PLURAL)
    } catch (err) {
      if (!isNotFound(err)) logger.warn({ error: describeError(err) }, 'PolicyReport API discovery failed')
      this.#available = false
    }
    if (this.#available) logger.info({ api: `${REPORT_GROUP}/${REPORT_VERSION}` }, 'PolicyReport CRD found: findings are written to PolicyReports named pullpin')
    else logger.info({ api: `${REPORT_GROUP}/${REPORT_VERSION}` }, 'PolicyReport CRD not installed: reports.policyReports has no effect')
    return this.#available
  }

  get available (): boolean { return this.#available === true }

  /** A reviewed pod (from the admission handler): filed under its controlling owner. */
  pod (r: ReviewedPod): void {
    const subject: Subject = { ...r.owner, namespace: r.namespace }
    this.#add(subject, findingsOf(r.result, r.mode), r.mode)
  }

  /** A reviewed workload (from the workload webhook): its findings replace its results, none clears them. */
  workload (w: WorkloadFindings): void {
    this.#add({ ...w.workload, namespace: w.namespace }, w.findings, '')
  }

  #add (subject: Subject, findings: readonly Finding[], mode: string): void {
    // Only the leader writes, so only the leader keeps findings (a follower would hold them forever).
    if (this.#available !== true || this.#stop.signal.aborted || !this.#opts.isLeader()) return
    let m = this.#pending.get(subject.namespace)
    if (m === undefined) this.#pending.set(subject.namespace, m = new Map<string, Pending>())
    m.set(subjectKey(subject), { subject, findings, mode, at: this.#clock.now() })
    this.schedule(subject.namespace)
  }

  /** Write `namespace` after the debounce delay (leader only). */
  schedule (namespace: string): void {
    if (this.#scheduled.has(namespace) || this.#stop.signal.aborted) return
    this.#scheduled.add(namespace)
    const p = this.#clock.sleep(this.#opts.delayMs, this.#stop.signal).then(async (due) => {
      this.#scheduled.delete(namespace)
      if (due && this.#opts.isLeader()) await this.write(namespace)
    }).finally(() => { this.#writes.delete(p) })
    this.#writes.add(p)
  }

  /** Every report pullpin wrote, revisited (leader, periodic resync): results of gone workloads leave. */
  async resync (): Promise<void> {
    if (!this.available || !this.#opts.isLeader()) return
    const { connection, logger } = this.#opts
    try {
      const list = await connection.customObjects.listCustomObjectForAllNamespaces({ group: REPORT_GROUP, version: REPORT_VERSION, plural: REPORT_PLURAL, labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}` }, callOptions({ signal: this.#stop.signal })) as { items?: PolicyReport[] }
      for (const r of list.items ?? []) if (r.metadata.name === REPORT_NAME) this.schedule(r.metadata.namespace)
      for (const ns of this.#pending.keys()) this.schedule(ns)
    } catch (err) {
      logger.warn({ error: describeError(err) }, 'PolicyReport resync failed')
    }
  }

  /** Resolves once no write is scheduled or running (tests). */
  async idle (): Promise<void> {
    while (this.#writes.size > 0) await Promise.all([...this.#writes])
  }

  async stop (): Promise<void> {
    this.#stop.abort()
    await this.idle()
  }

  /** Merge the pending findings of `namespace` into its report, drop gone workloads, write if changed. */
  async write (namespace: string): Promise<void> {
    const { connection, logger, metrics } = this.#opts
    const signal = this.#stop.signal
    const pending = this.#pending.get(namespace)
    this.#pending.delete(namespace)
    try {
      // Pods' owners: a ReplicaSet is filed under its Deployment.
      const updates = new Map<string, Pending>()
      for (const u of pending?.values() ?? []) {
        const subject = u.subject.kind === 'ReplicaSet' ? await this.#ownerOf(u.subject, signal) : u.subject
        const key = subjectKey(subject)
        const prev = updates.get(key)
        // Several ReplicaSets of one Deployment: the latest review wins.
        if (prev === undefined || prev.at <= u.at) updates.set(key, { ...u, subject })
      }
      let current: PolicyReport | undefined
      try {
        current = await connection.customObjects.getNamespacedCustomObject({ group: REPORT_GROUP, version: REPORT_VERSION, namespace, plural: REPORT_PLURAL, name: REPORT_NAME }, callOptions({ signal })) as PolicyReport
      } catch (err) {
        if (!isNotFound(err)) throw err
      }
      const kept: ReportResult[] = []
      const gone = new Map<string, boolean>()
      for (const r of current?.results ?? []) {
        const subject = r.resources?.[0]
        if (subject === undefined || r.source !== REPORT_SOURCE) continue
        const key = subjectKey(subject)
        if (updates.has(key)) continue
        if (!gone.has(key)) gone.set(key, !await this.#exists(subject, signal))
        if (gone.get(key) !== true) kept.push(r)
      }
      const fresh: ReportResult[] = []
      for (const u of updates.values()) {
        if (!await this.#exists(u.subject, signal)) continue
        for (const f of u.findings) fresh.push(resultOf(u.subject, f, u.mode, u.at))
      }
      const results = [...kept, ...fresh].sort(byResource)
      if (current !== undefined && JSON.stringify(current.results ?? []) === JSON.stringify(results)) return
      const body: PolicyReport = {
        apiVersion: `${REPORT_GROUP}/${REPORT_VERSION}`,
        kind: 'PolicyReport',
        metadata: { name: REPORT_NAME, namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE }, ...(current?.metadata.resourceVersion !== undefined ? { resourceVersion: current.metadata.resourceVersion } : {}) },
        summary: summaryOf(results),
        results,
      }
      if (current === undefined) {
        await connection.customObjects.createNamespacedCustomObject({ group: REPORT_GROUP, version: REPORT_VERSION, namespace, plural: REPORT_PLURAL, body }, callOptions({ signal }))
        metrics?.write('policyreport', 'created')
      } else {
        await connection.customObjects.replaceNamespacedCustomObject({ group: REPORT_GROUP, version: REPORT_VERSION, namespace, plural: REPORT_PLURAL, name: REPORT_NAME, body }, callOptions({ signal }))
        metrics?.write('policyreport', 'updated')
      }
      logger.debug({ namespace, results: results.length }, 'PolicyReport written')
    } catch (err) {
      if (signal.aborted) return
      metrics?.write('policyreport', 'failed')
      // Put the findings back (newer ones win) and try again after the delay: 409 means another
      // writer (a previous leader) changed the report since it was read.
      if (pending !== undefined) {
        const m = this.#pending.get(namespace) ?? new Map<string, Pending>()
        for (const [k, v] of pending) if (!m.has(k)) m.set(k, v)
        this.#pending.set(namespace, m)
      }
      if (!isConflict(err)) logger.warn({ namespace, error: describeError(err) }, 'PolicyReport not written')
      this.schedule(namespace)
    }
  }

  /** The Deployment controlling a ReplicaSet (one read per ReplicaSet, remembered), else the ReplicaSet. */
  async #ownerOf (rs: Subject, signal: AbortSignal): Promise<Subject> {
    const known = rs.uid !== undefined ? this.#owners.get(rs.uid) : undefined
    if (known !== undefined) return known
    let owner: Subject = rs
    try {
      const obj = await this.#opts.connection.customObjects.getNamespacedCustomObject({ group: 'apps', version: 'v1', namespace: rs.namespace, plural: 'replicasets', name: rs.name }, callOptions({ signal })) as { metadata?: { ownerReferences?: Array<{ apiVersion?: string; kind?: string; name?: string; uid?: string; controller?: boolean }> } }
      const ref = obj.metadata?.ownerReferences?.find(o => o.controller === true && o.kind === 'Deployment')
      if (ref?.name !== undefined) owner = { apiVersion: ref.apiVersion ?? 'apps/v1', kind: 'Deployment', name: ref.name, namespace: rs.namespace, ...(ref.uid !== undefined ? { uid: ref.uid } : {}) }
    } catch (err) {
      if (!isNotFound(err)) throw err
    }
    if (rs.uid !== undefined) this.#owners.set(rs.uid, owner)
    return owner
  }

  /** Whether a subject still exists (same uid when known). Kinds pullpin cannot check count as present. */
  async #exists (s: Subject, signal: AbortSignal): Promise<boolean> {
    const k = Object.hasOwn(KINDS, s.kind) ? KINDS[s.kind] : undefined
    if (k === undefined || `${k.group}/${k.version}` !== s.apiVersion) return true
    try {
      const obj = await this.#opts.connection.customObjects.getNamespacedCustomObject({ group: k.group, version: k.version, namespace: s.namespace, plural: k.plural, name: s.name }, callOptions({ signal })) as { metadata?: { uid?: string } }
      return s.uid === undefined || obj.metadata?.uid === undefined || obj.metadata.uid === s.uid
    } catch (err) {
      if (isNotFound(err)) return false
      throw err
    }
  }
}

function resultOf (subject: Subject, f: Finding, mode: string, at: number): ReportResult {
  return {
    source: REPORT_SOURCE,
    policy: 'pullpin',
    rule: f.reason,
    result: f.result,
    severity: f.severity,
    category: f.reason === 'ImagePinned' || f.reason === 'WouldPin' || f.reason === 'NotPinned' ? 'Image pinning' : 'Pull readiness',
    message: f.note,
    scored: true,
    timestamp: { seconds: Math.floor(at / 1000), nanos: 0 },
    resources: [{ apiVersion: subject.apiVersion, kind: subject.kind, name: subject.name, namespace: subject.namespace, ...(subject.uid !== undefined ? { uid: subject.uid } : {}) }],
    properties: { ...(f.image !== undefined ? { image: f.image } : {}), ...(mode !== '' ? { mode } : {}) },
  }
}

function byResource (a: ReportResult, b: ReportResult): number {
  const ka = `${subjectKey(a.resources![0]!)}\u0000${a.rule}\u0000${a.message ?? ''}`
  const kb = `${subjectKey(b.resources![0]!)}\u0000${b.rule}\u0000${b.message ?? ''}`
  return ka < kb ? -1 : ka > kb ? 1 : 0
}

function summaryOf (results: readonly ReportResult[]): Record<string, number> {
  const s: Record<string, number> = { pass: 0, fail: 0, warn: 0, error: 0, skip: 0 }
  for (const r of results) s[r.result] = (s[r.result] ?? 0) + 1
  return s
}

// Prometheus metrics for every layer, on a registry owned by the app (never prom-client's global
// one, so two servers in one process — tests, a second instance taking over — keep separate
// counts). Top level, beside app.ts which wires it: each layer declares what it reports (an
// interface or an event type: AdmissionMetrics, PinMetrics, CacheEvent, RegistryEvent,
// ClusterMetrics) and only this module knows prom-client; the server only serves the registry.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { AdmissionMetrics, Outcome } from './admission/handler.js'
import type { PinMetrics } from './mutate/pin-images.js'
import type { CheckMetrics, CheckResult } from './mutate/check-images.js'
import type { CheckName } from './mutate/findings.js'
import type { ImmutableCacheEvent } from './cache/immutable-cache.js'
import type { CacheEvent } from './cache/tag-cache.js'
import type { PinSource } from './cache/rollout-pins.js'
import type { RevisionEvent } from './cache/revision-pins.js'
import type { RegistryEvent } from './registry/client.js'
import type { ClusterMetrics } from './cluster/metrics.js'
import type { CredentialMetrics } from './credentials/refresher.js'
import type { WorkloadMetrics } from './admission/workload.js'
import type { FindingMetrics } from './cluster/events.js'

export interface Metrics {
  readonly registry: Registry
  readonly admission: AdmissionMetrics
  readonly pinning: PinMetrics
  /** The pull-readiness checks (pullpin_checks_total, pullpin_images_outside_hosts_total). */
  readonly checks: CheckMetrics
  cacheEvent (e: CacheEvent): void
  immutableEvent (e: ImmutableCacheEvent): void
  registryEvent (e: RegistryEvent): void
  /** The revision cold path (src/cache/revision-pins.ts). */
  revisionEvent (e: RevisionEvent): void
  /** Report the cache's size on every scrape. */
  trackCache (stats: () => { tags: number; repositories: number; shaTags: number }): void
  /** The cluster integration's counters (src/cluster/metrics.ts). */
  readonly cluster: ClusterMetrics
  /** The serving certificate in use expires at this time (ms since the epoch). */
  certificateExpiry (notAfterMs: number): void
  /** Fetched registry credentials (source.ecr / source.exec, src/credentials). */
  readonly credentials: CredentialMetrics
  /** The workload webhook (src/admission/workload.ts). */
  readonly workload: WorkloadMetrics
  /** Events and PolicyReports written from findings (src/cluster/events.ts, policy-reports.ts). */
  readonly findings: FindingMetrics
}

export function createMetrics (opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry()
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'pullpin_' })
  const duration = new Histogram({
    name: 'pullpin_admission_duration_seconds',
    help: 'Time to answer an AdmissionReview, by outcome (mutated, unchanged, audited, denied, error, skipped).',
    labelNames: ['outcome'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  })
  // Plain prom-client counters: counting in plain numbers until a scrape did not earn its place in a
  // review (BENCHMARKS.md, "Contracts and speed devices").
  const injectedCounts = new Counter({
    name: 'pullpin_secrets_injected_total',
    help: 'imagePullSecrets added to pods, by secret name (dry_run="true" for server-side dry runs).',
    labelNames: ['secret', 'dry_run'] as const,
    registers: [registry],
  })
  const auditCounts = new Counter({
    name: 'pullpin_audit_findings_total',
    help: 'Changes pullpin would have made in audit mode, by kind (secret, pin).',
    labelNames: ['kind'] as const,
    registers: [registry],
  })
  const pinnedCounts = new Counter({
    name: 'pullpin_images_pinned_total',
    help: 'Images rewritten to a SHA tag or digest, by format and where the answer came from (registry, cache, owner, stale).',
    labelNames: ['format', 'source'] as const,
    registers: [registry],
  })
  const unpinnedCounts = new Counter({
    name: 'pullpin_images_unpinned_total',
    help: 'Unpinned images left as written, by reason (invalid, registry-not-allowed, no-sha-tag, not-found, registry-error, deadline).',
    labelNames: ['reason'] as const,
    registers: [registry],
  })
  const pinsCounts = new Counter({
    name: 'pullpin_pins_total',
    help: 'Pinned pods of a rollout by where their pins came from: memory (this replica), cluster (a pod of the revision already admitted), first (the revision\'s first pod: the registry), registry (the API server did not answer: the registry).',
    labelNames: ['source'] as const,
    registers: [registry],
  })
  const cacheLookups = new Counter({
    name: 'pullpin_tag_cache_lookups_total',
    help: 'Registry cache lookups by kind (tag, index; manifest, config: by digest, kept for good) and result (hit, miss, stale, stale-error, negative, refresh, error).',
    labelNames: ['kind', 'result'] as const,
    registers: [registry],
  })
  const revisionLookups = new Counter({
    name: 'pullpin_revision_lookups_total',
    help: 'Cold pins by revision (org.opencontainers.image.revision), by result (found, no-revision, no-candidate, error) and where the revision was read (annotation, label, platform-annotation, platform-label; "" when none).',
    labelNames: ['result', 'from'] as const,
    registers: [registry],
  })
  const registryRequests = new Counter({
    name: 'pullpin_registry_requests_total',
    help: 'HTTP requests to registries by registry (the registry.hosts entry that matched, e.g. "*.pkg.dev"), operation (ping, manifest, tags, token) and status.',
    labelNames: ['registry', 'op', 'status'] as const,
    registers: [registry],
  })
  const registryDuration = new Histogram({
    name: 'pullpin_registry_request_duration_seconds',
    help: 'Registry request latency by registry (the registry.hosts entry that matched) and operation.',
    labelNames: ['registry', 'op'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  })
  // Set from the registry's own quota headers (src/registry/transport.ts parseRateLimit), so an
  // alert can fire before the quota runs out rather than after the first 429.
  const rateLimitRemaining = new Gauge({
    name: 'pullpin_registry_ratelimit_remaining',
    help: 'Requests left in the registry\'s rate-limit window as its last answer said (Docker Hub ratelimit-remaining, x-ratelimit-remaining), by registry (the registry.hosts entry that matched).',
    labelNames: ['registry'] as const,
    registers: [registry],
  })
  const rateLimitLimit = new Gauge({
    name: 'pullpin_registry_ratelimit_limit',
    help: 'The registry\'s rate-limit quota per window as its last answer said (ratelimit-limit, x-ratelimit-limit), by registry.',
    labelNames: ['registry'] as const,
    registers: [registry],
  })
  let cacheStats: (() => { tags: number; repositories: number; shaTags: number }) | undefined
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'pullpin_tag_cache_entries',
    help: 'Entries in the tag cache by kind (tags, repositories, sha_tags).',
    labelNames: ['kind'] as const,
    registers: [registry],
    collect () {
      if (cacheStats === undefined) return
      const s = cacheStats()
      this.labels('tags').set(s.tags)
      this.labels('repositories').set(s.repositories)
      this.labels('sha_tags').set(s.shaTags)
    },
  })
  const checkCounts = new Counter({
    name: 'pullpin_checks_total',
    help: 'Pull-readiness checks of distinct images per review, by check (exists, pullAccess, platforms, reference) and result (ok, warn, deny, would-warn, would-deny in audit mode, error: no answer in time).',
    labelNames: ['check', 'result'] as const,
    registers: [registry],
  })
  const outsideHosts = new Counter({
    name: 'pullpin_images_outside_hosts_total',
    help: 'Images not checked or pinned because their registry is not on registry.hosts (no warning is given for them).',
    registers: [registry],
  })
  // The series of a check result, looked up once rather than hashed per image.
  const checkSeries = new Map<string, { inc (n: number): void }>()
  const checkResult = (check: CheckName, result: CheckResult, n = 1): void => {
    const k = `${check}/${result}`
    let child = checkSeries.get(k)
    if (child === undefined) checkSeries.set(k, child = checkCounts.labels(check, result))
    child.inc(n)
  }

  const clusterWrites = new Counter({
    name: 'pullpin_cluster_writes_total',
    help: 'Objects pullpin wrote in the cluster, by kind (copy, placeholder, serviceaccount), action (created, updated, deleted) and origin (reconcile, admission).',
    labelNames: ['kind', 'action', 'origin'] as const,
    registers: [registry],
  })
  const conflictRefusals = new Counter({
    name: 'pullpin_secret_conflict_refusals_total',
    help: 'imagePullSecrets not added to a pod because a Secret not managed by pullpin holds the name in its namespace, by secret.',
    labelNames: ['secret'] as const,
    registers: [registry],
  })
  let conflictCounts: (() => ReadonlyMap<string, number>) | undefined
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'pullpin_secret_conflicts',
    help: 'Opted-in namespaces where a Secret not managed by pullpin holds the name of a pull-secret copy, by secret.',
    labelNames: ['secret'] as const,
    registers: [registry],
    collect () {
      if (conflictCounts === undefined) return
      for (const [secret, n] of conflictCounts()) this.labels(secret).set(n)
    },
  })
  const leader = new Gauge({
    name: 'pullpin_leader',
    help: '1 while this replica holds the leader Lease and reconciles copies, else 0.',
    registers: [registry],
  })
  const informerRestarts = new Counter({
    name: 'pullpin_informer_restarts_total',
    help: 'Informer restarts by informer and reason (expired: relist after 410 Gone; error: retried with backoff).',
    labelNames: ['informer', 'reason'] as const,
    registers: [registry],
  })
  const sourceProblems = new Gauge({
    name: 'pullpin_pull_secret_source_problem',
    help: '1 when a pull-secret source Secret cannot be copied, by source and problem (missing, invalid).',
    labelNames: ['source', 'problem'] as const,
    registers: [registry],
  })

  const credentialFailures = new Counter({
    name: 'pullpin_credential_refresh_failures_total',
    help: 'Failed fetches of registry credentials (source.ecr / source.exec), by pull secret.',
    labelNames: ['secret'] as const,
    registers: [registry],
  })
  let credentialExpiry: (() => ReadonlyMap<string, number | undefined>) | undefined
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'pullpin_credential_expiry_seconds',
    help: 'Seconds until the fetched registry credentials of a pull secret expire (0 when it holds none: not fetched yet, or expired).',
    labelNames: ['secret'] as const,
    registers: [registry],
    collect () {
      if (credentialExpiry === undefined) return
      for (const [secret, s] of credentialExpiry()) this.labels(secret).set(Math.max(0, Math.floor(s ?? 0)))
    },
  })

  // The name cert-manager gives its own (certmanager_certificate_expiration_timestamp_seconds), so
  // one alert expression fits both.
  const certificateExpiry = new Gauge({
    name: 'pullpin_certificate_expiry_timestamp_seconds',
    help: 'When the serving certificate in use expires (seconds since the epoch).',
    registers: [registry],
  })

  const workloadDuration = new Histogram({
    name: 'pullpin_workload_review_duration_seconds',
    help: 'Time to answer a workload AdmissionReview (/validate), by kind and outcome (warned, clean, denied, error, skipped).',
    labelNames: ['kind', 'outcome'] as const,
    buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 1, 2.5, 5],
    registers: [registry],
  })
  const findingWrites = new Counter({
    name: 'pullpin_finding_writes_total',
    help: 'Findings written to the cluster, by target (event, policyreport) and result (created, patched, updated, dropped, failed). dropped: the queue was full.',
    labelNames: ['target', 'result'] as const,
    registers: [registry],
  })

  // Pre-create the series so dashboards and alerts see zeros rather than absent metrics. A
  // histogram child prints nothing until it is zeroed or observed.
  for (const outcome of ['mutated', 'unchanged', 'audited', 'denied', 'error', 'skipped'] satisfies Outcome[]) duration.zero({ outcome })
  for (const kind of ['secret', 'pin']) auditCounts.inc({ kind }, 0)
  for (const source of ['memory', 'cluster', 'first', 'registry'] satisfies PinSource[]) pinsCounts.inc({ source }, 0)
  for (const check of ['exists', 'pullAccess', 'platforms', 'reference']) {
    for (const result of ['ok', 'warn', 'deny', 'would-warn', 'would-deny', 'error']) checkCounts.inc({ check, result }, 0)
  }

  // The duration histogram's series, looked up once per outcome instead of hashed per review.
  const durationOf = new Map<string, { observe (seconds: number): void }>()
  const observe = (outcome: string, seconds: number): void => {
    let child = durationOf.get(outcome)
    if (child === undefined) durationOf.set(outcome, child = duration.labels(outcome))
    child.observe(seconds)
  }

  return {
    registry,
    admission: {
      observe,
      secretsInjected: (secret, dryRun) => injectedCounts.inc({ secret, dry_run: dryRun ? 'true' : 'false' }),
      auditFinding: (kind) => auditCounts.inc({ kind }),
    },
    pinning: {
      pinned: (format, source, n = 1) => pinnedCounts.inc({ format, source }, n),
      unpinned: (reason) => unpinnedCounts.inc({ reason }),
      pins: (source) => pinsCounts.inc({ source }),
    },
    checks: {
      result: checkResult,
      outsideHosts: () => outsideHosts.inc(),
    },
    cacheEvent: (e) => cacheLookups.labels(e.kind, e.result).inc(),
    revisionEvent: (e) => revisionLookups.labels(e.result, e.from ?? '').inc(),
    immutableEvent: (e) => cacheLookups.labels(e.kind, e.result).inc(),
    registryEvent: (e) => {
      // The allowlist entry, not the host: pod authors choose hosts under a wildcard entry, and
      // a series per host would grow /metrics without bound (issue 11).
      const entry = e.allowlistEntry ?? e.registry
      registryRequests.labels(entry, e.op, String(e.status)).inc()
      registryDuration.labels(entry, e.op).observe(e.durationMs / 1000)
      if (e.rateLimit !== undefined) {
        rateLimitRemaining.labels(entry).set(e.rateLimit.remaining)
        if (e.rateLimit.limit !== undefined) rateLimitLimit.labels(entry).set(e.rateLimit.limit)
      }
    },
    trackCache: (stats) => { cacheStats = stats },
    certificateExpiry: (notAfterMs) => certificateExpiry.set(Math.floor(notAfterMs / 1000)),
    credentials: {
      refreshFailure: (secret) => credentialFailures.labels(secret).inc(),
      trackExpiry: (seconds) => {
        credentialExpiry = seconds
        for (const secret of seconds().keys()) credentialFailures.labels(secret).inc(0)
      },
    },
    cluster: {
      write: (kind, action, origin) => clusterWrites.labels(kind, action, origin).inc(),
      conflictRefusal: (secret) => conflictRefusals.labels(secret).inc(),
      trackConflicts: (count) => { conflictCounts = count },
      leader: (isLeader) => leader.set(isLeader ? 1 : 0),
      informerRestart: (informer, reason) => informerRestarts.labels(informer, reason).inc(),
      sourceProblem: (source, problem) => {
        sourceProblems.labels(source, 'missing').set(problem === 'missing' ? 1 : 0)
        sourceProblems.labels(source, 'invalid').set(problem === 'invalid' ? 1 : 0)
      },
    },
    workload: {
      workloadReview: (kind, outcome, seconds) => workloadDuration.labels(kind, outcome).observe(seconds),
    },
    findings: {
      write: (target, result) => findingWrites.labels(target, result).inc(),
    },
  }
}

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
import type { RegistryEvent } from './registry/client.js'
import type { ClusterMetrics } from './cluster/metrics.js'

export interface Metrics {
  readonly registry: Registry
  readonly admission: AdmissionMetrics
  readonly pinning: PinMetrics
  /** The pull-readiness checks (pullpin_checks_total, pullpin_images_outside_hosts_total). */
  readonly checks: CheckMetrics
  cacheEvent (e: CacheEvent): void
  immutableEvent (e: ImmutableCacheEvent): void
  registryEvent (e: RegistryEvent): void
  /** Report the cache's size on every scrape. */
  trackCache (stats: () => { tags: number; repositories: number; shaTags: number }): void
  /** The cluster integration's counters (src/cluster/metrics.ts). */
  readonly cluster: ClusterMetrics
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
  const cacheLookups = new Counter({
    name: 'pullpin_tag_cache_lookups_total',
    help: 'Registry cache lookups by kind (tag, index; manifest, config: by digest, kept for good) and result (hit, miss, stale, stale-error, negative, refresh, error).',
    labelNames: ['kind', 'result'] as const,
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
  const checkSeries = new Map<string, { inc (): void }>()
  const checkResult = (check: CheckName, result: CheckResult): void => {
    const k = `${check}/${result}`
    let child = checkSeries.get(k)
    if (child === undefined) checkSeries.set(k, child = checkCounts.labels(check, result))
    child.inc()
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

  // Pre-create the series so dashboards and alerts see zeros rather than absent metrics.
  for (const outcome of ['mutated', 'unchanged', 'audited', 'denied', 'error', 'skipped'] satisfies Outcome[]) duration.labels(outcome)
  for (const kind of ['secret', 'pin']) auditCounts.inc({ kind }, 0)
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
      pinned: (format, source) => pinnedCounts.inc({ format, source }),
      unpinned: (reason) => unpinnedCounts.inc({ reason }),
    },
    checks: {
      result: checkResult,
      outsideHosts: () => outsideHosts.inc(),
    },
    cacheEvent: (e) => cacheLookups.labels(e.kind, e.result).inc(),
    immutableEvent: (e) => cacheLookups.labels(e.kind, e.result).inc(),
    registryEvent: (e) => {
      // The allowlist entry, not the host: pod authors choose hosts under a wildcard entry, and
      // a series per host would grow /metrics without bound (issue 11).
      const entry = e.allowlistEntry ?? e.registry
      registryRequests.labels(entry, e.op, String(e.status)).inc()
      registryDuration.labels(entry, e.op).observe(e.durationMs / 1000)
    },
    trackCache: (stats) => { cacheStats = stats },
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
  }
}

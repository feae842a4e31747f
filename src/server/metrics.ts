// Prometheus metrics on a registry owned by the app (never prom-client's global one, so two
// servers in one process — tests, a second instance taking over — keep separate counts).
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { AdmissionMetrics, Outcome } from '../admission/handler.js'

export interface Metrics {
  readonly registry: Registry
  readonly admission: AdmissionMetrics
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
  const injected = new Counter({
    name: 'pullpin_secrets_injected_total',
    help: 'imagePullSecrets added to pods, by secret name (dry_run="true" for server-side dry runs).',
    labelNames: ['secret', 'dry_run'] as const,
    registers: [registry],
  })
  const audit = new Counter({
    name: 'pullpin_audit_findings_total',
    help: 'Changes pullpin would have made in audit mode, by kind (secret, pin).',
    labelNames: ['kind'] as const,
    registers: [registry],
  })
  // Pre-create the series so dashboards and alerts see zeros rather than absent metrics.
  for (const outcome of ['mutated', 'unchanged', 'audited', 'denied', 'error', 'skipped'] satisfies Outcome[]) duration.labels(outcome)
  for (const kind of ['secret', 'pin']) audit.labels(kind)

  return {
    registry,
    admission: {
      observe: (outcome, seconds) => duration.labels(outcome).observe(seconds),
      secretsInjected: (secret, dryRun) => injected.labels(secret, String(dryRun)).inc(),
      auditFinding: (kind) => audit.labels(kind).inc(),
    },
  }
}

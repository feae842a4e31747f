// What the cluster integration reports. Defined here so src/cluster stays free of prom-client;
// src/metrics.ts (the top-level metrics module app.ts wires) implements it.

export type CopyWrite = 'created' | 'updated' | 'deleted'
/** Where a write came from: the leader's reconciler or an admission review (first pod of a namespace). */
export type WriteOrigin = 'reconcile' | 'admission'

export interface ClusterMetrics {
  /** A pull-secret copy, placeholder or ServiceAccount written. kind: copy | placeholder | serviceaccount. */
  write (kind: 'copy' | 'placeholder' | 'serviceaccount', action: CopyWrite, origin: WriteOrigin): void
  /** A pod did not get `secret` because a foreign Secret holds its name in the namespace. */
  conflictRefusal (secret: string): void
  /** Current conflicts (foreign Secret where a copy should be) by secret name, read on scrape. */
  trackConflicts (count: () => ReadonlyMap<string, number>): void
  /** 1 while this replica holds the Lease. */
  leader (isLeader: boolean): void
  /** An informer relisted (410 Gone) or retried after an error. */
  informerRestart (informer: string, reason: 'expired' | 'error'): void
  /** A source Secret that cannot be copied (missing, wrong type), by source. */
  sourceProblem (source: string, problem: 'missing' | 'invalid' | 'none'): void
}

export const noClusterMetrics: ClusterMetrics = {
  write () {},
  conflictRefusal () {},
  trackConflicts () {},
  leader () {},
  informerRestart () {},
  sourceProblem () {},
}

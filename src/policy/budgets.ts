// The time budgets of one admission review, as one model (README "Time budgets", docs/operations.md):
//
//   review deadline (--review-deadline-ms, the chart derives it from webhook.timeoutSeconds)
//     ⊇ copy creation budget (cluster.copyCreateBudgetMs; cluster mode, first pod of a namespace)
//     then registry lookup budget (registry.lookupBudgetMs)
//     + REVIEW_MARGIN_MS for everything else (namespace labels, the patch, the answer on the wire).
//
// The two inner budgets run one after the other (the secret step finishes before the pin step
// starts: the mutator runs steps in order, and a pod denied by the first never needs the second),
// so their sum must fit. Running out of an inner budget never denies a pod: the copy is created
// later by the reconciler, the image stays unpinned; each with a warning. Only the review deadline
// itself (and a true internal error) is governed by failOpen.
import { usesRegistry, type Config } from './config.js'
import { ERR_CONFIG_INVALID } from '../errors.js'

/** Left of the review deadline for what is not a registry lookup or a copy creation. */
export const REVIEW_MARGIN_MS = 500

export interface BudgetContext {
  readonly reviewDeadlineMs: number
  /** Connected to a cluster (copies of pull secrets may be created during a review). */
  readonly cluster: boolean
}

/** True when a review may create a pull-secret copy before answering (cluster, pod injection, a source). */
export function copiesAtAdmission (config: Config, cluster: boolean): boolean {
  return cluster && config.injection !== 'serviceaccount' && config.pullSecrets.some(r => r.source !== undefined)
}

/** Throws ERR_CONFIG_INVALID (naming the key and the reason) when the budgets do not fit the review deadline. */
export function checkBudgets (config: Config, ctx: BudgetContext, source = 'config'): void {
  const lookup = usesRegistry(config) ? config.registry.lookupBudgetMs : 0
  const copy = copiesAtAdmission(config, ctx.cluster) ? config.cluster.copyCreateBudgetMs : 0
  if (lookup + copy + REVIEW_MARGIN_MS <= ctx.reviewDeadlineMs) return
  const fits = `does not fit in the review deadline of ${ctx.reviewDeadlineMs} ms (--review-deadline-ms; the chart derives it from webhook.timeoutSeconds)`
  if (copy > 0 && lookup > 0) {
    throw new ERR_CONFIG_INVALID(source, `/cluster/copyCreateBudgetMs: ${copy} ms of copy creation + registry.lookupBudgetMs ${lookup} ms of registry lookups, which run one after the other, + a ${REVIEW_MARGIN_MS} ms margin ${fits}; lower the budgets or raise the deadline`)
  }
  if (copy > 0) {
    throw new ERR_CONFIG_INVALID(source, `/cluster/copyCreateBudgetMs: ${copy} ms of copy creation + a ${REVIEW_MARGIN_MS} ms margin ${fits}; lower it or raise the deadline`)
  }
  throw new ERR_CONFIG_INVALID(source, `/registry/lookupBudgetMs: ${lookup} ms of registry lookups + a ${REVIEW_MARGIN_MS} ms margin ${fits}; lower it or raise the deadline`)
}

// The registry lookup budget of one review (registry.lookupBudgetMs, src/policy/budgets.ts),
// shared by every step that asks a registry: pinning and then the checks spend one budget, not
// one each, so a slow registry costs a review at most the budget the start-time check allowed for.
import { REVIEW_MARGIN_MS } from '../policy/budgets.js'
import type { MutationContext } from './mutator.js'

/** The time a review's lookups got: which budget it was decides whom a timeout warning names. */
export interface LookupTime {
  readonly signal: AbortSignal
  readonly ms: number
  /** True when the review's deadline, not the lookup budget, set `ms`. */
  readonly byReview: boolean
  readonly reviewMs: number
}

const started = new WeakMap<MutationContext, LookupTime>()

/**
 * The review's lookup signal, made by the first lookup that needs the registry: a review answered
 * from the caches pays for no timer (BENCHMARKS.md, "Profile of the hot path, and what changed").
 * It aborts REVIEW_MARGIN_MS before the review's deadline at the latest, so a slow registry ends as
 * a warning, never as the review's deadline (which failOpen: false turns into a denial).
 */
export function lookupTime (ctx: MutationContext, lookupBudgetMs: number): LookupTime {
  let t = started.get(ctx)
  if (t !== undefined) return t
  const left = Math.max(0, Math.floor(ctx.deadline.remainingMs() - REVIEW_MARGIN_MS))
  const ms = Math.min(lookupBudgetMs, left)
  t = { signal: AbortSignal.timeout(ms), ms, byReview: ms < lookupBudgetMs, reviewMs: ctx.deadline.ms }
  started.set(ctx, t)
  return t
}

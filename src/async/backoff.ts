// Exponential backoff with "equal jitter" (AWS Architecture Blog, "Exponential Backoff And
// Jitter"): each delay is half the current ceiling plus a random share of the other half. Chosen
// over "full jitter" (uniform in [0, ceiling]) on purpose: replicas that lost a registry or the API
// server at the same moment still spread out, but a retry never comes back at once, and the
// waits stay predictable enough to fit a review's budget. Registry retries and the cluster's
// reconnects both use it.

export interface BackoffOptions {
  /** First delay ceiling. */
  readonly initialMs?: number
  /** Largest delay ceiling. */
  readonly maxMs?: number
  readonly factor?: number
  /** Injected for tests; Math.random by default. */
  readonly random?: () => number
}

/** The delay after `failures` failures: uniform in [ceiling/2, ceiling], ceiling = initialMs·factor^failures capped at maxMs. */
export function backoffDelay (failures: number, opts: BackoffOptions = {}): number {
  const ceiling = Math.min(opts.maxMs ?? 30_000, (opts.initialMs ?? 200) * (opts.factor ?? 2) ** failures)
  return Math.round(ceiling / 2 + (opts.random ?? Math.random)() * ceiling / 2)
}

/** backoffDelay with the failure count kept (one per retried thing: a key, a watch). */
export class Backoff {
  private attempt = 0

  constructor (private readonly opts: BackoffOptions = {}) {}

  /** The next delay; each call counts one more failure. */
  next (): number {
    return backoffDelay(this.attempt++, this.opts)
  }

  reset (): void { this.attempt = 0 }

  get failures (): number { return this.attempt }
}

// Exponential backoff with full jitter (the AWS Architecture Blog "Exponential Backoff And
// Jitter" scheme, also what client-go's wait.Backoff with Jitter approximates): replicas that
// lost the API server at the same moment do not reconnect in lockstep.

export interface BackoffOptions {
  /** First delay ceiling. */
  readonly initialMs?: number
  /** Largest delay ceiling. */
  readonly maxMs?: number
  readonly factor?: number
  /** Injected for tests; Math.random by default. */
  readonly random?: () => number
}

export class Backoff {
  private attempt = 0
  private readonly initialMs: number
  private readonly maxMs: number
  private readonly factor: number
  private readonly random: () => number

  constructor (opts: BackoffOptions = {}) {
    this.initialMs = opts.initialMs ?? 200
    this.maxMs = opts.maxMs ?? 30_000
    this.factor = opts.factor ?? 2
    this.random = opts.random ?? Math.random
  }

  /** The next delay: uniform in [ceiling/2, ceiling], the ceiling growing by `factor` per failure. */
  next (): number {
    const ceiling = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempt)
    this.attempt++
    return Math.round(ceiling / 2 + this.random() * ceiling / 2)
  }

  reset (): void { this.attempt = 0 }

  get failures (): number { return this.attempt }
}

/** A sleep that ends early (resolving false) when `signal` aborts. */
export function sleep (ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) { resolve(false); return }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(true) }, ms)
    const onAbort = (): void => { clearTimeout(timer); resolve(false) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

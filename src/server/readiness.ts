// Readiness is the AND of named checks (informers synced, certificates loaded…) plus a
// shutting-down flag that turns /readyz unready first on SIGTERM.

export type ReadinessCheck = () => { ready: boolean; detail?: string }

export class Readiness {
  private readonly checks = new Map<string, ReadinessCheck>()
  private draining = false

  add (name: string, check: ReadinessCheck): void { this.checks.set(name, check) }
  drain (): void { this.draining = true }

  status (): { ready: boolean; checks: Record<string, string> } {
    const checks: Record<string, string> = {}
    let ready = !this.draining
    if (this.draining) checks.shutdown = 'draining'
    for (const [name, check] of this.checks) {
      const r = check()
      checks[name] = r.ready ? 'ok' : (r.detail ?? 'not ready')
      ready &&= r.ready
    }
    return { ready, checks }
  }
}

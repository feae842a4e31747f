// Leader election on a coordination.k8s.io/v1 Lease, following client-go's
// tools/leaderelection: the lease is taken only when its holder has not renewed it for
// leaseDuration as measured on *our* clock from when we last saw it change (no clock sync between
// replicas is assumed); writes are conditional on the resourceVersion, so of two candidates only
// one wins; the leader steps down when it could not renew within renewDeadline, which is shorter
// than leaseDuration, so the old leader has stopped before anyone else may start. Every replica
// keeps serving admission whatever happens here.
import type { Logger } from 'pino'
import type { CoordinationV1Api, V1Lease } from '@kubernetes/client-node'
import { sleep } from '../async/sleep.js'
import { callOptions, describeError, isConflict, isNotFound, microTime, timeoutSignal } from './kube-api.js'

export interface LeaderElectionOptions {
  readonly coordination: CoordinationV1Api
  readonly namespace: string
  readonly leaseName: string
  readonly identity: string
  readonly leaseDurationMs: number
  readonly renewDeadlineMs: number
  readonly retryPeriodMs: number
  readonly logger: Logger
  readonly onStartedLeading: () => void
  readonly onStoppedLeading: () => void
  readonly now?: () => number
}

interface Observed { readonly key: string; readonly at: number }

export class LeaderElector {
  private leading = false
  private loop: Promise<void> | undefined
  /** Aborted by stop(): ends the loop, the request in progress and the wait between attempts. */
  private readonly abort = new AbortController()
  private observed: Observed | undefined
  private lastRenew = 0
  private readonly now: () => number

  constructor (private readonly opts: LeaderElectionOptions) {
    if (!(opts.retryPeriodMs < opts.renewDeadlineMs && opts.renewDeadlineMs < opts.leaseDurationMs)) {
      throw new Error('leader election needs retryPeriod < renewDeadline < leaseDuration')
    }
    this.now = opts.now ?? Date.now
  }

  isLeader (): boolean { return this.leading }

  /** Starts campaigning; an elector runs once (a stopped one does not start again). */
  start (): void {
    if (this.loop !== undefined || this.stopped) return
    this.loop = this.run()
  }

  private get stopped (): boolean { return this.abort.signal.aborted }

  /** Stop; a leader releases the Lease (holder cleared) so another replica takes over at once. */
  async stop (): Promise<void> {
    if (this.stopped || this.loop === undefined) { this.abort.abort(); return }
    this.abort.abort()
    await this.loop
    this.stepDown('stopping')
    // Also when a last write landed while stopping: release() only clears a lease we hold.
    await this.release()
  }

  private async run (): Promise<void> {
    while (!this.stopped) {
      const started = this.now()
      // While leading, each attempt may only use what is left of the renew deadline.
      const budget = this.leading ? Math.max(1, this.lastRenew + this.opts.renewDeadlineMs - started) : this.opts.renewDeadlineMs
      let ok = false
      try {
        ok = await this.tryAcquireOrRenew(timeoutSignal(budget, this.abort.signal))
      } catch (err) {
        if (this.stopped) break
        this.opts.logger.debug({ lease: this.opts.leaseName, error: describeError(err) }, 'lease update failed')
      }
      if (this.stopped) break
      if (ok) {
        this.lastRenew = started
        if (!this.leading) {
          this.leading = true
          this.opts.logger.info({ lease: this.opts.leaseName, identity: this.opts.identity }, 'became leader')
          this.opts.onStartedLeading()
        }
      } else if (this.leading && this.now() - this.lastRenew >= this.opts.renewDeadlineMs) {
        this.stepDown('could not renew the lease within renewDeadline')
      }
      // Jitter the candidates' polling (client-go: JitterFactor 1.2) so they do not collide forever.
      const wait = this.leading ? this.opts.retryPeriodMs : this.opts.retryPeriodMs * (1 + Math.random() * 0.2)
      if (!await sleep(wait, this.abort.signal)) break
      if (this.leading && this.now() - this.lastRenew >= this.opts.renewDeadlineMs) {
        // A long event-loop stall or a hung request: do not keep acting on an expired belief.
        this.stepDown('renewDeadline passed')
      }
    }
  }

  private stepDown (why: string): void {
    if (!this.leading) return
    this.leading = false
    this.opts.logger.warn({ lease: this.opts.leaseName, identity: this.opts.identity, why }, 'stopped leading')
    this.opts.onStoppedLeading()
  }

  private async tryAcquireOrRenew (signal: AbortSignal): Promise<boolean> {
    const { coordination, namespace, leaseName, identity } = this.opts
    const now = this.now()
    const durationSeconds = Math.max(1, Math.round(this.opts.leaseDurationMs / 1000))
    let lease: V1Lease
    try {
      lease = await coordination.readNamespacedLease({ name: leaseName, namespace }, callOptions({ signal }))
    } catch (err) {
      if (!isNotFound(err)) throw err
      try {
        await coordination.createNamespacedLease({
          namespace,
          body: {
            metadata: { name: leaseName, namespace },
            spec: { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: microTime(new Date(now)) as never, renewTime: microTime(new Date(now)) as never, leaseTransitions: 0 },
          },
        }, callOptions({ signal }))
        this.observed = undefined
        return true
      } catch (createErr) {
        if (isConflict(createErr)) return false
        throw createErr
      }
    }
    const spec = lease.spec ?? {}
    const holder = spec.holderIdentity ?? ''
    // "Observed" = the record as last seen and when we saw it change, on our own clock.
    const key = `${lease.metadata?.resourceVersion ?? ''}|${holder}|${String(spec.renewTime ?? '')}`
    if (this.observed?.key !== key) this.observed = { key, at: now }
    const theirDuration = (spec.leaseDurationSeconds ?? durationSeconds) * 1000
    if (holder !== '' && holder !== identity && this.observed.at + theirDuration > now) return false
    const renewing = holder === identity
    const body: V1Lease = {
      ...lease,
      spec: {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: durationSeconds,
        renewTime: microTime(new Date(now)) as never,
        acquireTime: (renewing && spec.acquireTime !== undefined ? spec.acquireTime : microTime(new Date(now))) as never,
        leaseTransitions: (spec.leaseTransitions ?? 0) + (renewing ? 0 : 1),
      },
    }
    try {
      // Carries metadata.resourceVersion: a concurrent writer makes this a 409, never a double win.
      const updated = await coordination.replaceNamespacedLease({ name: leaseName, namespace, body }, callOptions({ signal }))
      this.observed = { key: `${updated.metadata?.resourceVersion ?? ''}|${identity}|${String(updated.spec?.renewTime ?? '')}`, at: now }
      return true
    } catch (err) {
      if (isConflict(err)) return false
      throw err
    }
  }

  private async release (): Promise<void> {
    const { coordination, namespace, leaseName, identity } = this.opts
    try {
      const signal = timeoutSignal(this.opts.renewDeadlineMs)
      const lease = await coordination.readNamespacedLease({ name: leaseName, namespace }, callOptions({ signal }))
      if (lease.spec?.holderIdentity !== identity) return
      // client-go ReleaseOnCancel: clear the holder and shorten the lease.
      await coordination.replaceNamespacedLease({
        name: leaseName,
        namespace,
        body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(new Date(this.now())) as never } },
      }, callOptions({ signal }))
      this.opts.logger.info({ lease: leaseName, identity }, 'lease released')
    } catch (err) {
      this.opts.logger.warn({ lease: leaseName, error: describeError(err) }, 'could not release the lease; another replica takes over once it expires')
    }
  }
}

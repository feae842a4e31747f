// The admission side of the copies (every replica, leader or not): before pullpin adds a managed
// secret to a pod, the secret must be usable in the pod's namespace.
//  - A foreign Secret holds the name: the secret is not added; the pod gets a warning; counted.
//  - The copy exists (informer cache, or created by this replica a moment ago): usable, no I/O.
//  - The copy is missing (the namespace was labelled a moment ago, the reconciler has not run):
//    on CREATE in enforce mode and not a dry run, it is created synchronously, so the first pod
//    does not race the reconciler. A 409 means someone else made it meanwhile: re-read to see
//    whose it is. Other failures still inject the secret, with a warning: the kubelet retries
//    the pull, and the reconciler creates the copy once the API server answers. Reviews that
//    need the same copy at the same time (a Deployment scaled up in a new namespace) share one
//    create, bounded by its own timeout rather than by the deadline of whichever review came first.
import type { Logger } from 'pino'
import type { AvailabilityRequest, AvailabilityResult, SecretAvailability } from '../mutate/inject-secrets.js'
import type { ClusterConnection } from './connection.js'
import type { ClusterMetrics } from './metrics.js'
import type { PullSecretState } from './pull-secret-state.js'
import { desiredCopy, isManagedByPullpin, isSourceItself, type SecretLike } from './copy-plan.js'
import { callOptions, describeError, isConflict, timeoutSignal } from './kube-api.js'
import { InFlight } from '../async/in-flight.js'

export interface CopyAvailabilityOptions {
  readonly connection: ClusterConnection
  readonly state: PullSecretState
  readonly logger: Logger
  readonly metrics: ClusterMetrics
  /** Bound on the synchronous create (the review's deadline applies too). */
  readonly createTimeoutMs?: number
}

/** How long a copy created here is trusted before the informer has caught up with it. */
const RECENT_MS = 60_000

type CreateOutcome = { readonly kind: 'ok' | 'conflict' } | { readonly kind: 'failed'; readonly error: string }

function conflictWarning (name: string, namespace: string): string {
  // Kept short: admission warnings are cut at 120 characters.
  return `pullpin: ${name} not added: Secret ${namespace}/${name} is not managed by pullpin`
}

export class CopyAvailability implements SecretAvailability {
  private readonly recent = new Map<string, { secret: SecretLike; at: number }>()
  /** Creates in flight, by namespace/name. */
  private readonly creating = new InFlight<string, CreateOutcome>()

  constructor (private readonly opts: CopyAvailabilityOptions) {}

  async check (req: AvailabilityRequest): Promise<AvailabilityResult> {
    const refused = new Map<string, string>()
    const warnings: string[] = []
    const pending: Array<Promise<void>> = []
    for (const name of req.names) {
      const rule = this.opts.state.rule(name)
      if (rule === undefined || isSourceItself(name, req.namespace, rule.source)) continue
      const existing = this.lookup(name, req.namespace)
      if (existing !== undefined) {
        if (!isManagedByPullpin(existing)) this.refuse(refused, name, req.namespace)
        continue
      }
      if (!req.create) continue
      const source = this.opts.state.sourceState(rule)
      if (source.kind !== 'ready') {
        warnings.push(`pullpin: ${name} not copied to ${req.namespace}: source ${source.source} ${source.kind === 'missing' ? (rule.source === undefined ? 'has no valid credentials' : 'not found') : 'is not a dockerconfigjson'}`)
        continue
      }
      const creation = this.creating.run(`${req.namespace}/${name}`, () => this.create(name, req.namespace, desiredCopy(name, req.namespace, source)))
      pending.push(creation.then((outcome) => {
        if (outcome.kind === 'conflict') this.refuse(refused, name, req.namespace)
        else if (outcome.kind === 'failed') warnings.push(`pullpin: copy of ${name} not created in ${req.namespace} yet: ${outcome.error}`)
      }))
    }
    if (pending.length > 0) await Promise.all(pending)
    return { refused, warnings }
  }

  private refuse (refused: Map<string, string>, name: string, namespace: string): void {
    refused.set(name, conflictWarning(name, namespace))
    this.opts.metrics.conflictRefusal(name)
  }

  private lookup (name: string, namespace: string): SecretLike | undefined {
    const key = `${namespace}/${name}`
    const cached = this.opts.state.existing(name, namespace)
    const recent = this.recent.get(key)
    if (recent !== undefined && (cached !== undefined || Date.now() - recent.at > RECENT_MS)) this.recent.delete(key)
    return cached ?? (recent !== undefined && Date.now() - recent.at <= RECENT_MS ? recent.secret : undefined)
  }

  private remember (key: string, secret: SecretLike): void {
    const now = Date.now()
    // Entries the informer never confirmed (namespace deleted meanwhile) must not pile up.
    if (this.recent.size >= 1000) for (const [k, v] of this.recent) if (now - v.at > RECENT_MS) this.recent.delete(k)
    this.recent.set(key, { secret, at: now })
  }

  /** Never rejects. */
  private async create (name: string, namespace: string, body: SecretLike): Promise<CreateOutcome> {
    const { core } = this.opts.connection
    const signal = timeoutSignal(this.opts.createTimeoutMs ?? 3000)
    try {
      const created = await core.createNamespacedSecret({ namespace, body }, callOptions({ signal }))
      this.remember(`${namespace}/${name}`, created)
      this.opts.metrics.write('copy', 'created', 'admission')
      this.opts.logger.info({ namespace, secret: name }, 'pull-secret copy created for the first pod of the namespace')
      return { kind: 'ok' }
    } catch (err) {
      if (!isConflict(err)) {
        this.opts.logger.warn({ namespace, secret: name, error: describeError(err) }, 'pull-secret copy could not be created at admission')
        return { kind: 'failed', error: describeError(err) }
      }
    }
    // 409 AlreadyExists: made by another replica, or a foreign Secret the informer has not seen.
    try {
      const current = await core.readNamespacedSecret({ name, namespace }, callOptions({ signal }))
      if (isManagedByPullpin(current)) return { kind: 'ok' }
      this.opts.logger.warn({ namespace, secret: name }, 'a Secret not managed by pullpin holds the name of a pull-secret copy: not injected')
      return { kind: 'conflict' }
    } catch (err) {
      return { kind: 'failed', error: describeError(err) }
    }
  }
}

// The leader's reconciler: makes each namespace's pull-secret objects match the config and the
// namespace's opt-in label. Keys are namespace names plus two special keys: WEBHOOK_KEY (the
// caBundle of pullpin's MutatingWebhookConfiguration) and RETIRED_KEY (copies of pullSecrets
// entries no longer configured). Every write re-checks leadership first and carries a
// precondition (resourceVersion / uid), so a stale view or a deposed leader cannot clobber.
import type { Logger } from 'pino'
import type { V1MutatingWebhookConfiguration, V1ValidatingWebhookConfiguration, V1Namespace, V1Secret, V1ServiceAccount } from '@kubernetes/client-node'
import type { InjectionMode } from '../policy/config.js'
import type { NamespacePolicy } from '../policy/namespace-mode.js'
import type { ClusterConnection } from './connection.js'
import type { Informer } from './informer.js'
import type { ClusterMetrics } from './metrics.js'
import type { PullSecretState } from './pull-secret-state.js'
import {
  MANAGED_BY_LABEL,
  MANAGED_BY_VALUE,
  SERVICE_ACCOUNT_ANNOTATION,
  isPlaceholder,
  isPullpinCopy,
  isSourceItself,
  mergeDockerConfigs,
  planCopy,
  planPlaceholder,
  planServiceAccount,
  type SecretLike,
} from './copy-plan.js'
import { callOptions, describeError, isConflict, isNotFound, statusOf } from './kube-api.js'

export const WEBHOOK_KEY = '@webhook'
export const RETIRED_KEY = '@retired'

export interface ReconcilerOptions {
  readonly connection: ClusterConnection
  readonly state: PullSecretState
  readonly namespaces: Informer<V1Namespace>
  readonly policy: NamespacePolicy
  /** All configured pullSecrets names, in config order (ServiceAccount mode adds them all). */
  readonly secretNames: readonly string[]
  readonly injection: InjectionMode
  readonly serviceAccounts: ReadonlyMap<string, Informer<V1ServiceAccount>>
  readonly placeholders: Informer<V1Secret> | undefined
  readonly webhook: { readonly name: string; readonly informer: Informer<V1MutatingWebhookConfiguration> } | undefined
  /** The workload webhook's configuration (issue 18): same caBundle. */
  readonly validatingWebhook?: { readonly name: string; readonly informer: Informer<V1ValidatingWebhookConfiguration> } | undefined
  /** PEM of the CA(s) that sign the serving certificate, when pullpin knows it. */
  readonly caBundle: () => string | undefined
  readonly isLeader: () => boolean
  readonly logger: Logger
  readonly metrics: ClusterMetrics
}

class NotLeader extends Error {}

export class Reconciler {
  /** namespace/name → resourceVersion of the foreign Secret last reported: each version is logged once. */
  private readonly reportedConflicts = new Map<string, string>()
  private readonly reportedSources = new Map<string, string>()

  constructor (private readonly opts: ReconcilerOptions) {}

  /** Every key a full resync visits. */
  allKeys (): string[] {
    return [...this.opts.namespaces.list().map(n => n.metadata?.name ?? '').filter(n => n !== ''), WEBHOOK_KEY]
  }

  async reconcile (key: string, signal: AbortSignal): Promise<void> {
    try {
      if (key === WEBHOOK_KEY) await this.reconcileWebhook(signal)
      else if (key === RETIRED_KEY) await this.removeRetiredCopies(signal)
      else await this.reconcileNamespace(key, signal)
    } catch (err) {
      if (err instanceof NotLeader) return
      throw err
    }
  }

  private guard (): void {
    if (!this.opts.isLeader()) throw new NotLeader()
  }

  /** Log and count each source problem once per change of state. */
  reportSources (): void {
    for (const rule of this.opts.state.rules) {
      const s = this.opts.state.sourceState(rule)
      const state = s.kind === 'ready' ? 'ready' : s.kind === 'missing' ? 'missing' : `invalid: ${s.reason}`
      if (this.reportedSources.get(s.source) === state) continue
      this.reportedSources.set(s.source, state)
      this.opts.metrics.sourceProblem(s.source, s.kind === 'ready' ? 'none' : s.kind)
      if (s.kind === 'missing' && rule.source === undefined) this.opts.logger.warn({ source: s.source, secret: rule.name }, 'no valid fetched credentials (not fetched yet, or expired): existing copies are kept, no new copy is made')
      else if (s.kind === 'missing') this.opts.logger.warn({ source: s.source, secret: rule.name }, 'pull-secret source not found: existing copies are kept, no new copy is made')
      if (s.kind === 'invalid') this.opts.logger.warn({ source: s.source, secret: rule.name, reason: s.reason }, 'pull-secret source skipped: only kubernetes.io/dockerconfigjson Secrets are copied')
    }
  }

  private async reconcileNamespace (namespace: string, signal: AbortSignal): Promise<void> {
    const { state, connection: { core }, logger, metrics } = this.opts
    const ns = this.opts.namespaces.get(namespace)
    // Deleted: its Secrets went with it. Terminating: the API server refuses new objects in it.
    if (ns === undefined || ns.status?.phase === 'Terminating') {
      for (const rule of state.rules) this.reportedConflicts.delete(`${namespace}/${rule.name}`)
      return
    }
    const decision = this.opts.policy.decide(namespace, ns.metadata?.labels ?? {})
    const enforce = decision.mode === 'enforce'
    const refused = new Set<string>()
    // Deletes are decided on the namespace as it is now. The namespace watch and the Secret
    // watches are separate streams: the copy another replica made for the first pod of a freshly
    // labelled namespace can reach this leader before the label does. One GET, only when deleting.
    let current: Promise<boolean> | undefined
    const stillOptedIn = (): Promise<boolean> => (current ??= this.optedInNow(namespace, signal))

    for (const rule of state.rules) {
      const existing = state.existing(rule.name, namespace)
      const action = planCopy({ name: rule.name, namespace, sourceRef: rule.source, source: state.sourceState(rule), wanted: enforce, existing })
      const log = logger.child({ namespace, secret: rule.name })
      const conflictKey = `${namespace}/${rule.name}`
      if (action.kind !== 'conflict') this.reportedConflicts.delete(conflictKey)
      switch (action.kind) {
        case 'none':
          break
        case 'conflict': {
          refused.add(rule.name)
          const version = action.existing.metadata?.resourceVersion ?? ''
          if (this.reportedConflicts.get(conflictKey) !== version) {
            this.reportedConflicts.set(conflictKey, version)
            log.warn('a Secret not managed by pullpin holds the name of a pull-secret copy: left untouched, not injected in this namespace')
          }
          break
        }
        case 'create':
          this.guard()
          try {
            await core.createNamespacedSecret({ namespace, body: action.body }, callOptions({ signal }))
            metrics.write('copy', 'created', 'reconcile')
            log.info('pull-secret copy created')
          } catch (err) {
            // Created meanwhile (admission of a first pod, or a foreign Secret): the informer event requeues.
            if (!isConflict(err)) throw err
          }
          break
        case 'update':
          this.guard()
          await core.replaceNamespacedSecret({ name: rule.name, namespace, body: action.body }, callOptions({ signal }))
          metrics.write('copy', 'updated', 'reconcile')
          log.info({ reason: action.reason }, action.reason === 'rotated' ? 'pull-secret copy updated: source rotated' : 'pull-secret copy repaired')
          break
        case 'delete':
          if (await stillOptedIn()) break
          this.guard()
          try {
            await core.deleteNamespacedSecret({ name: rule.name, namespace, body: { preconditions: { ...(action.uid !== undefined ? { uid: action.uid } : {}), ...(action.resourceVersion !== undefined ? { resourceVersion: action.resourceVersion } : {}) } } }, callOptions({ signal }))
            metrics.write('copy', 'deleted', 'reconcile')
            log.info({ reason: decision.reason }, 'pull-secret copy removed: namespace no longer opted in')
          } catch (err) {
            if (!isNotFound(err)) throw err
          }
          break
      }
    }

    if (this.opts.injection !== 'pod') {
      const desired = enforce ? this.opts.secretNames.filter(n => !refused.has(n)) : []
      for (const [saName, informer] of this.opts.serviceAccounts) {
        const sa = informer.get(saName, namespace)
        if (sa === undefined) continue
        const action = planServiceAccount(sa, desired)
        if (action.kind === 'none') continue
        this.guard()
        const annotations: Record<string, string | null> = { [SERVICE_ACCOUNT_ANNOTATION]: action.managed.length > 0 ? action.managed.join(',') : null }
        await core.patchNamespacedServiceAccount({
          name: saName,
          namespace,
          // The resourceVersion makes the merge patch conditional: the list is replaced whole.
          body: { metadata: { resourceVersion: sa.metadata?.resourceVersion, annotations }, imagePullSecrets: action.imagePullSecrets },
        }, callOptions({ signal, patch: 'merge' }))
        metrics.write('serviceaccount', 'updated', 'reconcile')
        logger.info({ namespace, serviceAccount: saName, added: action.added, removed: action.removed }, 'ServiceAccount imagePullSecrets updated')
      }
    }

    if (this.opts.placeholders !== undefined && enforce) {
      const merged = mergeDockerConfigs(state.readySources())
      for (const secret of this.opts.placeholders.list(namespace) as SecretLike[]) {
        if (!isPlaceholder(secret)) continue
        const action = planPlaceholder(secret, merged)
        if (action.kind === 'none') continue
        this.guard()
        await core.replaceNamespacedSecret({ name: secret.metadata?.name ?? '', namespace, body: action.body }, callOptions({ signal }))
        metrics.write('placeholder', 'updated', 'reconcile')
        logger.info({ namespace, secret: secret.metadata?.name, sources: merged.sources }, 'Carvel placeholder secret filled')
      }
    }
  }

  /** Read the namespace from the API server: opted in (enforce) right now? A deleted one is not. */
  private async optedInNow (namespace: string, signal: AbortSignal): Promise<boolean> {
    try {
      const ns = await this.opts.connection.core.readNamespace({ name: namespace }, callOptions({ signal }))
      const optedIn = this.opts.policy.decide(namespace, ns.metadata?.labels ?? {}).mode === 'enforce'
      if (optedIn) this.opts.logger.debug({ namespace }, 'namespace opted in after all (the cache is behind): copies kept')
      return optedIn
    } catch (err) {
      if (isNotFound(err)) return false
      throw err
    }
  }

  private async reconcileWebhook (signal: AbortSignal): Promise<void> {
    const bundle = this.opts.caBundle()
    if (bundle === undefined || bundle === '') return
    const value = Buffer.from(bundle).toString('base64')
    const webhook = this.opts.webhook
    if (webhook !== undefined) {
      const body = caBundlePatch(webhook.informer.get(webhook.name), value)
      if (body !== undefined) {
        this.guard()
        await this.opts.connection.admissionRegistration.patchMutatingWebhookConfiguration({ name: webhook.name, body }, callOptions({ signal, patch: 'json' }))
        this.opts.logger.info({ webhookConfiguration: webhook.name, webhooks: body.length - 1 }, 'caBundle patched')
      }
    }
    const validating = this.opts.validatingWebhook
    if (validating !== undefined) {
      const body = caBundlePatch(validating.informer.get(validating.name), value)
      if (body !== undefined) {
        this.guard()
        await this.opts.connection.admissionRegistration.patchValidatingWebhookConfiguration({ name: validating.name, body }, callOptions({ signal, patch: 'json' }))
        this.opts.logger.info({ validatingWebhookConfiguration: validating.name, webhooks: body.length - 1 }, 'caBundle patched')
      }
    }
  }

  /**
   * Copies of entries no longer configured. They are found by label, which needs `list` on Secrets
   * cluster-wide; without that grant (the least-privilege default) this is skipped with a log line.
   */
  private async removeRetiredCopies (signal: AbortSignal): Promise<void> {
    const configured = new Set(this.opts.state.rules.map(r => r.name))
    let items: SecretLike[]
    try {
      const list = await this.opts.connection.core.listSecretForAllNamespaces({ labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}` }, callOptions({ signal }))
      items = list.items
    } catch (err) {
      if (statusOf(err).code === 403) {
        this.opts.logger.info({ error: describeError(err) }, 'cannot list Secrets cluster-wide: copies of removed pullSecrets entries are not cleaned up (README "Cluster", RBAC)')
        return
      }
      throw err
    }
    for (const s of items) {
      const name = s.metadata?.name ?? ''
      const namespace = s.metadata?.namespace ?? ''
      // Only copies: pullpin's TLS Secret carries the managed-by label too.
      if (configured.has(name) || !isPullpinCopy(s)) continue
      if (this.opts.state.rules.some(r => isSourceItself(name, namespace, r.source))) continue
      this.guard()
      try {
        await this.opts.connection.core.deleteNamespacedSecret({ name, namespace, body: { preconditions: { uid: s.metadata?.uid, resourceVersion: s.metadata?.resourceVersion } } }, callOptions({ signal }))
        this.opts.metrics.write('copy', 'deleted', 'reconcile')
        this.opts.logger.info({ namespace, secret: name }, 'pull-secret copy removed: its pullSecrets entry is no longer configured')
      } catch (err) {
        if (!isNotFound(err)) throw err
      }
    }
  }
}

/**
 * The JSON patch that sets every webhook's caBundle to `value`, or undefined when there is nothing
 * to do (or the configuration is not there yet: helm install order; its ADDED event requeues).
 */
function caBundlePatch (config: { metadata?: { resourceVersion?: string }; webhooks?: Array<{ clientConfig?: { caBundle?: string } }> } | undefined, value: string): Array<{ op: string; path: string; value: string }> | undefined {
  if (config === undefined) return undefined
  const ops: Array<{ op: string; path: string; value: string }> = []
  for (const [i, w] of (config.webhooks ?? []).entries()) {
    if (w.clientConfig?.caBundle !== value) ops.push({ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value })
  }
  if (ops.length === 0) return undefined
  // The test op makes the patch apply only to the version whose webhook indexes we computed.
  return [{ op: 'test', path: '/metadata/resourceVersion', value: config.metadata?.resourceVersion ?? '' }, ...ops]
}

// What the cluster says about the configured pull secrets: each source Secret (watched in its own
// namespace, by name) and every Secret holding a copy's name (watched cluster-wide, by name).
// Read by the admission path (is this secret usable here?) and by the leader's reconciler.
import type { V1Secret } from '@kubernetes/client-node'
import { isSecretSource, type PullSecretRule } from '../policy/config.js'
import type { DockerConfigSource } from '../registry/keyring.js'
import type { ClusterConnection } from './connection.js'
import type { Informer } from './informer.js'
import { secretInformer, secretsNamedInformer, type InformerSettings } from './resource-informers.js'
import { contentHash, isManagedByPullpin, isSourceItself, sourceKey, sourceState, type SecretLike, type SourceRef, type SourceState } from './copy-plan.js'

/**
 * A pull-secret entry pullpin keeps copies of. `source` is the Secret copied; undefined when
 * pullpin fetches the credentials itself (source.ecr / source.exec, src/credentials).
 */
export interface ManagedRule { readonly name: string; readonly source: SourceRef | undefined }

/** Credentials pullpin fetches itself (src/credentials/sources.ts CredentialSources). */
export interface FetchedSources {
  has (name: string): boolean
  /** The live dockerconfigjson; undefined before the first success and once expired. */
  dockerConfig (name: string): { readonly json: string; readonly expiresAt: number; readonly description: string } | undefined
  /** What the source is (safe to log), whether or not it holds credentials now. */
  describe (name: string): string
}

export class PullSecretState {
  readonly rules: readonly ManagedRule[]
  private readonly sources = new Map<string, Informer<V1Secret>>()
  private readonly copies = new Map<string, Informer<V1Secret>>()

  constructor (conn: ClusterConnection, rules: readonly PullSecretRule[], settings: InformerSettings, private readonly fetched?: FetchedSources) {
    // Only entries with a source are pullpin's to copy; the others are injected as they are.
    this.rules = rules.flatMap((r): ManagedRule[] => isSecretSource(r.source)
      ? [{ name: r.name, source: r.source }]
      : fetched?.has(r.name) === true ? [{ name: r.name, source: undefined }] : [])
    for (const rule of this.rules) {
      if (rule.source !== undefined) {
        const key = sourceKey(rule.source)
        if (!this.sources.has(key)) this.sources.set(key, secretInformer(conn, rule.source.namespace, rule.source.name, settings))
      }
      if (!this.copies.has(rule.name)) this.copies.set(rule.name, secretsNamedInformer(conn, rule.name, settings))
    }
  }

  rule (name: string): ManagedRule | undefined { return this.rules.find(r => r.name === name) }

  sourceInformers (): Informer<V1Secret>[] { return [...this.sources.values()] }
  copyInformers (): Informer<V1Secret>[] { return [...this.copies.values()] }

  sourceState (rule: ManagedRule): SourceState {
    if (rule.source === undefined) {
      // Fetched credentials: ready while valid. Once expired they are 'missing', which keeps the
      // copies as they are (planCopy) rather than writing anything expired into them.
      // Named with the entry: two entries may run the same plugin (other args, other images), and
      // readySources tells sources apart by this string.
      const source = `${this.fetched?.describe(rule.name) ?? 'fetched'} (${rule.name})`
      const fetched = this.fetched?.dockerConfig(rule.name)
      if (fetched === undefined) return { kind: 'missing', source }
      const data = Buffer.from(fetched.json).toString('base64')
      return { kind: 'ready', source, data, hash: contentHash(data) }
    }
    const informer = this.sources.get(sourceKey(rule.source))
    return sourceState(rule.source, informer?.get(rule.source.name, rule.source.namespace))
  }

  /** Every ready source once, in config order. */
  readySources (): Array<Extract<SourceState, { kind: 'ready' }>> {
    const seen = new Set<string>()
    const out: Array<Extract<SourceState, { kind: 'ready' }>> = []
    for (const rule of this.rules) {
      const s = this.sourceState(rule)
      if (s.kind === 'ready' && !seen.has(s.source)) { seen.add(s.source); out.push(s) }
    }
    return out
  }

  /** Registry credentials for tag lookups: the configured sources only. */
  dockerConfigs (): DockerConfigSource[] {
    return this.readySources().map(s => ({ source: s.source, json: Buffer.from(s.data, 'base64') }))
  }

  /** The Secret named `name` in `namespace`, as last seen (pullpin's copy or a foreign one). */
  existing (name: string, namespace: string): SecretLike | undefined {
    return this.copies.get(name)?.get(name, namespace)
  }

  /** Namespaces where a foreign Secret holds a copy's name, per secret name. */
  foreignHolders (name: string): string[] {
    const rule = this.rule(name)
    const informer = this.copies.get(name)
    if (rule === undefined || informer === undefined) return []
    return informer.list()
      .filter(s => !isManagedByPullpin(s) && !isSourceItself(name, s.metadata?.namespace ?? '', rule.source))
      .map(s => s.metadata?.namespace ?? '')
  }
}

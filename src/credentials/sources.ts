// The pull-secret entries whose credentials pullpin fetches itself (source.ecr, source.exec), one
// refresher each. Read by the registry lookups (standalone and in a cluster) and, in a cluster, by
// the leader that writes them into every managed copy.
import type { Logger } from 'pino'
import type { ECRClientConfig } from '@aws-sdk/client-ecr'
import { isSecretSource, type PullSecretRule } from '../policy/config.js'
import type { DockerConfigSource } from '../registry/keyring.js'
import type { BackoffOptions } from '../async/backoff.js'
import { createEcrFetcher } from './ecr.js'
import { createExecFetcher } from './exec-plugin.js'
import { CredentialRefresher, type RefresherMetrics } from './refresher.js'
import { toDockerConfigJson, type Clock, type CredentialFetcher } from './types.js'

export { CredentialRefresher } from './refresher.js'
export type { CredentialFetcher, FetchedCredentials, Clock } from './types.js'

export interface CredentialSourcesOptions {
  readonly rules: readonly PullSecretRule[]
  readonly logger: Logger
  readonly metrics?: RefresherMetrics
  readonly clock?: Clock
  readonly random?: () => number
  readonly backoff?: BackoffOptions
  /** AWS credentials for ECR; undefined: the SDK's default chain (IRSA, Pod Identity, environment). */
  readonly awsCredentials?: ECRClientConfig['credentials']
  readonly ecrMaxAttempts?: number
  /** Base environment of exec plugins (src/cli.ts passes pullpin's own). */
  readonly execEnv?: Readonly<Record<string, string | undefined>>
  /** Replaces the fetcher a rule would get (tests). */
  readonly fetcherFor?: (rule: PullSecretRule) => CredentialFetcher | undefined
}

export interface FetchedDockerConfig {
  /** dockerconfigjson text. */
  readonly json: string
  readonly expiresAt: number
  /** e.g. "ecr:eu-west-1": what a copy's source annotation says. */
  readonly description: string
}

export class CredentialSources {
  readonly refreshers: ReadonlyMap<string, CredentialRefresher>

  constructor (opts: CredentialSourcesOptions) {
    const out = new Map<string, CredentialRefresher>()
    for (const rule of opts.rules) {
      // Only ecr/exec entries: a Secret source (or none) is the cluster's business.
      if (rule.source === undefined || isSecretSource(rule.source)) continue
      const fetcher = opts.fetcherFor?.(rule) ?? defaultFetcher(rule, opts)
      if (fetcher === undefined) continue
      out.set(rule.name, new CredentialRefresher({
        name: rule.name,
        fetcher,
        logger: opts.logger.child({ component: 'credentials' }),
        ...(opts.metrics !== undefined ? { metrics: opts.metrics } : {}),
        ...(opts.clock !== undefined ? { clock: opts.clock } : {}),
        ...(opts.random !== undefined ? { random: opts.random } : {}),
        ...(opts.backoff !== undefined ? { backoff: opts.backoff } : {}),
      }))
    }
    this.refreshers = out
  }

  get size (): number { return this.refreshers.size }

  has (name: string): boolean { return this.refreshers.has(name) }

  describe (name: string): string { return this.refreshers.get(name)?.description ?? name }

  /** The live dockerconfigjson of a fetched entry; undefined before the first success and after expiry. */
  dockerConfig (name: string): FetchedDockerConfig | undefined {
    const r = this.refreshers.get(name)
    const c = r?.current()
    return r === undefined || c === undefined ? undefined : { json: toDockerConfigJson(c.auths), expiresAt: c.expiresAt, description: r.description }
  }

  /** Every live answer, for the registry keyring (sources named by the pull-secret entry, no secrets). */
  dockerConfigs (): DockerConfigSource[] {
    const out: DockerConfigSource[] = []
    for (const [name, r] of this.refreshers) {
      const c = r.current()
      if (c !== undefined) out.push({ source: `${r.description} (${name})`, json: toDockerConfigJson(c.auths) })
    }
    return out
  }

  /** For pod warnings (src/mutate/inject-secrets.ts CredentialFreshness); undefined for other secrets. */
  freshness (name: string): ReturnType<CredentialRefresher['freshness']> {
    return this.refreshers.get(name)?.freshness()
  }

  onChange (fn: (name: string) => void): void {
    for (const [name, r] of this.refreshers) r.onChange(() => fn(name))
  }

  start (): void { for (const r of this.refreshers.values()) r.start() }
  stop (): void { for (const r of this.refreshers.values()) r.stop() }

  /** Resolves once every source has tried once (standalone start-up, `pullpin resolve`). */
  async firstAttempts (): Promise<void> {
    await Promise.all([...this.refreshers.values()].map(r => r.firstAttempt()))
  }
}

function defaultFetcher (rule: PullSecretRule, opts: CredentialSourcesOptions): CredentialFetcher | undefined {
  const source = rule.source
  if (source === undefined) return undefined
  if ('ecr' in source) {
    return createEcrFetcher({
      config: source.ecr,
      ...(opts.awsCredentials !== undefined ? { credentials: opts.awsCredentials } : {}),
      ...(opts.ecrMaxAttempts !== undefined ? { maxAttempts: opts.ecrMaxAttempts } : {}),
      ...(opts.clock !== undefined ? { now: () => opts.clock!.now() } : {}),
    })
  }
  if ('exec' in source) {
    const images = source.exec.images ?? (rule.registries ?? []).filter(r => !/[*?]/.test(r))
    return createExecFetcher({
      config: source.exec,
      images,
      ...(opts.execEnv !== undefined ? { baseEnv: opts.execEnv } : {}),
      ...(opts.clock !== undefined ? { now: () => opts.clock!.now() } : {}),
    })
  }
  return undefined
}

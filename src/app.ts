// Wires pullpin together: config → policy → mutation steps → admission handler → HTTPS server.
// Every collaborator is created here and passed down; nothing below reads the environment.
import type { Logger } from 'pino'
import type { Platform } from './registry/client.js'
import { usesRegistry, type Config } from './policy/config.js'
import { createNamespacePolicy } from './policy/namespace-mode.js'
import { checkBudgets } from './policy/budgets.js'
import { staticNamespaceLabels } from './policy/static-namespaces.js'
import { createMutator, type MutationStep } from './mutate/mutator.js'
import { createSecretInjectionStep, type CredentialFreshness, type SecretAvailability } from './mutate/inject-secrets.js'
import { createPinningStep } from './mutate/pin-images.js'
import { createCheckStep } from './mutate/check-images.js'
import { createPinningStack, type PinningStack, type PinningStackOptions } from './pinning.js'
import { CredentialStore, readDockerConfigFiles } from './registry/credential-store.js'
import { CredentialSources, type CredentialSourcesOptions } from './credentials/sources.js'
import type { DockerConfigSource } from './registry/keyring.js'
import { parseImageReference } from './reference/parse.js'
import { createAdmissionHandler, type NamespaceDirectory } from './admission/handler.js'
import { createWorkloadHandler } from './admission/workload.js'
import { certificateNotAfter, type CertificateSource, type TlsMaterial } from './certs/certificate-source.js'
import { buildServer, type PullpinServer } from './server/server.js'
import { createMetrics, type Metrics } from './metrics.js'
import { Readiness } from './server/readiness.js'
// Types only: @kubernetes/client-node is loaded (by src/cluster) only when a cluster is connected.
import type { ClusterConnection, ClusterIntegration, ClusterIntegrationOptions } from './cluster/index.js'

export interface AppOptions {
  readonly config: Config
  readonly logger: Logger
  readonly certificates: CertificateSource
  readonly host?: string
  readonly port?: number
  /** pullpin's own namespace: never mutated. */
  readonly ownNamespace?: string
  /** Whole-review deadline; the chart derives it from the webhook's timeoutSeconds. */
  readonly reviewDeadlineMs?: number
  /** On shutdown, stay up but unready this long first, so endpoints stop sending traffic. */
  readonly shutdownDelayMs?: number
  readonly namespaces?: NamespaceDirectory
  readonly metrics?: Metrics
  /** The mutation pipeline; by default the steps the config calls for (buildSteps). */
  readonly steps?: readonly MutationStep[]
  /** Registry credentials for lookups; by default read from registry.credentials.dockerConfigFiles. */
  readonly credentials?: CredentialStore
  /** DNS lookup for registry connections (tests). */
  readonly lookup?: PinningStackOptions['lookup']
  /** A cluster (src/cluster connectCluster): namespace labels, secret copies, leader election, caBundle. */
  readonly cluster?: ClusterConnection
  /** This replica's name in the leader Lease (the pod name); hostname plus a random suffix by default. */
  readonly identity?: string
  /**
   * How fetched credentials (source.ecr / source.exec) are obtained: AWS credentials (default: the
   * SDK's chain), the plugins' base environment (src/cli.ts passes pullpin's), clock (tests).
   */
  readonly credentialSources?: Omit<CredentialSourcesOptions, 'rules' | 'logger' | 'metrics'>
  /** Cluster timings (backoff, leader election) for tests. */
  readonly clusterOptions?: Pick<ClusterIntegrationOptions, 'backoff' | 'leaderElection' | 'watchTimeoutSeconds' | 'createTimeoutMs' | 'events'>
}

export interface App {
  readonly server: PullpinServer
  readonly metrics: Metrics
  readonly readiness: Readiness
  /** The registry client, tag cache and rollout pins when pinning or a check needs the registry. */
  readonly pinning: PinningStack | undefined
  /** The cluster integration when a cluster is connected. */
  readonly cluster: ClusterIntegration | undefined
  /** The refreshers of source.ecr / source.exec entries. */
  readonly fetchedCredentials: CredentialSources
  /** https://host:port once listening. */
  url: string
  start (): Promise<string>
  /** Unready first, then finish in-flight reviews and close connections. */
  shutdown (): Promise<void>
}

export const DEFAULT_REVIEW_DEADLINE_MS = 9_000

/** The pull-readiness check step over the registry stack (its caches shared with pinning). */
export function checkStep (config: Config, stack: PinningStack, metrics?: Metrics, nodePlatforms?: () => readonly Platform[]): MutationStep {
  return createCheckStep({
    checks: config.checks,
    registry: config.registry,
    pullSecrets: config.pullSecrets,
    tags: stack.cache,
    immutable: stack.immutable,
    access: stack.access,
    credentials: stack.credentials,
    maxVerifiedTags: config.registry.cache.maxImmutableEntries,
    negativeTtlMs: config.registry.cache.negativeTtlSeconds * 1000,
    ...(nodePlatforms !== undefined ? { nodePlatforms } : {}),
    ...(metrics !== undefined ? { metrics: metrics.checks } : {}),
  })
}

/** What the steps read from a cluster or from fetched credentials, when there are any. */
export interface StepSources {
  /** Whether a pull secret's copy exists in a namespace (src/cluster). */
  readonly availability?: SecretAvailability | undefined
  /** How fresh a fetched (source.ecr / source.exec) pull secret is (src/credentials). */
  readonly freshness?: CredentialFreshness | undefined
  /** The os/arch of the cluster's Nodes (src/cluster/node-platforms.ts); else checks.nodePlatforms. */
  readonly nodePlatforms?: (() => readonly Platform[]) | undefined
}

export function buildSteps (config: Config, pinning?: PinningStack, metrics?: Metrics, sources: StepSources = {}): MutationStep[] {
  const { availability, freshness, nodePlatforms } = sources
  const steps: MutationStep[] = []
  // injection: serviceaccount puts the secrets on ServiceAccounts (src/cluster), not on pods.
  if (config.injection !== 'serviceaccount') steps.push(createSecretInjectionStep(config.pullSecrets, { ...(availability !== undefined ? { availability } : {}), ...(freshness !== undefined ? { freshness } : {}) }))
  if (pinning !== undefined && config.pinning.enabled) {
    steps.push(createPinningStep({
      config: config.pinning,
      registry: config.registry,
      cache: pinning.cache,
      rolloutPins: pinning.rolloutPins,
      revisions: pinning.revisions,
      indexHeadsPerReview: config.limits.indexHeadsPerReview,
      ...(metrics !== undefined ? { metrics: metrics.pinning } : {}),
    }))
  }
  // After pinning: the checks look at the images the kubelet will pull.
  if (pinning !== undefined) steps.push(checkStep(config, pinning, metrics, nodePlatforms))
  return steps
}

export async function createApp (opts: AppOptions): Promise<App> {
  const { config, logger } = opts
  const reviewDeadlineMs = opts.reviewDeadlineMs ?? DEFAULT_REVIEW_DEADLINE_MS
  // Before anything starts: budgets that cannot fit the review deadline are a config error (exit 2).
  checkBudgets(config, { reviewDeadlineMs, cluster: opts.cluster !== undefined })
  const metrics = opts.metrics ?? createMetrics()
  const readiness = new Readiness()
  const credentials = opts.credentials ?? new CredentialStore()
  // Every replica fetches its own (its lookups need them); only the leader writes copies.
  const fetched = new CredentialSources({ rules: config.pullSecrets, logger, metrics: metrics.credentials, ...opts.credentialSources })
  metrics.credentials.trackExpiry(() => new Map([...fetched.refreshers].map(([name, r]) => [name, r.secondsUntilExpiry()])))
  let cluster: ClusterIntegration | undefined
  if (opts.cluster !== undefined) {
    const { createClusterIntegration } = await import('./cluster/integration.js')
    cluster = createClusterIntegration({
      connection: opts.cluster,
      config,
      ownNamespace: opts.ownNamespace ?? 'pullpin',
      logger,
      metrics: metrics.cluster,
      // With a cluster, registry lookups use the pull-secret source Secrets (watched).
      credentials,
      fetched,
      ...(opts.identity !== undefined ? { identity: opts.identity } : {}),
      createTimeoutMs: config.cluster.copyCreateBudgetMs,
      findingMetrics: metrics.findings,
      ...opts.clusterOptions,
    })
    for (const { name, check } of cluster.readinessChecks) readiness.add(name, check)
  }
  let pinning: PinningStack | undefined
  if (usesRegistry(config)) {
    if (opts.credentials === undefined && cluster === undefined) {
      // Standalone: the files, plus whatever the fetched sources hold now (they renew themselves).
      const files: DockerConfigSource[] = await readDockerConfigFiles(config.registry.credentials.dockerConfigFiles)
      const feed = (): void => credentials.replace([...files, ...fetched.dockerConfigs()])
      feed()
      fetched.onChange(feed)
    }
    pinning = await createPinningStack({
      config,
      limits: config.limits,
      credentials,
      logger,
      onRegistryEvent: (e) => metrics.registryEvent(e),
      onCacheEvent: (e) => metrics.cacheEvent(e),
      onRevisionEvent: (e) => metrics.revisionEvent(e),
      onImmutableEvent: (e) => metrics.immutableEvent(e),
      ...(opts.lookup !== undefined ? { lookup: opts.lookup } : {}),
      // With a cluster, replicas share the pins of a rollout through the pods they admitted.
      ...(opts.cluster !== undefined ? { admittedPins: (await import('./cluster/admitted-pins.js')).createAdmittedPinsReader(opts.cluster) } : {}),
    })
    metrics.trackCache(() => pinning!.cache.stats())
  }
  const policy = createNamespacePolicy(config, opts.ownNamespace)
  const namespaces = opts.namespaces ?? cluster?.namespaces ?? staticNamespaceLabels(config)
  const mutator = createMutator(opts.steps ?? buildSteps(config, pinning, metrics, {
    availability: cluster?.availability,
    freshness: fetched.size > 0 && (pinning !== undefined || cluster !== undefined) ? (name) => fetched.freshness(name) : undefined,
    nodePlatforms: cluster?.nodePlatforms,
  }), { maxImagesPerReview: config.limits.maxImagesPerReview, failOpen: config.failOpen })
  const handler = createAdmissionHandler({
    policy,
    namespaces,
    mutator,
    logger,
    metrics: metrics.admission,
    failOpen: config.failOpen,
    deadlineMs: reviewDeadlineMs,
    ...(cluster?.onReviewed !== undefined ? { onReviewed: cluster.onReviewed } : {}),
  })
  // The workload webhook (/validate): the same mutator on pod templates, as a dry run.
  const validate = createWorkloadHandler({
    policy,
    namespaces,
    mutator,
    logger,
    metrics: metrics.workload,
    failOpen: config.failOpen,
    deadlineMs: reviewDeadlineMs,
    ...(cluster?.onWorkloadFindings !== undefined ? { onFindings: cluster.onWorkloadFindings } : {}),
  })
  const tls = await opts.certificates.load()
  metrics.certificateExpiry(certificateNotAfter(tls.cert))
  const server = buildServer({ tls, handler, validate, logger, metrics: metrics.registry, readiness })
  // The leader writes this CA into the webhook configuration's caBundle.
  cluster?.setCaBundle(tls.ca)
  const reloadFailed = (err: unknown): void => logger.error({ err }, 'certificate reload failed; still serving the previous certificate')
  const onNewCertificate = (material: TlsMaterial): void => {
    // setSecureContext throws on a pair it cannot use; the sources call this from timers and
    // watch callbacks, where a throw would end the process.
    try {
      server.reloadTls(material)
    } catch (err) {
      reloadFailed(err)
      return
    }
    cluster?.setCaBundle(material.ca)
    metrics.certificateExpiry(certificateNotAfter(material.cert))
    logger.info({ source: opts.certificates.description }, 'serving certificate reloaded')
  }
  let stopWatching: (() => void) | undefined

  const app: App = {
    server,
    metrics,
    readiness,
    pinning,
    cluster,
    fetchedCredentials: fetched,
    url: '',
    async start () {
      // Listen first: when that fails (port in use) nothing else has started, so nothing keeps
      // the process alive and the CLI exits with the error. /readyz stays unready until the
      // informers have listed.
      const address = await server.fastify.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 8443 })
      // Needed for lookups (pinning) and for copies (cluster); otherwise nothing would read them.
      if (pinning !== undefined || cluster !== undefined) fetched.start()
      cluster?.start()
      stopWatching = opts.certificates.watch?.(onNewCertificate, reloadFailed)
      app.url = address.replace(/^http:/, 'https:')
      logger.info({ url: app.url, certificates: opts.certificates.description, mode: config.mode, pinning: config.pinning.enabled }, 'pullpin listening')
      if (pinning !== undefined) warmUp(pinning, config.pinning.warmup, logger)
      return app.url
    },
    async shutdown () {
      readiness.drain()
      if ((opts.shutdownDelayMs ?? 0) > 0) await new Promise(resolve => setTimeout(resolve, opts.shutdownDelayMs))
      stopWatching?.()
      await server.fastify.close()
      await pinning?.close()
      fetched.stop()
      // Releases the leader Lease so another replica takes over at once.
      await cluster?.stop()
    },
  }
  return app
}

/** Build the SHA-tag index of listed repositories in the background; admission does not wait for it. */
function warmUp (pinning: PinningStack, repositories: readonly string[], logger: Logger): void {
  for (const repo of repositories) {
    const started = performance.now()
    Promise.resolve()
      .then(() => pinning.cache.warm(parseImageReference(repo)))
      .then(
        (shaTags) => logger.info({ repository: repo, shaTags, ms: Math.round(performance.now() - started) }, 'warm-up: SHA-tag index built'),
        (err: unknown) => logger.warn({ repository: repo, err: (err as Error).message }, 'warm-up failed; the index is built on first use')
      )
  }
}

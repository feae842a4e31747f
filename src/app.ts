// Wires pullpin together: config → policy → mutation steps → admission handler → HTTPS server.
// Every collaborator is created here and passed down; nothing below reads the environment.
import type { Logger } from 'pino'
import type { Config } from './policy/config.js'
import { createNamespacePolicy } from './policy/namespace-mode.js'
import { staticNamespaceLabels } from './policy/static-namespaces.js'
import { createMutator, type MutationStep } from './mutate/mutator.js'
import { createSecretInjectionStep } from './mutate/inject-secrets.js'
import { createPinningStep } from './mutate/pin-images.js'
import { createPinningStack, type PinningStack, type PinningStackOptions } from './pinning.js'
import { CredentialStore, readDockerConfigFiles } from './registry/credential-store.js'
import { parseImageReference } from './reference/parse.js'
import { createAdmissionHandler, type NamespaceDirectory } from './admission/handler.js'
import type { CertificateSource } from './certs/certificate-source.js'
import { buildServer, type PullpinServer } from './server/server.js'
import { createMetrics, type Metrics } from './server/metrics.js'
import { Readiness } from './server/readiness.js'

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
  /** Registry credentials for lookups; by default read from pinning.credentials.dockerConfigFiles. */
  readonly credentials?: CredentialStore
  /** DNS lookup for registry connections (tests). */
  readonly lookup?: PinningStackOptions['lookup']
}

export interface App {
  readonly server: PullpinServer
  readonly metrics: Metrics
  readonly readiness: Readiness
  /** The registry client, tag cache and owner pins when pinning is enabled. */
  readonly pinning: PinningStack | undefined
  /** https://host:port once listening. */
  url: string
  start (): Promise<string>
  /** Unready first, then finish in-flight reviews and close connections. */
  shutdown (): Promise<void>
}

export const DEFAULT_REVIEW_DEADLINE_MS = 9_000

export function buildSteps (config: Config, pinning?: PinningStack, metrics?: Metrics): MutationStep[] {
  const steps = [createSecretInjectionStep(config.pullSecrets)]
  if (pinning !== undefined) {
    steps.push(createPinningStep({
      config: config.pinning,
      cache: pinning.cache,
      ownerPins: pinning.ownerPins,
      ...(metrics !== undefined ? { metrics: metrics.pinning } : {}),
    }))
  }
  return steps
}

export async function createApp (opts: AppOptions): Promise<App> {
  const { config, logger } = opts
  const metrics = opts.metrics ?? createMetrics()
  const readiness = new Readiness()
  let pinning: PinningStack | undefined
  if (config.pinning.enabled) {
    const credentials = opts.credentials ?? new CredentialStore()
    if (opts.credentials === undefined) credentials.replace(await readDockerConfigFiles(config.pinning.credentials.dockerConfigFiles))
    pinning = await createPinningStack({
      config: config.pinning,
      credentials,
      logger,
      onRegistryEvent: (e) => metrics.registryEvent(e),
      onCacheEvent: (e) => metrics.cacheEvent(e),
      ...(opts.lookup !== undefined ? { lookup: opts.lookup } : {}),
    })
    metrics.trackCache(() => pinning!.cache.stats())
  }
  const handler = createAdmissionHandler({
    policy: createNamespacePolicy(config, opts.ownNamespace),
    namespaces: opts.namespaces ?? staticNamespaceLabels(config),
    mutator: createMutator(opts.steps ?? buildSteps(config, pinning, metrics)),
    logger,
    metrics: metrics.admission,
    failOpen: config.failOpen,
    deadlineMs: opts.reviewDeadlineMs ?? DEFAULT_REVIEW_DEADLINE_MS,
  })
  const tls = await opts.certificates.load()
  const server = buildServer({ tls, handler, logger, metrics: metrics.registry, readiness })
  const stopWatching = opts.certificates.watch?.(
    (material) => { server.reloadTls(material); logger.info({ source: opts.certificates.description }, 'serving certificate reloaded') },
    (err) => logger.error({ err }, 'certificate reload failed; still serving the previous certificate'),
  )

  const app: App = {
    server,
    metrics,
    readiness,
    pinning,
    url: '',
    async start () {
      const address = await server.fastify.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 8443 })
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
        (err: unknown) => logger.warn({ repository: repo, err: (err as Error).message }, 'warm-up failed; the index is built on first use'),
      )
  }
}

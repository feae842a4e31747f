// Everything pullpin does with a cluster, wired together: the informers every replica runs (for
// admission from the last known state), the leader election, and the leader's reconciler.
// src/app.ts calls this and gets plain data back: a NamespaceDirectory, a SecretAvailability for
// the injection step, readiness checks, and a way to publish the serving CA.
import { hostname } from 'node:os'
import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { V1MutatingWebhookConfiguration, V1Secret, V1ServiceAccount, V1ValidatingWebhookConfiguration } from '@kubernetes/client-node'
import type { NamespaceDirectory, ReviewedPod } from '../admission/handler.js'
import type { WorkloadFindings } from '../admission/workload.js'
import type { SecretAvailability } from '../mutate/inject-secrets.js'
import { usesRegistry, type Config } from '../policy/config.js'
import { createNamespacePolicy } from '../policy/namespace-mode.js'
import { Keyring, type DockerConfigSource } from '../registry/keyring.js'
import type { BackoffOptions } from '../async/backoff.js'
import type { ClusterConnection } from './connection.js'
import { isPlaceholder } from './copy-plan.js'
import { CopyAvailability } from './copy-availability.js'
import type { Informer, KubeObject } from './informer.js'
import { dockerConfigSecretsInformer, namespaceInformer, serviceAccountsNamedInformer, validatingWebhookConfigurationInformer, webhookConfigurationInformer, type InformerSettings } from './resource-informers.js'
import { EventRecorder, type EventRecorderOptions, type FindingMetrics } from './events.js'
import { PolicyReporter } from './policy-reports.js'
import { LeaderElector } from './leader-election.js'
import { noClusterMetrics, type ClusterMetrics } from './metrics.js'
import { clusterNamespaceDirectory } from './namespace-directory.js'
import { NodePlatforms, nodeInformer } from './node-platforms.js'
import type { Platform } from '../registry/client.js'
import { PullSecretState, type FetchedSources } from './pull-secret-state.js'
import { Reconciler, RETIRED_KEY, WEBHOOK_KEY } from './reconciler.js'
import { WorkQueue } from './work-queue.js'

/** Where registry credentials for tag lookups go (src/registry/credential-store.ts CredentialStore). */
export interface CredentialSink { replace (configs: readonly DockerConfigSource[]): void }

/**
 * One named readiness condition (informers synced, TLS Secret loaded). The cluster declares the
 * shape and app.ts hands it to the server's Readiness, so the cluster never imports the server.
 */
export type ReadinessCheck = () => { ready: boolean; detail?: string }

export interface ClusterIntegrationOptions {
  readonly connection: ClusterConnection
  readonly config: Config
  /** pullpin's namespace: the Lease lives there, and it is never mutated. */
  readonly ownNamespace: string
  /** This replica's name in the Lease; the pod name by default (hostname) plus a random suffix. */
  readonly identity?: string
  readonly logger: Logger
  readonly metrics?: ClusterMetrics
  readonly credentials?: CredentialSink
  /** Credentials pullpin fetches itself (source.ecr / source.exec): the leader writes them into the copies. */
  readonly fetched?: FetchedSources & { onChange (fn: (name: string) => void): void }
  /** Reconnect backoff of the informers (tests shorten it). */
  readonly backoff?: BackoffOptions
  readonly watchTimeoutSeconds?: number
  /** Leader election timings in ms; from config.cluster.leaderElection by default. */
  readonly leaderElection?: { readonly leaseDurationMs: number; readonly renewDeadlineMs: number; readonly retryPeriodMs: number }
  /** Bound on the synchronous copy create during admission. */
  readonly createTimeoutMs?: number
  /** Events and PolicyReports written (src/metrics.ts). */
  readonly findingMetrics?: FindingMetrics
  /** Event recorder settings for tests (manual clock, windows); rates come from config.reports. */
  readonly events?: Pick<EventRecorderOptions, 'clock' | 'flushIntervalMs' | 'seriesWindowMs' | 'queueSize'>
}

export interface ClusterIntegration {
  readonly namespaces: NamespaceDirectory
  /** For the injection step; undefined when no pullSecrets entry has a source. */
  readonly availability: SecretAvailability | undefined
  readonly readinessChecks: ReadonlyArray<{ readonly name: string; readonly check: ReadinessCheck }>
  readonly identity: string
  /** The nodes' platforms for the platform check (checks.nodePlatforms until the Nodes are listed); undefined when the check is off. */
  readonly nodePlatforms: (() => readonly Platform[]) | undefined
  isLeader (): boolean
  /** The PEM bundle of the CA(s) that sign the serving certificate; the leader writes it into caBundle. */
  setCaBundle (pem: string | undefined): void
  start (): void
  /** Resolves once every informer has listed once. */
  waitForSync (): Promise<void>
  /** Resolves once the leader's queue is empty (tests). */
  idle (): Promise<void>
  stop (): Promise<void>
  /** For the pod webhook: findings → Events and PolicyReports; undefined when both are off. */
  readonly onReviewed: ((r: ReviewedPod) => void) | undefined
  /** For the workload webhook: findings → PolicyReports; undefined when they are off. */
  readonly onWorkloadFindings: ((w: WorkloadFindings) => void) | undefined
  /** The Event recorder when reports.events is on. */
  readonly events: EventRecorder | undefined
  /** The PolicyReport writer when reports.policyReports is on. */
  readonly policyReports: PolicyReporter | undefined
}

export function createClusterIntegration (opts: ClusterIntegrationOptions): ClusterIntegration {
  const { connection, config, logger: parent } = opts
  const logger = parent.child({ component: 'cluster' })
  const metrics = opts.metrics ?? noClusterMetrics
  const policy = createNamespacePolicy(config, opts.ownNamespace)
  const identity = opts.identity ?? `${hostname()}_${randomUUID().slice(0, 8)}`
  const settings: InformerSettings = {
    logger,
    onRestart: (informer, reason) => metrics.informerRestart(informer, reason),
    ...(opts.backoff !== undefined ? { backoff: opts.backoff } : {}),
    ...(opts.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: opts.watchTimeoutSeconds } : {}),
  }

  const namespaces = namespaceInformer(connection, settings)
  const state = new PullSecretState(connection, config.pullSecrets, settings, opts.fetched)
  const serviceAccounts = new Map<string, Informer<V1ServiceAccount>>()
  if (config.injection !== 'pod') for (const sa of config.serviceAccounts) serviceAccounts.set(sa, serviceAccountsNamedInformer(connection, sa, settings))
  const placeholders: Informer<V1Secret> | undefined = config.cluster.placeholderSecrets ? dockerConfigSecretsInformer(connection, settings) : undefined
  const webhookName = config.cluster.webhookConfigurationName
  const webhookInformer: Informer<V1MutatingWebhookConfiguration> | undefined = webhookName !== '' ? webhookConfigurationInformer(connection, webhookName, settings) : undefined
  const validatingName = config.cluster.validatingWebhookConfigurationName
  const validatingInformer: Informer<V1ValidatingWebhookConfiguration> | undefined = validatingName !== '' ? validatingWebhookConfigurationInformer(connection, validatingName, settings) : undefined
  // Not a readiness condition: until the Nodes are listed the platform check uses checks.nodePlatforms.
  const nodes = config.checks.platforms !== 'off' && usesRegistry(config) ? nodeInformer(connection, settings) : undefined
  const platforms = nodes !== undefined ? new NodePlatforms(nodes, parsePlatforms(config.checks.nodePlatforms)) : undefined
  const informers: Array<Pick<Informer<KubeObject>, 'name' | 'hasSynced' | 'waitForSync' | 'start' | 'stop'>> = [
    namespaces,
    ...(validatingInformer !== undefined ? [validatingInformer] : []),
    ...state.sourceInformers(),
    ...state.copyInformers(),
    ...serviceAccounts.values(),
    ...(placeholders !== undefined ? [placeholders] : []),
    ...(webhookInformer !== undefined ? [webhookInformer] : []),
  ]

  let caBundle: string | undefined
  const le = opts.leaderElection ?? {
    leaseDurationMs: config.cluster.leaderElection.leaseDurationSeconds * 1000,
    renewDeadlineMs: config.cluster.leaderElection.renewDeadlineSeconds * 1000,
    retryPeriodMs: config.cluster.leaderElection.retryPeriodSeconds * 1000,
  }
  const reconciler = new Reconciler({
    connection,
    state,
    namespaces,
    policy,
    secretNames: config.pullSecrets.map(r => r.name),
    injection: config.injection,
    serviceAccounts,
    placeholders,
    webhook: webhookInformer !== undefined ? { name: webhookName, informer: webhookInformer } : undefined,
    validatingWebhook: validatingInformer !== undefined ? { name: validatingName, informer: validatingInformer } : undefined,
    caBundle: () => caBundle,
    // Asked before every write (elector is defined below; this runs only once it leads).
    isLeader: () => elector.isLeader(),
    logger,
    metrics,
  })
  // Active only while this replica leads: add() is a no-op otherwise.
  const work = new WorkQueue({ process: (key, signal) => reconciler.reconcile(key, signal), logger })
  const enqueue = (key: string | undefined): void => { if (key !== undefined && key !== '') work.add(key) }
  const enqueueAll = (): void => { for (const k of reconciler.allKeys()) work.add(k) }
  const syncAll = (): Promise<void> => Promise.all(informers.map(i => i.waitForSync())).then(() => {})

  const elector: LeaderElector = new LeaderElector({
    coordination: connection.coordination,
    namespace: opts.ownNamespace,
    leaseName: config.cluster.leaderElection.leaseName,
    identity,
    ...le,
    logger,
    onStartedLeading: () => {
      metrics.leader(true)
      work.start()
      // Decisions need the whole picture: reconcile once every informer has listed.
      syncAll().then(() => {
        if (!elector.isLeader()) return
        reconciler.reportSources()
        enqueueAll()
        work.add(RETIRED_KEY)
        void reports?.resync()
      }).catch((err: unknown) => logger.error({ err }, 'could not start reconciling'))
    },
    onStoppedLeading: () => {
      metrics.leader(false)
      // Aborts the key in progress; never rejects.
      work.stop().catch(() => undefined)
    },
  })

  // Informer events → work for the leader.
  namespaces.on(e => enqueue(e.object.metadata?.name))
  for (const i of state.copyInformers()) i.on(e => enqueue(e.object.metadata?.namespace))
  for (const i of serviceAccounts.values()) i.on(e => enqueue(e.object.metadata?.namespace))
  placeholders?.on(e => { if (isPlaceholder(e.object)) enqueue(e.object.metadata?.namespace) })
  webhookInformer?.on(() => work.add(WEBHOOK_KEY))
  validatingInformer?.on(() => work.add(WEBHOOK_KEY))
  for (const i of state.sourceInformers()) {
    const changed = (): void => {
      feedCredentials()
      if (elector.isLeader()) { reconciler.reportSources(); enqueueAll() }
    }
    i.on(changed)
    i.onResync(changed)
  }

  // A fetched token renewed or expired: lookups use it at once, and the leader rewrites every copy.
  opts.fetched?.onChange(() => {
    feedCredentials()
    if (elector.isLeader()) { reconciler.reportSources(); enqueueAll() }
  })

  function feedCredentials (): void {
    if (opts.credentials === undefined) return
    const configs = state.dockerConfigs()
    const usable = configs.filter((c) => {
      try {
        Keyring.fromDockerConfigs([c])
        return true
      } catch (err) {
        // The keyring's messages name the source and the key, never secret material.
        logger.warn({ source: c.source, error: (err as Error).message }, 'pull-secret source is not a readable dockerconfigjson: not used for registry lookups')
        return false
      }
    })
    opts.credentials.replace(usable)
    logger.debug({ sources: usable.map(c => c.source) }, 'registry credentials updated from the pull-secret sources')
  }

  metrics.trackConflicts(() => {
    const out = new Map<string, number>()
    for (const rule of state.rules) {
      const n = state.foreignHolders(rule.name).filter(ns => policy.decide(ns, namespaces.get(ns)?.metadata?.labels ?? {}).mode === 'enforce').length
      out.set(rule.name, n)
    }
    return out
  })

  // Findings → Events (every replica, for the pods it reviewed) and PolicyReports (the leader writes).
  const recorder = config.reports.events
    ? new EventRecorder({ api: connection.events, reportingInstance: identity, logger, writesPerSecond: config.reports.eventsPerSecond, burst: config.reports.eventBurst, ...(opts.findingMetrics !== undefined ? { metrics: opts.findingMetrics } : {}), ...opts.events })
    : undefined
  const reports = config.reports.policyReports
    ? new PolicyReporter({ connection, logger, isLeader: () => elector.isLeader(), delayMs: config.reports.policyReportDelaySeconds * 1000, ...(opts.findingMetrics !== undefined ? { metrics: opts.findingMetrics } : {}), ...(opts.events?.clock !== undefined ? { clock: opts.events.clock } : {}) })
    : undefined
  const onReviewed = recorder !== undefined || reports !== undefined
    ? (r: ReviewedPod): void => { recorder?.reviewed(r); reports?.pod(r) }
    : undefined

  let resync: NodeJS.Timeout | undefined
  const availability = state.rules.length > 0
    ? new CopyAvailability({ connection, state, logger, metrics, ...(opts.createTimeoutMs !== undefined ? { createTimeoutMs: opts.createTimeoutMs } : {}) })
    : undefined

  return {
    namespaces: clusterNamespaceDirectory({ connection, informer: namespaces, logger }),
    availability,
    identity,
    nodePlatforms: platforms !== undefined ? () => platforms.platforms() : undefined,
    readinessChecks: [{
      name: 'cluster',
      // Ready once every informer has a last known state; an API server outage afterwards does not
      // make replicas unready (admission keeps working from that state), it only shows in detail.
      check: () => {
        const unsynced = informers.filter(i => !i.hasSynced).map(i => i.name)
        return unsynced.length === 0 ? { ready: true } : { ready: false, detail: `informers not synced: ${unsynced.join(', ')}` }
      },
    }],
    isLeader: () => elector.isLeader(),
    onReviewed,
    onWorkloadFindings: reports !== undefined ? (w) => { reports.workload(w) } : undefined,
    events: recorder,
    policyReports: reports,
    setCaBundle (pem) {
      if (pem === caBundle) return
      caBundle = pem
      work.add(WEBHOOK_KEY)
    },
    start () {
      if (resync !== undefined) return
      for (const i of informers) i.start()
      nodes?.start()
      elector.start()
      metrics.leader(false)
      resync = setInterval(() => {
        if (!elector.isLeader()) return
        enqueueAll()
        void reports?.resync()
      }, config.cluster.resyncSeconds * 1000)
      resync.unref()
      // Once at start: is the PolicyReport CRD there? (a log line says which)
      reports?.discover().then(() => reports.resync()).catch((err: unknown) => logger.warn({ err }, 'PolicyReport discovery failed'))
      logger.info({ server: connection.description, identity, informers: informers.map(i => i.name) }, 'cluster integration started')
    },
    waitForSync: syncAll,
    idle: () => work.idle(),
    async stop () {
      clearInterval(resync)
      await recorder?.stop()
      await reports?.stop()
      await elector.stop()
      await work.stop()
      await Promise.all([...informers, ...(nodes !== undefined ? [nodes] : [])].map(i => i.stop()))
    },
  }
}

function parsePlatforms (list: readonly string[]): Platform[] {
  return list.flatMap(s => {
    const [os, architecture, variant] = s.split('/')
    if (os === undefined || architecture === undefined) return []
    return [variant !== undefined ? { os, architecture, variant } : { os, architecture }]
  })
}

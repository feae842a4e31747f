// Builds the pinning stack from config: credentials → registry client → tag cache → pin step.
// Shared by the server (src/app.ts) and `pullpin resolve`, so both see images the same way.
import { readFile } from 'node:fs/promises'
import type { Logger } from 'pino'
import type { Config, LimitsConfig } from './policy/config.js'
import { ERR_CONFIG_READ } from './errors.js'
import { compileRegistryGlob, normalizeRegistryKey } from './reference/host-glob.js'
import { RegistryClient, type RegistryEvent, type RegistryHostOptions } from './registry/client.js'
import { CredentialStore } from './registry/credential-store.js'
import { TagCache, type CacheEvent, type RegistryReader, type TagCacheOptions } from './cache/tag-cache.js'
import { RolloutPins, type AdmittedPinsReader, type RolloutPinsOptions } from './cache/rollout-pins.js'
import { ImmutableCache, type ImmutableCacheEvent } from './cache/immutable-cache.js'
import { PullAccessCache } from './cache/pull-access.js'
import { RevisionPins, type RevisionEvent } from './cache/revision-pins.js'
import { candidateTags, compileShaTagTemplate, type ShaTagTemplate } from './policy/sha-tag-templates.js'

/** Docker Hub hands out tokens from auth.docker.io, not from the registry's own host. */
export const DEFAULT_TOKEN_REALM_HOSTS: Readonly<Record<string, readonly string[]>> = { 'docker.io': ['auth.docker.io'] }

export const DEFAULT_HOST_OPTIONS = { timeoutMs: 1500, retries: 2, maxConcurrency: 16 } as const

export interface PinningStack {
  readonly client: RegistryClient
  readonly cache: TagCache
  /** Manifests and config blobs by digest, kept for good (registry.cache.maxImmutableEntries). */
  readonly immutable: ImmutableCache
  /** Pull access per credential set (the pull-access check). */
  readonly access: PullAccessCache
  readonly rolloutPins: RolloutPins
  /** The revision cold path; asked before the SHA-tag index. */
  readonly revisions: RevisionPins
  readonly credentials: CredentialStore
  close (): Promise<void>
}

/** How often due background refreshes are started (a tag is refreshed at most this late). */
const REFRESH_TICK_MS = 1000

/** The parts of the config the registry stack reads. */
export type RegistryStackConfig = Pick<Config, 'registry' | 'pinning'>

export interface PinningStackOptions {
  readonly config: RegistryStackConfig
  /** limits.indexHeadsPerRepository bounds each SHA-tag index build; unbounded when absent. */
  readonly limits?: Pick<LimitsConfig, 'indexHeadsPerRepository'>
  readonly credentials: CredentialStore
  readonly logger?: Logger
  readonly onRegistryEvent?: (e: RegistryEvent) => void
  readonly onCacheEvent?: (e: CacheEvent) => void
  readonly onImmutableEvent?: (e: ImmutableCacheEvent) => void
  readonly onRevisionEvent?: (e: RevisionEvent) => void
  /** Injected DNS lookup (tests resolve made-up hosts to chosen addresses). */
  readonly lookup?: RegistryClientLookup
  /** Registries allowed without being on registry.hosts (`pullpin resolve IMAGE` asks for one explicitly). */
  readonly alsoAllow?: readonly string[]
  /** Pins of pods already admitted, from the cluster (src/cluster/admitted-pins.ts); memory only without. */
  readonly admittedPins?: AdmittedPinsReader
}

type RegistryClientLookup = NonNullable<ConstructorParameters<typeof RegistryClient>[0]['lookup']>

export async function createPinningStack (opts: PinningStackOptions): Promise<PinningStack> {
  const { config } = opts
  const registry = config.registry
  const allowlist = [...registry.hosts, ...(opts.alsoAllow ?? [])]
  const allowed = allowlist.map(compileRegistryGlob)
  // Connection state and metrics are per host: an entry with a path ("registry.example.com/team")
  // names its host for them, while requests are allowed by the whole entry (the repository too).
  const allowedHosts = allowlist.map(p => compileRegistryGlob(normalizeRegistryKey(p).split('/')[0]!))
  const privateAllowed = registry.allowPrivate.map(compileRegistryGlob)
  const asImage = (registry: string) => ({ registry, repository: '' })
  const hostOptions = new Map<string, RegistryHostOptions>()
  for (const [host, o] of Object.entries(registry.options)) {
    let caPem: string | undefined
    if (o.caFile !== undefined) {
      try {
        caPem = await readFile(o.caFile, 'utf8')
      } catch (err) {
        throw new ERR_CONFIG_READ(o.caFile, (err as NodeJS.ErrnoException).code ?? 'unreadable')
      }
    }
    hostOptions.set(host, {
      ...(caPem !== undefined ? { caPem } : {}),
      timeoutMs: o.timeoutMs ?? DEFAULT_HOST_OPTIONS.timeoutMs,
      retries: o.retries ?? DEFAULT_HOST_OPTIONS.retries,
      maxConcurrency: o.maxConcurrency ?? DEFAULT_HOST_OPTIONS.maxConcurrency,
      tokenRealmHosts: o.tokenRealmHosts ?? DEFAULT_TOKEN_REALM_HOSTS[host] ?? [],
    })
  }
  const defaults = (registry: string): RegistryHostOptions => ({ ...DEFAULT_HOST_OPTIONS, tokenRealmHosts: DEFAULT_TOKEN_REALM_HOSTS[registry] ?? [] })

  const clientOptions = {
    isAllowed: (registry: string, repository: string) => allowed.some(m => m({ registry, repository })),
    // The first entry whose host matches, in config order (the client asks once per registry state).
    allowlistEntry: (registry: string) => allowlist[allowedHosts.findIndex(m => m(asImage(registry)))] ?? registry,
    isPrivateAllowed: (registry: string) => privateAllowed.some(m => m(asImage(registry))),
    hostOptions: (registry: string) => hostOptions.get(registry) ?? defaults(registry),
    ...(opts.lookup !== undefined ? { lookup: opts.lookup } : {}),
    ...(opts.onRegistryEvent !== undefined ? { onEvent: opts.onRegistryEvent } : {}),
    userAgent: 'pullpin',
  }
  const client = new RegistryClient({ ...clientOptions, credentials: (image) => opts.credentials.lookup(image) })
  const cache = new TagCache({
    ...tagCacheOptions(config, client, opts.onCacheEvent),
    ...(opts.limits !== undefined ? { indexHeadsPerRepository: opts.limits.indexHeadsPerRepository } : {}),
  })
  const c = registry.cache
  const immutable = new ImmutableCache({
    registry: client,
    maxEntries: c.maxImmutableEntries,
    ...(opts.onImmutableEvent !== undefined ? { onEvent: opts.onImmutableEvent } : {}),
  })
  // The pull-access check asks with exactly the credentials of one pull secret: a client of its
  // own per credential set, whose auth session knows no other credential.
  const access = new PullAccessCache({
    probeFor: (credentials) => new RegistryClient({ ...clientOptions, credentials: () => [...credentials] }),
    ttlMs: c.ttlSeconds * 1000,
    staleWhileRevalidateMs: c.staleWhileRevalidateSeconds * 1000,
    maxEntries: c.maxImmutableEntries,
  })
  const patterns = config.pinning.shaTagPatterns.map(p => new RegExp(p))
  // Checked at start (src/policy/config.ts): every template compiles here.
  const templates = config.pinning.shaTagTemplates.map(t => compileShaTagTemplate(t, patterns)).filter((f): f is ShaTagTemplate => typeof f !== 'string')
  const revisions = new RevisionPins({
    tags: cache,
    documents: immutable,
    candidates: (revision) => candidateTags(revision, templates, patterns),
    maxEntries: c.maxEntries,
    ...(opts.onRevisionEvent !== undefined ? { onEvent: opts.onRevisionEvent } : {}),
  })
  // Background refreshes of the tags pods named lately (TagCache.refreshActive); unref'd: it never
  // keeps the process alive.
  const refresher = setInterval(() => cache.refreshActive(), REFRESH_TICK_MS)
  refresher.unref()
  return {
    client,
    cache,
    immutable,
    access,
    rolloutPins: new RolloutPins({
      max: c.ownerPins,
      ...(opts.admittedPins !== undefined ? { reader: opts.admittedPins } : {}),
      ...unreachableLog(opts.logger),
    }),
    revisions,
    credentials: opts.credentials,
    close: async () => {
      clearInterval(refresher)
      access.close()
      await client.close()
    },
  }
}

/** An API server that does not answer is logged once, and once more when it answers again. */
function unreachableLog (logger: Logger | undefined): Pick<RolloutPinsOptions, 'onUnreachable' | 'onReachable'> {
  if (logger === undefined) return {}
  let down = false
  return {
    onUnreachable: (err) => {
      if (down) return
      down = true
      logger.warn({ err: (err as Error).message }, 'rollout pins: the API server did not answer; pods of new revisions are pinned from the registry')
    },
    onReachable: () => {
      down = false
      logger.info('rollout pins: the API server answers again')
    },
  }
}

/** The tag cache's options from the config (seconds → milliseconds, patterns compiled once). */
export function tagCacheOptions (config: RegistryStackConfig, registry: RegistryReader, onEvent?: (e: CacheEvent) => void): TagCacheOptions {
  const c = config.registry.cache
  return {
    registry,
    shaTagPatterns: config.pinning.shaTagPatterns.map(p => new RegExp(p)),
    ttlMs: c.ttlSeconds * 1000,
    staleWhileRevalidateMs: c.staleWhileRevalidateSeconds * 1000,
    staleIfErrorMs: c.staleIfErrorSeconds * 1000,
    negativeTtlMs: c.negativeTtlSeconds * 1000,
    maxEntries: c.maxEntries,
    maxRepositories: c.maxRepositories,
    tagListMinIntervalMs: c.tagListMinIntervalSeconds * 1000,
    activeMs: c.activeSeconds * 1000,
    ...(onEvent !== undefined ? { onEvent } : {}),
  }
}

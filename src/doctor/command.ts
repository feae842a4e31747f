// `pullpin doctor` put together: the webhook's config and credentials, the registry ladder over
// pullpin's own registry pieces, and with a cluster the namespace, secret, ServiceAccount and pod
// event checks (src/cluster). src/cli.ts parses the arguments and calls this.
import { lookup as dnsLookup } from 'node:dns/promises'
import { readFile } from 'node:fs/promises'
import { ERR_CONFIG_READ } from '../errors.js'
import { createPinningStack, DEFAULT_HOST_OPTIONS, DEFAULT_TOKEN_REALM_HOSTS } from '../pinning.js'
import { deepFreeze, type Config } from '../policy/config.js'
import { compileRegistryGlob } from '../reference/host-glob.js'
import { tryParseImageReference } from '../reference/parse.js'
import type { CredentialStore } from '../registry/credential-store.js'
import { RegistryTransport } from '../registry/transport.js'
import type { ClusterConnectOptions } from '../cluster/connection.js'
import { clusterLadder } from './cluster-checks.js'
import { formatChecks, formatChecksJson } from './format.js'
import { registryLadder, type DoctorCheck } from './ladder.js'

export interface DoctorCommandOptions {
  readonly image: string
  readonly config: Config
  readonly credentials: CredentialStore
  readonly caFile?: string
  readonly platform?: string
  readonly namespace?: string
  readonly pod?: string
  readonly cluster?: ClusterConnectOptions
  readonly output: 'text' | 'json'
}

export async function runDoctor (opts: DoctorCommandOptions, io: { out: (s: string) => void }): Promise<number> {
  const base = opts.config.pinning
  const hosts = opts.config.registry
  const parsed = tryParseImageReference(opts.image)
  const registry = parsed.ok ? parsed.ref.registry : ''
  const matches = (patterns: readonly string[]): boolean => patterns.map(compileRegistryGlob).some(m => m({ registry, repository: '' }))
  const caFile = opts.caFile ?? hosts.options[registry]?.caFile
  let caPem: string | undefined
  if (caFile !== undefined) {
    try {
      caPem = await readFile(caFile, 'utf8')
    } catch (err) {
      throw new ERR_CONFIG_READ(caFile, (err as NodeJS.ErrnoException).code ?? 'unreadable')
    }
  }
  // Doctor asks about this image: its registry is contacted even where the webhook would not
  // (the allowlist and DNS checks say so), to find everything else that is wrong too.
  const config: Config = deepFreeze({
    ...opts.config,
    pinning: { ...base, enabled: true, skipImages: [] },
    registry: {
      ...hosts,
      hosts: [...hosts.hosts, ...(registry !== '' ? [registry] : [])],
      allowPrivate: [...hosts.allowPrivate, ...(registry !== '' ? [registry] : [])],
      options: caFile !== undefined ? { ...hosts.options, [registry]: { ...hosts.options[registry], caFile } } : hosts.options,
    },
  })
  const stack = await createPinningStack({ config, credentials: opts.credentials })
  const options = hosts.options[registry]
  const policy = { timeoutMs: options?.timeoutMs ?? DEFAULT_HOST_OPTIONS.timeoutMs * 2, retries: 0 }
  let transport: RegistryTransport | undefined
  try {
    const checks: DoctorCheck[] = await registryLadder(opts.image, () => ({
      lookup: (host) => dnsLookup(host, { all: true }),
      allowed: () => matches(hosts.hosts),
      privateAllowed: () => matches(hosts.allowPrivate),
      caPem: () => caPem,
      tokenRealmHosts: (r) => options?.tokenRealmHosts ?? DEFAULT_TOKEN_REALM_HOSTS[r] ?? [],
      credentials: (r) => opts.credentials.lookup(r),
      transport: (r) => (transport ??= new RegistryTransport({ registry: r, ...(caPem !== undefined ? { caPem } : {}), maxConcurrency: 2, allowPrivate: () => true, userAgent: 'pullpin-doctor' })),
      client: stack.client,
      cache: stack.cache,
      policy,
      ...(opts.platform !== undefined ? { platform: opts.platform } : {}),
      format: base.format,
    }))
    if (opts.cluster !== undefined && opts.namespace !== undefined) {
      const { connectCluster, clusterReads } = await import('../cluster/index.js')
      const reads = clusterReads(connectCluster(opts.cluster))
      checks.push(...await clusterLadder(parsed.ok ? parsed.ref : undefined, { reads, config: opts.config, namespace: opts.namespace, ...(opts.pod !== undefined ? { pod: opts.pod } : {}) }))
    }
    io.out(opts.output === 'json' ? formatChecksJson(opts.image, checks) : formatChecks(opts.image, checks))
    return checks.some(c => c.status === 'fail') ? 1 : 0
  } finally {
    transport?.close()
    await stack.close()
  }
}

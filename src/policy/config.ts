// Config is read and validated once at start, then deep-frozen: nothing downstream can
// change policy under a running server, and every module receives it as an argument.
import { readFile } from 'node:fs/promises'
import { Ajv, type ErrorObject } from 'ajv'
import { parse as parseYaml } from 'yaml'
import { ERR_CONFIG_INVALID, ERR_CONFIG_READ } from '../errors.js'
import { configSchema } from './config-schema.js'
import { compileShaTagTemplate } from './sha-tag-templates.js'

export type Mode = 'enforce' | 'audit'

/** A kubernetes.io/dockerconfigjson Secret, copied under the rule's name into opted-in namespaces. */
export interface SecretSourceRef { readonly namespace: string; readonly name: string }

/** Amazon ECR GetAuthorizationToken (src/credentials/ecr.ts). */
export interface EcrSourceConfig {
  readonly region: string
  readonly registryIds?: readonly string[]
  readonly endpoint?: string
}

/** A kubelet credential provider plugin (src/credentials/exec-plugin.ts). */
export interface ExecSourceConfig {
  readonly command: string
  readonly args?: readonly string[]
  readonly env?: Readonly<Record<string, string>>
  readonly images?: readonly string[]
  readonly timeoutSeconds?: number
  readonly defaultCacheDurationSeconds?: number
}

export type PullSecretSource = SecretSourceRef | { readonly ecr: EcrSourceConfig } | { readonly exec: ExecSourceConfig }

export function isSecretSource (source: PullSecretSource | undefined): source is SecretSourceRef {
  return source !== undefined && 'namespace' in source
}

export interface PullSecretRule {
  readonly name: string
  /** Undefined: the secret is injected into every pod. */
  readonly registries?: readonly string[]
  /** Where its credentials come from (see PullSecretSource); undefined: the Secret is the user's business. */
  readonly source?: PullSecretSource
}

export type InjectionMode = 'pod' | 'serviceaccount' | 'both'

/** Settings used only with a cluster connection (src/cluster). */
export interface ClusterConfig {
  readonly resyncSeconds: number
  readonly leaderElection: {
    readonly leaseName: string
    readonly leaseDurationSeconds: number
    readonly renewDeadlineSeconds: number
    readonly retryPeriodSeconds: number
  }
  readonly certificateSecret: string
  readonly certificateValidityDays: number
  readonly renewBeforeDays: number
  /** '' disables caBundle patching. */
  readonly webhookConfigurationName: string
  /** The workload webhook's ValidatingWebhookConfiguration; '' disables its caBundle patching. */
  readonly validatingWebhookConfigurationName: string
  readonly placeholderSecrets: boolean
  /** Copy creation budget of a review (src/policy/budgets.ts). */
  readonly copyCreateBudgetMs: number
}

export interface Config {
  readonly mode: Mode
  readonly failOpen: boolean
  readonly namespaces: {
    /** optIn: labelled namespaces only; all: every namespace but the excluded and the disabled ones. */
    readonly selection: 'optIn' | 'all'
    readonly optInLabel: string
    readonly exclude: readonly string[]
    readonly labels: Readonly<Record<string, Readonly<Record<string, string>>>>
  }
  readonly pullSecrets: readonly PullSecretRule[]
  readonly registry: RegistryConfig
  readonly checks: ChecksConfig
  readonly pinning: PinningConfig
  readonly limits: LimitsConfig
  readonly injection: InjectionMode
  readonly serviceAccounts: readonly string[]
  readonly cluster: ClusterConfig
  readonly reports: ReportsConfig
}

/** Where findings go besides admission warnings (issue 18): Events and PolicyReports. */
export interface ReportsConfig {
  readonly events: boolean
  readonly eventsPerSecond: number
  readonly eventBurst: number
  readonly policyReports: boolean
  readonly policyReportDelaySeconds: number
}

/** Bounds on what one review may cost (issue 11): pod authors control the input. */
export interface LimitsConfig {
  readonly maxImagesPerReview: number
  readonly indexHeadsPerRepository: number
  readonly indexHeadsPerReview: number
}

export type PinFormat = 'tag' | 'digest' | 'tag+digest'

export interface RegistryOptionsConfig {
  readonly caFile?: string
  readonly timeoutMs?: number
  readonly retries?: number
  readonly maxConcurrency?: number
  readonly tokenRealmHosts?: readonly string[]
}

/** Registry access, shared by pinning and the checks (issue 13: no longer a pinning detail). */
export interface RegistryConfig {
  readonly hosts: readonly string[]
  readonly allowPrivate: readonly string[]
  /** Registry lookup budget of a review (src/policy/budgets.ts). */
  readonly lookupBudgetMs: number
  readonly credentials: { readonly dockerConfigFiles: readonly string[] }
  readonly options: Readonly<Record<string, RegistryOptionsConfig>>
  readonly cache: RegistryCacheConfig
}

export interface RegistryCacheConfig {
  readonly ttlSeconds: number
  readonly staleWhileRevalidateSeconds: number
  readonly staleIfErrorSeconds: number
  readonly negativeTtlSeconds: number
  readonly maxEntries: number
  readonly maxRepositories: number
  readonly tagListMinIntervalSeconds: number
  readonly ownerPins: number
  /** Background refreshes only for images looked up within this long (src/cache/tag-cache.ts). */
  readonly activeSeconds: number
  readonly maxImmutableEntries: number
}

export type CheckSetting = 'warn' | 'off'

export interface ChecksConfig {
  readonly exists: 'warn' | 'deny' | 'off'
  readonly pullAccess: CheckSetting
  readonly platforms: CheckSetting
  /** "os/architecture[/variant]", used when no cluster is connected. */
  readonly nodePlatforms: readonly string[]
}

export interface PinningConfig {
  readonly enabled: boolean
  readonly format: PinFormat
  readonly shaTagPatterns: readonly string[]
  /** pinning.shaTagTemplates (src/policy/sha-tag-templates.ts). */
  readonly shaTagTemplates: readonly string[]
  readonly skipImages: readonly string[]
  readonly warmup: readonly string[]
}

/** Whether any part of pullpin talks to registries (and so needs the registry stack and its budget). */
export function usesRegistry (config: Pick<Config, 'pinning' | 'checks' | 'registry'>): boolean {
  const c = config.checks
  if (config.registry.hosts.length === 0) return false
  return config.pinning.enabled || c.exists !== 'off' || c.pullAccess !== 'off' || c.platforms !== 'off'
}

/**
 * Keys that moved (issue 13: registry access became its own section). The project has had no
 * release, so they are refused rather than translated, with a message naming the new key.
 */
const MOVED_KEYS: ReadonlyArray<readonly [section: string, key: string, to: string]> = [
  ['pinning', 'deadlineMs', 'registry.lookupBudgetMs (the registry lookup budget; the whole review\'s deadline is --review-deadline-ms)'],
  ['pinning', 'lookupBudgetMs', 'registry.lookupBudgetMs (pinning and the checks share it)'],
  ['pinning', 'registries', 'registry.hosts'],
  ['pinning', 'allowPrivateRegistries', 'registry.allowPrivate'],
  ['pinning', 'credentials', 'registry.credentials'],
  ['pinning', 'registryOptions', 'registry.options'],
  ['pinning', 'cache', 'registry.cache'],
  ['pinning', 'onMissingImage', 'checks.exists (warn | deny | off)'],
]

function refuseMovedKeys (doc: unknown, source: string): void {
  if (doc === null || typeof doc !== 'object') return
  for (const [section, key, to] of MOVED_KEYS) {
    const value = (doc as Record<string, unknown>)[section]
    if (value !== null && typeof value === 'object' && Object.hasOwn(value, key)) {
      throw new ERR_CONFIG_INVALID(source, `/${section}/${key}: moved to ${to}`)
    }
  }
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, allowUnionTypes: true })
const validate = ajv.compile(configSchema)

/** Parse, default, validate and freeze a config document. `source` names it in errors. */
export function parseConfig (text: string, source = 'config'): Config {
  let doc: unknown
  try {
    doc = parseYaml(text) ?? {}
  } catch (err) {
    throw new ERR_CONFIG_INVALID(source, `YAML: ${(err as Error).message.split('\n')[0]}`)
  }
  return validateConfig(doc, source)
}

export function validateConfig (doc: unknown, source = 'config'): Config {
  // Renamed keys get a message naming the new key rather than a bare "unknown key".
  refuseMovedKeys(doc, source)
  // ajv fills defaults in place: work on a copy so a caller's object is never changed.
  const copy = structuredClone(doc ?? {})
  if (!validate(copy)) {
    throw new ERR_CONFIG_INVALID(source, sourceErrors(copy, validate.errors ?? []).map(describeAjvError).join('; '))
  }
  const config = copy as unknown as Config
  // Helm reads a bare `off` as false (YAML 1.1): both mean off, and only 'off' goes further.
  const checks = config.checks as unknown as Record<string, unknown>
  for (const k of ['exists', 'pullAccess', 'platforms']) if (checks[k] === false) checks[k] = 'off'
  const seen = new Set<string>()
  for (const [i, rule] of config.pullSecrets.entries()) {
    if (seen.has(rule.name)) throw new ERR_CONFIG_INVALID(source, `/pullSecrets/${i}/name: duplicate secret name "${rule.name}"`)
    seen.add(rule.name)
    const from = rule.source
    if (from !== undefined && 'exec' in from && from.exec.images === undefined && !(rule.registries ?? []).some(r => !/[*?]/.test(r))) {
      // The plugin is asked per image, as the kubelet asks it: without a concrete registry there is nothing to ask about.
      throw new ERR_CONFIG_INVALID(source, `/pullSecrets/${i}/source/exec: needs images, or a registries entry without wildcards`)
    }
  }
  const le = config.cluster.leaderElection
  if (le.renewDeadlineSeconds >= le.leaseDurationSeconds || le.retryPeriodSeconds >= le.renewDeadlineSeconds) {
    // client-go's leaderelection rules: otherwise two replicas could both believe they lead.
    throw new ERR_CONFIG_INVALID(source, '/cluster/leaderElection: need retryPeriodSeconds < renewDeadlineSeconds < leaseDurationSeconds')
  }
  if (config.cluster.renewBeforeDays >= config.cluster.certificateValidityDays) {
    throw new ERR_CONFIG_INVALID(source, '/cluster/renewBeforeDays: must be below certificateValidityDays')
  }
  for (const [i, pattern] of config.pinning.shaTagPatterns.entries()) {
    try {
      new RegExp(pattern) // eslint-disable-line no-new
    } catch (err) {
      throw new ERR_CONFIG_INVALID(source, `/pinning/shaTagPatterns/${i}: ${(err as Error).message}`)
    }
  }
  const patterns = config.pinning.shaTagPatterns.map(p => new RegExp(p))
  for (const [i, template] of config.pinning.shaTagTemplates.entries()) {
    const compiled = compileShaTagTemplate(template, patterns)
    if (typeof compiled === 'string') throw new ERR_CONFIG_INVALID(source, `/pinning/shaTagTemplates/${i}: ${JSON.stringify(template)} ${compiled}`)
  }
  return deepFreeze(config)
}

export async function loadConfig (file: string): Promise<Config> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new ERR_CONFIG_READ(file, (err as NodeJS.ErrnoException).code ?? (err as Error).message)
  }
  return parseConfig(text, file)
}

const SOURCE_ONE_OF = '#/properties/pullSecrets/items/properties/source/oneOf'

/**
 * A pullSecrets[].source is one of three shapes (oneOf). ajv reports every shape's complaints; only
 * those of the shape the user wrote (by its key: ecr, exec, else the Secret's namespace/name) help,
 * and a source mixing shapes gets one message saying so.
 */
function sourceErrors (doc: unknown, errors: ErrorObject[]): ErrorObject[] {
  const rules = (doc as { pullSecrets?: unknown }).pullSecrets
  const branchOf = (path: string): number | undefined => {
    const m = /^\/pullSecrets\/(\d+)\/source(?:\/|$)/.exec(path)
    if (m === null || !Array.isArray(rules)) return undefined
    const src = (rules[Number(m[1])] as { source?: unknown } | undefined)?.source
    // Not an object: every shape says "must be object"; once is enough.
    if (src === null || typeof src !== 'object') return 0
    const kinds = [('namespace' in src || 'name' in src) ? 0 : -1, 'ecr' in src ? 1 : -1, 'exec' in src ? 2 : -1].filter(k => k >= 0)
    return kinds.length === 1 ? kinds[0] : kinds.length === 0 ? 0 : -1
  }
  const out: ErrorObject[] = []
  const mixed = new Set<string>()
  for (const e of errors) {
    if (!e.schemaPath.startsWith(SOURCE_ONE_OF)) { out.push(e); continue }
    const branch = branchOf(e.instancePath)
    if (branch === undefined) { out.push(e); continue }
    const sourcePath = /^\/pullSecrets\/\d+\/source/.exec(e.instancePath)![0]
    if (branch === -1) {
      if (!mixed.has(sourcePath)) out.push({ ...e, instancePath: sourcePath, keyword: 'oneOf', message: 'takes exactly one of: namespace and name (a Secret), ecr, exec' })
      mixed.add(sourcePath)
      continue
    }
    if (e.schemaPath === SOURCE_ONE_OF) continue
    if (e.schemaPath.startsWith(`${SOURCE_ONE_OF}/${branch}/`)) out.push(e)
  }
  return out
}

function describeAjvError (e: ErrorObject): string {
  const path = e.instancePath === '' ? '/' : e.instancePath
  if (e.keyword === 'additionalProperties') {
    return `${path}: unknown key "${String(e.params.additionalProperty)}"`
  }
  if (e.keyword === 'enum') {
    return `${path}: must be one of ${(e.params.allowedValues as unknown[]).map(v => JSON.stringify(v)).join(', ')}`
  }
  return `${path}: ${e.message ?? e.keyword}`
}

export function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}

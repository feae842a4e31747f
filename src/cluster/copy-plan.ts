// What the pull-secret objects in a namespace should look like, as pure functions: a copy of a
// source Secret, a filled Carvel placeholder, a ServiceAccount's imagePullSecrets. The
// reconciler and the admission path turn these plans into API calls.
import { createHash } from 'node:crypto'
import type { KubeObject, ObjectMetaLike } from './informer.js'

/** Recommended label (kubernetes.io "Recommended Labels") marking what pullpin created. */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by'
export const MANAGED_BY_VALUE = 'pullpin'
/** "namespace/name" of the Secret a copy (or a filled placeholder) came from. */
export const SOURCE_ANNOTATION = 'pullpin.io/source'
/** sha256 of the copied .dockerconfigjson, so a rotation is visible without reading data. */
export const CONTENT_HASH_ANNOTATION = 'pullpin.io/content-hash'
/** On a ServiceAccount: the imagePullSecrets pullpin added (and may therefore remove). */
export const SERVICE_ACCOUNT_ANNOTATION = 'pullpin.io/image-pull-secrets'
/** secretgen-controller's placeholder marker (carvel.dev/secretgen-controller, SecretExport docs). */
export const CARVEL_PLACEHOLDER_ANNOTATION = 'secretgen.carvel.dev/image-pull-secret'
export const DOCKER_CONFIG_JSON_TYPE = 'kubernetes.io/dockerconfigjson'
export const DOCKER_CONFIG_JSON_KEY = '.dockerconfigjson'

export interface SecretLike extends KubeObject {
  metadata?: ObjectMetaLike
  type?: string
  data?: { [k: string]: string }
}

export interface ServiceAccountLike extends KubeObject {
  imagePullSecrets?: Array<{ name?: string }>
}

export interface SourceRef { readonly namespace: string; readonly name: string }

export type SourceState =
  | { readonly kind: 'ready'; readonly source: string; readonly data: string; readonly hash: string }
  | { readonly kind: 'missing'; readonly source: string }
  | { readonly kind: 'invalid'; readonly source: string; readonly reason: string }

export const sourceKey = (ref: SourceRef): string => `${ref.namespace}/${ref.name}`

/** Hash of base64 data as the bytes it decodes to. */
export function contentHash (base64: string): string {
  return `sha256:${createHash('sha256').update(Buffer.from(base64, 'base64')).digest('hex')}`
}

/** Only dockerconfigjson Secrets are copied: anything else is reported and skipped. */
export function sourceState (ref: SourceRef, secret: SecretLike | undefined): SourceState {
  const source = sourceKey(ref)
  if (secret === undefined) return { kind: 'missing', source }
  if (secret.type !== DOCKER_CONFIG_JSON_TYPE) return { kind: 'invalid', source, reason: `type is ${secret.type ?? 'unset'}, not ${DOCKER_CONFIG_JSON_TYPE}` }
  const data = secret.data?.[DOCKER_CONFIG_JSON_KEY]
  if (data === undefined || data === '') return { kind: 'invalid', source, reason: `no ${DOCKER_CONFIG_JSON_KEY} key` }
  return { kind: 'ready', source, data, hash: contentHash(data) }
}

export function isManagedByPullpin (obj: KubeObject | undefined): boolean {
  return obj?.metadata?.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE
}

/** A pull-secret copy (not any other Secret pullpin manages, such as its TLS Secret). */
export function isPullpinCopy (secret: SecretLike): boolean {
  return isManagedByPullpin(secret) && secret.type === DOCKER_CONFIG_JSON_TYPE && secret.metadata?.annotations?.[SOURCE_ANNOTATION] !== undefined
}

export function isPlaceholder (secret: SecretLike): boolean {
  return secret.type === DOCKER_CONFIG_JSON_TYPE && secret.metadata?.annotations?.[CARVEL_PLACEHOLDER_ANNOTATION] !== undefined
}

export function desiredCopy (name: string, namespace: string, source: Extract<SourceState, { kind: 'ready' }>): SecretLike & { apiVersion: string; kind: string } {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name,
      namespace,
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE },
      annotations: { [SOURCE_ANNOTATION]: source.source, [CONTENT_HASH_ANNOTATION]: source.hash },
    },
    type: DOCKER_CONFIG_JSON_TYPE,
    data: { [DOCKER_CONFIG_JSON_KEY]: source.data },
  }
}

export type CopyAction =
  | { readonly kind: 'none' }
  | { readonly kind: 'create'; readonly body: SecretLike }
  /** Full replacement carrying the existing resourceVersion (optimistic concurrency). */
  | { readonly kind: 'update'; readonly body: SecretLike; readonly reason: 'rotated' | 'drifted' }
  | { readonly kind: 'delete'; readonly uid: string | undefined; readonly resourceVersion: string | undefined }
  /** A Secret of that name exists and is not pullpin's: never touched, reported. */
  | { readonly kind: 'conflict'; readonly existing: SecretLike }

export interface CopyPlanInput {
  readonly name: string
  readonly namespace: string
  /** The Secret copied; undefined for credentials pullpin fetches itself. */
  readonly sourceRef: SourceRef | undefined
  readonly source: SourceState
  /** The namespace is opted in (enforce) and active. */
  readonly wanted: boolean
  readonly existing: SecretLike | undefined
}

/** The source Secret itself, in its own namespace under the same name, is used as is. */
export function isSourceItself (name: string, namespace: string, ref: SourceRef | undefined): boolean {
  return ref !== undefined && namespace === ref.namespace && name === ref.name
}

export function planCopy (input: CopyPlanInput): CopyAction {
  const { name, namespace, source, wanted, existing } = input
  if (isSourceItself(name, namespace, input.sourceRef)) return { kind: 'none' }
  if (existing !== undefined && !isManagedByPullpin(existing)) return wanted ? { kind: 'conflict', existing } : { kind: 'none' }
  if (!wanted) {
    return existing === undefined
      ? { kind: 'none' }
      : { kind: 'delete', uid: existing.metadata?.uid, resourceVersion: existing.metadata?.resourceVersion }
  }
  // A missing or invalid source keeps the last good copy: pods keep pulling while it is fixed.
  if (source.kind !== 'ready') return { kind: 'none' }
  const desired = desiredCopy(name, namespace, source)
  if (existing === undefined) return { kind: 'create', body: desired }
  const annotations = existing.metadata?.annotations ?? {}
  const sameData = existing.data?.[DOCKER_CONFIG_JSON_KEY] === source.data && Object.keys(existing.data ?? {}).length === 1
  const sameMeta = annotations[SOURCE_ANNOTATION] === source.source && annotations[CONTENT_HASH_ANNOTATION] === source.hash
  if (sameData && sameMeta && existing.type === DOCKER_CONFIG_JSON_TYPE) return { kind: 'none' }
  return {
    kind: 'update',
    reason: annotations[CONTENT_HASH_ANNOTATION] !== source.hash ? 'rotated' : 'drifted',
    body: {
      ...desired,
      metadata: {
        ...existing.metadata,
        labels: { ...existing.metadata?.labels, [MANAGED_BY_LABEL]: MANAGED_BY_VALUE },
        annotations: { ...annotations, [SOURCE_ANNOTATION]: source.source, [CONTENT_HASH_ANNOTATION]: source.hash },
      },
    },
  }
}

/**
 * The credentials of every ready source merged into one dockerconfigjson, for Carvel
 * placeholders (secretgen-controller merges the exported secrets the same way: one `auths` map).
 * For a registry key present in several sources, the first in config order wins.
 */
export function mergeDockerConfigs (sources: ReadonlyArray<Extract<SourceState, { kind: 'ready' }>>): { data: string; hash: string; sources: string[]; skipped: string[] } {
  // No prototype: a registry key is data, whatever its name ("constructor", "__proto__" …), and is
  // never looked up through, nor assigned into, Object.prototype.
  const auths = Object.create(null) as Record<string, unknown>
  const used: string[] = []
  const skipped: string[] = []
  for (const s of sources) {
    let parsed: unknown
    try {
      parsed = JSON.parse(Buffer.from(s.data, 'base64').toString('utf8'))
    } catch {
      skipped.push(s.source)
      continue
    }
    const a = (parsed as { auths?: unknown } | null)?.auths
    if (a === null || typeof a !== 'object' || Array.isArray(a)) { skipped.push(s.source); continue }
    for (const [key, value] of Object.entries(a as Record<string, unknown>)) if (!Object.hasOwn(auths, key)) auths[key] = value
    used.push(s.source)
  }
  const data = Buffer.from(JSON.stringify({ auths })).toString('base64')
  return { data, hash: contentHash(data), sources: used, skipped }
}

export type PlaceholderAction = { readonly kind: 'none' } | { readonly kind: 'update'; readonly body: SecretLike }

export function planPlaceholder (secret: SecretLike, merged: { data: string; hash: string; sources: readonly string[] }): PlaceholderAction {
  if (!isPlaceholder(secret) || merged.sources.length === 0) return { kind: 'none' }
  if (secret.data?.[DOCKER_CONFIG_JSON_KEY] === merged.data) return { kind: 'none' }
  return {
    kind: 'update',
    body: {
      ...secret,
      metadata: {
        ...secret.metadata,
        annotations: { ...secret.metadata?.annotations, [SOURCE_ANNOTATION]: merged.sources.join(','), [CONTENT_HASH_ANNOTATION]: merged.hash },
      },
      data: { ...secret.data, [DOCKER_CONFIG_JSON_KEY]: merged.data },
    },
  }
}

export type ServiceAccountAction =
  | { readonly kind: 'none' }
  | { readonly kind: 'patch'; readonly imagePullSecrets: Array<{ name: string }>; readonly managed: readonly string[]; readonly added: readonly string[]; readonly removed: readonly string[] }

/**
 * A ServiceAccount's imagePullSecrets with `desired` present. pullpin only removes names it added
 * itself (recorded in SERVICE_ACCOUNT_ANNOTATION); names the user put there stay, and a name the
 * user had before pullpin wanted it is not recorded as pullpin's.
 */
export function planServiceAccount (sa: ServiceAccountLike, desired: readonly string[]): ServiceAccountAction {
  const current = (sa.imagePullSecrets ?? []).map(r => r.name ?? '')
  const recorded = (sa.metadata?.annotations?.[SERVICE_ACCOUNT_ANNOTATION] ?? '').split(',').filter(n => n !== '')
  const want = new Set(desired)
  const removed = recorded.filter(n => !want.has(n) && current.includes(n))
  const added = desired.filter(n => !current.includes(n))
  const managed = [...recorded.filter(n => want.has(n) && current.includes(n)), ...added]
  const next = [...current.filter(n => !removed.includes(n)), ...added]
  const sameList = next.length === current.length && next.every((n, i) => n === current[i])
  const sameRecord = managed.length === recorded.length && managed.every((n, i) => n === recorded[i])
  if (sameList && sameRecord) return { kind: 'none' }
  return { kind: 'patch', imagePullSecrets: next.map(name => ({ name })), managed, added, removed }
}

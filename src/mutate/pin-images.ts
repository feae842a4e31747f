// Step: rewrite unpinned image tags to the immutable SHA tag CI published for the same digest
// (or to the digest, by configuration). "Verified" means the SHA tag's digest was compared with
// the tag's digest at the registry, both through the tag cache. Registry trouble never blocks a
// pod: past the lookup budget (pinning.lookupBudgetMs, cut to what the review deadline leaves; see
// src/policy/budgets.ts) or on an error the image stays as written and a warning says why.
import type { PinFormat, PinningConfig, RegistryConfig } from '../policy/config.js'
import { ORIGINAL_IMAGES_ANNOTATION } from '../policy/annotations.js'
import { compileGlobs } from '../policy/glob.js'
import { compileRegistryGlob, normalizeRegistryKey } from '../reference/host-glob.js'
import { formatImageReference, tryParseImageReference, type ImageReference, type ReferenceParse } from '../reference/parse.js'
import type { IndexBudget, TagCache, TagResolution } from '../cache/tag-cache.js'
import type { OwnerPins } from '../cache/owner-pins.js'
import { ERR_REGISTRY_BAD_RESPONSE, isCodedError } from '../errors.js'
import { lookupTime, type LookupTime } from './lookup-budget.js'
import { deadlineReason, type MutationContext, type MutationStep } from './mutator.js'
import { forEachChunked } from './chunks.js'
import { IMAGE_MEMO_SIZE, memoize } from './memoize.js'
import { setImageAt, type ImageSite, type Pod } from './pod.js'

export type UnpinnedReason = 'invalid' | 'registry-not-allowed' | 'no-sha-tag' | 'not-found' | 'registry-error' | 'deadline'

export interface PinMetrics {
  pinned (format: PinFormat, source: 'registry' | 'cache' | 'owner' | 'stale'): void
  unpinned (reason: UnpinnedReason): void
}

export interface PinningDeps {
  readonly config: PinningConfig
  /** registry.hosts (the only registries looked up) and registry.lookupBudgetMs. */
  readonly registry: Pick<RegistryConfig, 'hosts' | 'lookupBudgetMs'>
  readonly cache: TagCache
  readonly ownerPins: OwnerPins
  readonly metrics?: PinMetrics
  /** SHA-tag HEADs one review may start (limits.indexHeadsPerReview); unbounded when undefined. */
  readonly indexHeadsPerReview?: number
}

type Decision =
  | { readonly kind: 'keep' }
  | { readonly kind: 'pin'; readonly to: string; readonly verified: boolean; readonly source: 'registry' | 'cache' | 'owner' | 'stale'; readonly digest?: string }
  // No warning: another step reports it (a missing image: the exists check) or nobody should (issue 13).
  | { readonly kind: 'unpinned'; readonly reason: UnpinnedReason; readonly warning?: string; readonly detail?: string }

/** An image pinning applies to: what the cache or the registry must answer. */
interface Candidate { readonly kind: 'candidate'; readonly ref: ImageReference; readonly tag: string }

const KEEP: Decision = { kind: 'keep' }

export function createPinningStep (deps: PinningDeps): MutationStep {
  const { config, cache, ownerPins, metrics } = deps
  const { hosts, lookupBudgetMs } = deps.registry
  const allowed = hosts.map(compileRegistryGlob)
  // Matched once per distinct registry (per name when an entry has a path), not once per image:
  // a huge pod names thousands of images on a few registries.
  const byName = hosts.some(p => normalizeRegistryKey(p).includes('/'))
  const allowedFor = memoize(IMAGE_MEMO_SIZE, (_key: string, ref?: ImageReference) => ({ ok: allowed.some(m => m(ref!)) }))
  const isAllowed = (ref: ImageReference): boolean => allowedFor(byName ? ref.name : ref.registry, ref).ok
  const skipped = compileGlobs(config.skipImages)

  /**
   * What the image string alone decides (parse, SHA tag, skipImages, registry.hosts), made
   * once per distinct image: the pods of one Deployment repeat the same few images, and this is
   * most of a warm review's pin work otherwise (BENCHMARKS.md).
   */
  const analyze = memoize(IMAGE_MEMO_SIZE, (image: string, parsed?: ReferenceParse): Decision | Candidate => {
    // The mutator parsed every image of the review once (MutationContext.references).
    const p = parsed ?? tryParseImageReference(image)
    // The reference check reports it (with the fix), whether pinning is on or not.
    if (!p.ok) return { kind: 'unpinned', reason: 'invalid' }
    const ref = p.ref
    if (ref.digest !== undefined) return KEEP
    const tag = ref.tag ?? 'latest'
    if (cache.isShaTag(tag)) return KEEP
    if (skipped(ref.name) || skipped(`${ref.name}:${tag}`)) return KEEP
    // Outside registry.hosts: left alone without a warning (every nginx pod would get one); counted.
    if (!isAllowed(ref)) return { kind: 'unpinned', reason: 'registry-not-allowed' }
    return { kind: 'candidate', ref, tag }
  })

  /** The time a review's lookups got: which budget it was decides whom a timeout warning names. */
  type TimeBudget = LookupTime

  /** Decide from what is already known (no I/O), or return the candidate the registry must answer. */
  function decide (image: string, parsed: ReferenceParse | undefined, ownerUid: string | undefined): Decision | Candidate {
    const known = analyze(image, parsed)
    if (known.kind !== 'candidate') return known
    const { ref, tag } = known
    if (ownerUid !== undefined) {
      const remembered = ownerPins.get(ownerUid, image)
      if (remembered !== undefined) return { kind: 'pin', to: remembered.to, verified: remembered.verified, source: 'owner' }
    }
    const hit = cache.peekTag(ref, tag)
    if (hit !== undefined && (!pinsDigest || cache.peekTag(ref, hit.digest) !== undefined)) {
      const fromIndex = config.format === 'digest' ? [] : cache.peekShaTags(ref, hit.digest)
      if (fromIndex !== undefined) return pinFor(image, ref, hit, fromIndex, 'cache')
    }
    return known
  }

  // A digest written into the pod must exist: a tag's HEAD only reports a digest (a broken or
  // lying registry may report one it does not serve), so formats that write the digest ask for the
  // manifest by that digest once (cached like any lookup) before using it. The tag format needs no
  // extra request: the chosen SHA tag's own HEAD already answered with the same digest.
  const pinsDigest = config.format !== 'tag'

  async function verifyDigest (ref: ImageReference, tag: string, digest: string, signal: AbortSignal): Promise<void> {
    try {
      await cache.resolveTag(ref, digest, signal)
    } catch (err) {
      if (!isCodedError(err, 'PULLPIN_REGISTRY_NOT_FOUND')) throw err
      throw new ERR_REGISTRY_BAD_RESPONSE(ref.registry, `tag ${tag} points at ${digest}, which the registry does not serve`)
    }
  }

  async function lookup (image: string, ref: ImageReference, tag: string, time: TimeBudget, budget: IndexBudget): Promise<Decision> {
    const { signal } = time
    try {
      const resolved = await cache.resolveTag(ref, tag, signal)
      if (pinsDigest) await verifyDigest(ref, tag, resolved.digest, signal)
      const shaTags = config.format === 'digest' ? [] : await cache.shaTagsFor(ref, resolved.digest, signal, budget)
      return pinFor(image, ref, resolved, shaTags, resolved.stale ? 'stale' : 'registry')
    } catch (err) {
      if (signal.aborted) {
        // Name the budget that ran out: the lookup budget, or the review deadline it was cut to
        // (short: the API server cuts warnings at 120 characters).
        return unpinned('deadline', time.byReview
          ? `pullpin: ${image} not pinned: lookup cut by the review deadline (${time.reviewMs} ms)`
          : `pullpin: ${image} not pinned: registry.lookupBudgetMs (${time.ms} ms) ran out`)
      }
      // The exists check (checks.exists) reports a missing image, and denies it when configured.
      if (isCodedError(err, 'PULLPIN_REGISTRY_NOT_FOUND')) return { kind: 'unpinned', reason: 'not-found' }
      return unpinned('registry-error', `pullpin: ${image} not pinned: ${shortReason(err)}`, `${image}: ${(err as Error).message}`)
    }
  }

  function pinFor (image: string, ref: ImageReference, resolved: TagResolution, shaTags: readonly string[], source: 'registry' | 'cache' | 'stale'): Decision {
    const sha = shaTags[0]
    switch (config.format) {
      case 'digest':
        return { kind: 'pin', to: formatImageReference(ref, { digest: resolved.digest }), verified: true, source, digest: resolved.digest }
      case 'tag+digest':
        return { kind: 'pin', to: formatImageReference(ref, sha !== undefined ? { tag: sha, digest: resolved.digest } : { digest: resolved.digest }), verified: true, source, digest: resolved.digest }
      case 'tag':
        if (sha === undefined) {
          return unpinned('no-sha-tag', `pullpin: ${image} not pinned: no SHA tag has its digest ${resolved.digest.slice(0, 19)}…`)
        }
        return { kind: 'pin', to: formatImageReference(ref, { tag: sha }), verified: true, source, digest: resolved.digest }
    }
  }

  return {
    name: 'pin-images',
    operations: ['CREATE', 'UPDATE'],
    async run (ctx) {
      if (!config.enabled) return
      const sites = sitesToPin(ctx)
      if (sites.length === 0) return
      const ownerUid = ctx.operation === 'CREATE' ? controllerUid(ctx.pod) : undefined
      // The lookups' signal is made by the first image that needs the registry (all decisions are
      // taken in this same tick, so it still starts now): a pod answered from the cache does not
      // pay for it (BENCHMARKS.md, "Profile of the hot path, and what changed").
      // The lookups stop REVIEW_MARGIN_MS before the review's deadline at the latest, so that a slow
      // registry ends as an unpinned image with a warning, never as the review's deadline (which
      // failOpen: false turns into a denial). The start-time check makes this cut the exception.
      // One budget for the review, shared with the checks (lookup-budget.ts).
      const time = (): TimeBudget => lookupTime(ctx, lookupBudgetMs)
      let indexBudget: IndexBudget | undefined
      const budget = (): IndexBudget => (indexBudget ??= { remaining: deps.indexHeadsPerReview ?? Infinity, incomplete: new Set() })
      // One decision per distinct image: the containers of a pod repeat images. Those the cache
      // cannot answer are looked up together, and waited for once.
      const decisions = new Map<string, Decision>()
      const lookups: Array<Promise<void>> = []
      const decideAt = (i: number): void => {
        const image = sites[i]!.image
        if (decisions.has(image)) return
        const d = decide(image, ctx.references.get(image), ownerUid)
        if (d.kind !== 'candidate') { decisions.set(image, d); return }
        decisions.set(image, KEEP) // until the lookup answers
        lookups.push(lookup(image, d.ref, d.tag, time(), budget()).then((looked) => { decisions.set(image, looked) }))
      }
      // Past the review's deadline a huge pod's remaining images start no lookup (the review is answered).
      await forEachChunked(sites.length, decideAt, () => deadlineReason(ctx))
      if (lookups.length > 0) {
        await Promise.all(lookups)
        // An incomplete index may have cost the pod its pin: say so once per repository.
        for (const repo of indexBudget?.incomplete ?? []) {
          ctx.warnings.push(`pullpin: SHA-tag index of ${repo} incomplete: HEAD budget reached (limits.indexHeadsPer*)`)
        }
      }
      await apply(ctx, sites, decisions, ownerUid)
    },
  }

  async function apply (ctx: MutationContext, sites: readonly ImageSite[], decisions: ReadonlyMap<string, Decision>, ownerUid: string | undefined): Promise<void> {
    let originals: Record<string, string> | undefined
    const one = (i: number): void => {
      const site = sites[i]!
      const d = decisions.get(site.image)!
      if (d.kind === 'keep') return
      if (d.kind === 'unpinned') {
        if (d.warning !== undefined) ctx.warnings.push(d.warning)
        if (d.detail !== undefined) ctx.diagnostics.push(d.detail)
        metrics?.unpinned(d.reason)
        return
      }
      if (d.to === site.image) return
      setImageAt(ctx.pod, site, d.to)
      // No prototype: a container named "__proto__" (webhooks run before validation) stays a key.
      ;(originals ??= Object.create(null) as Record<string, string>)[site.container] = site.image
      ctx.changes.push({ kind: 'pin', field: site.field, container: site.container, from: site.image, to: d.to, verified: d.verified, ...(d.digest !== undefined && d.source !== 'stale' ? { digest: d.digest } : {}) })
      metrics?.pinned(config.format, d.source)
      if (d.source === 'stale') ctx.warnings.push(`pullpin: ${site.image} pinned from the last known digest; the registry did not answer`)
      // Remember the first pin per owner, but not for what audit mode or a dry run only looked at.
      if (ownerUid !== undefined && ctx.mode === 'enforce' && !ctx.dryRun) ownerPins.remember(ownerUid, site.image, { to: d.to, verified: d.verified })
    }
    // …and are not applied: a pod already admitted unchanged leaves no pin in memory or metrics.
    await forEachChunked(sites.length, one, () => deadlineReason(ctx))
    if (originals !== undefined && !recordOriginals(ctx.pod, originals)) {
      ctx.warnings.push(`pullpin: ${ORIGINAL_IMAGES_ANNOTATION} not written: the pod's annotations would pass the API server's 256 KiB`)
    }
  }
}

// Warnings must stay under 120 characters (the API server truncates longer ones), so registry
// failures are summed up by code; the full message goes to the log as a diagnostic.
const SHORT_REASONS: Readonly<Record<string, string>> = {
  PULLPIN_REGISTRY_UNAUTHORIZED: 'refused the credentials; check the pull secret',
  PULLPIN_REGISTRY_UNAVAILABLE: 'unavailable',
  PULLPIN_REGISTRY_TIMEOUT: 'timed out',
  PULLPIN_REGISTRY_PRIVATE_ADDRESS: 'resolves to a private address (registry.allowPrivate)',
  PULLPIN_REGISTRY_REALM_REFUSED: 'token realm refused (registry.options.tokenRealmHosts)',
  PULLPIN_REGISTRY_BAD_RESPONSE: 'sent a bad response',
  PULLPIN_DIGEST_MISMATCH: 'sent a digest that does not match the manifest',
  PULLPIN_REGISTRY_NOT_ALLOWED: 'is not in registry.hosts',
}

export function shortReason (err: unknown): string {
  const code = (err as { code?: string }).code
  const short = code !== undefined ? SHORT_REASONS[code] : undefined
  return short !== undefined ? `registry ${short}` : `lookup failed: ${(err as Error).message}`
}

function unpinned (reason: UnpinnedReason, warning: string, detail?: string): Decision {
  return { kind: 'unpinned', reason, warning, ...(detail !== undefined ? { detail } : {}) }
}

/**
 * CREATE: every image. UPDATE: only images that are new or changed against oldObject, since the API
 * server allows image changes on update and pullpin must not rewrite what was already admitted.
 * pods/ephemeralcontainers: only the ephemeral containers (the only field that subresource may change).
 */
function sitesToPin (ctx: MutationContext): readonly ImageSite[] {
  if (ctx.operation === 'CREATE') return ctx.images
  // On UPDATE image volumes cannot change (the API server refuses volume changes): none to pin.
  const old = new Map<string, string | undefined>()
  for (const field of ['initContainers', 'containers', 'ephemeralContainers'] as const) {
    for (const c of ctx.oldObject?.spec?.[field] ?? []) old.set(`${field}/${c.name}`, c.image)
  }
  return ctx.images.filter(site => site.field !== 'volumes' &&
    (ctx.subResource !== 'ephemeralcontainers' || site.field === 'ephemeralContainers') &&
    old.get(`${site.field}/${site.container}`) !== site.image)
}

function controllerUid (pod: Pod): string | undefined {
  return pod.metadata?.ownerReferences?.find(o => o.controller === true)?.uid
}

/**
 * The API server refuses an object whose annotations (keys and values) add up to more than this
 * (apimachinery's ValidateAnnotationsSize, TotalAnnotationSizeLimitB).
 */
export const ANNOTATIONS_MAX_BYTES = 256 * 1024

/**
 * Records what the user wrote in the pullpin.io/original-images annotation. false, and nothing
 * written, when the record would take the pod's annotations past the API server's limit: the pins
 * stay (the pod can be created), the record is what gives way.
 */
function recordOriginals (pod: Pod, originals: Record<string, string>): boolean {
  const annotations = pod.metadata?.annotations ?? {}
  const written = annotations[ORIGINAL_IMAGES_ANNOTATION]
  let previous: Record<string, string> | undefined
  if (written !== undefined) {
    try {
      const parsed = JSON.parse(written) as unknown
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) previous = parsed as Record<string, string>
    } catch {
      // A hand-edited, unparsable annotation is replaced rather than kept half-valid.
    }
  }
  // Containers pinned earlier keep their entry; a container re-pinned on UPDATE records what the user wrote this time.
  const record = JSON.stringify(previous === undefined ? originals : { ...previous, ...originals })
  let size = Buffer.byteLength(ORIGINAL_IMAGES_ANNOTATION) + Buffer.byteLength(record)
  for (const [k, v] of Object.entries(annotations)) {
    if (k !== ORIGINAL_IMAGES_ANNOTATION) size += Buffer.byteLength(k) + (typeof v === 'string' ? Buffer.byteLength(v) : 0)
  }
  if (size > ANNOTATIONS_MAX_BYTES) return false
  const meta = pod.metadata ?? (pod.metadata = {})
  ;(meta.annotations ?? (meta.annotations = {}))[ORIGINAL_IMAGES_ANNOTATION] = record
  return true
}

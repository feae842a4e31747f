// Step: rewrite unpinned image tags to the immutable SHA tag CI published for the same digest
// (or to the digest, by configuration). "Verified" means the SHA tag's digest was compared with
// the tag's digest at the registry, both through the tag cache. Registry trouble never blocks a
// pod: past the lookup budget (registry.lookupBudgetMs, cut to what the review deadline leaves; see
// src/policy/budgets.ts) or on an error the image stays as written and a warning says why.
import type { PinFormat, PinningConfig, RegistryConfig } from '../policy/config.js'
import { PINS_ANNOTATION } from '../policy/annotations.js'
import { compileGlobs } from '../policy/glob.js'
import { compileRegistryGlob, normalizeRegistryKey } from '../reference/host-glob.js'
import { formatImageReference, tryParseImageReference, type ImageReference, type ReferenceParse } from '../reference/parse.js'
import type { IndexBudget, TagCache, TagResolution } from '../cache/tag-cache.js'
import { REVISION_LABELS, type PinRecord, type PinSource, type Revision, type RolloutPins } from '../cache/rollout-pins.js'
import { REVISION_KEY, type RevisionPins } from '../cache/revision-pins.js'
import { ERR_REGISTRY_BAD_RESPONSE, isCodedError } from '../errors.js'
import { lookupTime, type LookupTime } from './lookup-budget.js'
import { deadlineReason, type MutationContext, type MutationStep } from './mutator.js'
import { forEachChunked } from './chunks.js'
import { IMAGE_MEMO_SIZE, memoize } from './memoize.js'
import { setImageAt, type ImageSite, type Pod } from './pod.js'

export type UnpinnedReason = 'invalid' | 'registry-not-allowed' | 'no-sha-tag' | 'not-found' | 'registry-error' | 'deadline'

/** Where a pin's answer came from (pullpin_images_pinned_total{source}). */
export type PinnedFrom = 'registry' | 'cache' | 'owner' | 'stale'

export interface PinMetrics {
  /** `n` images (1 by default) of one review pinned from one source. */
  pinned (format: PinFormat, source: PinnedFrom, n?: number): void
  unpinned (reason: UnpinnedReason): void
  /** Once per pinned pod of a rollout: where its pins came from (src/cache/rollout-pins.ts). */
  pins (source: PinSource): void
}

export interface PinningDeps {
  readonly config: PinningConfig
  /** registry.hosts (the only registries looked up) and registry.lookupBudgetMs. */
  readonly registry: Pick<RegistryConfig, 'hosts' | 'lookupBudgetMs'>
  readonly cache: TagCache
  readonly rolloutPins: RolloutPins
  readonly metrics?: PinMetrics
  /** SHA-tag HEADs one review may start (limits.indexHeadsPerReview); unbounded when undefined. */
  readonly indexHeadsPerReview?: number
  /** The revision cold path (src/cache/revision-pins.ts), asked before the SHA-tag index. */
  readonly revisions?: RevisionPins
}

type Decision =
  | { readonly kind: 'keep' }
  | { readonly kind: 'pin'; readonly to: string; readonly verified: boolean; readonly source: PinnedFrom; readonly digest?: string }
  // No warning: another step reports it (a missing image: the exists check) or nobody should (issue 13).
  | { readonly kind: 'unpinned'; readonly reason: UnpinnedReason; readonly warning?: string; readonly detail?: string }

/** An image pinning applies to: what the cache or the registry must answer. */
interface Candidate { readonly kind: 'candidate'; readonly ref: ImageReference; readonly tag: string }

const KEEP: Decision = { kind: 'keep' }

/** Revision lookup errors about the documents themselves, after which the index is still worth asking. */
const DOCUMENT_ERRORS = ['PULLPIN_REGISTRY_BAD_RESPONSE', 'PULLPIN_DIGEST_MISMATCH', 'PULLPIN_REGISTRY_NOT_FOUND']

export function createPinningStep (deps: PinningDeps): MutationStep {
  const { config, cache, rolloutPins, metrics, revisions } = deps
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
  function decide (image: string, parsed: ReferenceParse | undefined, revision: Revision | undefined): Decision | Candidate {
    const known = analyze(image, parsed)
    if (known.kind !== 'candidate') return known
    const { ref, tag } = known
    if (revision !== undefined) {
      const remembered = rolloutPins.get(revision, image)
      if (remembered !== undefined) return { kind: 'pin', ...remembered, source: 'owner' }
    }
    const hit = cache.peekTag(ref, tag)
    if (hit !== undefined && (!pinsDigest || cache.peekTag(ref, hit.digest) !== undefined)) {
      const fromIndex = config.format === 'digest' ? [] : revisions?.peek(ref, hit.digest) ?? cache.peekShaTags(ref, hit.digest)
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

  /**
   * SHA tags for the digest: what the index already knows, else the revision the image names (a few
   * requests), else the index (listing the repository, within its budget). `hint` is set when the
   * index had to be asked: how the image could have been pinned cheaply.
   */
  async function shaTagsOf (ref: ImageReference, digest: string, signal: AbortSignal, budget: IndexBudget): Promise<{ tags: readonly string[], hint?: string }> {
    const known = cache.peekShaTags(ref, digest)
    if (revisions === undefined || (known !== undefined && known.length > 0)) return { tags: await cache.shaTagsFor(ref, digest, signal, budget) }
    let byRevision
    try {
      byRevision = await revisions.lookup(ref, digest, signal)
    } catch (err) {
      // A document pullpin cannot read (a Docker schema1 manifest, a broken config) leaves the
      // index; a registry that is down or refusing would fail the index as well.
      if (signal.aborted || !DOCUMENT_ERRORS.some(code => isCodedError(err, code))) throw err
      return { tags: await cache.shaTagsFor(ref, digest, signal, budget), hint: `its manifest or config could not be read (${(err as { code: string }).code})` }
    }
    if (byRevision.kind === 'found') return { tags: [byRevision.tag] }
    const hint = byRevision.kind === 'no-revision'
      ? `label it ${REVISION_KEY} to pin it in a few requests`
      : `no pinning.shaTagTemplates tag of revision ${byRevision.revision.slice(0, 12)} has its digest`
    return { tags: await cache.shaTagsFor(ref, digest, signal, budget), hint }
  }

  async function lookup (image: string, ref: ImageReference, tag: string, time: TimeBudget, budget: IndexBudget, hints: Map<string, string>): Promise<Decision> {
    const { signal } = time
    try {
      const resolved = await cache.resolveTag(ref, tag, signal)
      if (pinsDigest) await verifyDigest(ref, tag, resolved.digest, signal)
      if (config.format === 'digest') return pinFor(image, ref, resolved, [], resolved.stale ? 'stale' : 'registry')
      const { tags, hint } = await shaTagsOf(ref, resolved.digest, signal, budget)
      const decision = pinFor(image, ref, resolved, tags, resolved.stale ? 'stale' : 'registry')
      // An image the index could not pin (or only partly searched) says how it would pin cheaply.
      if (hint !== undefined && (decision.kind !== 'pin' || budget.incomplete.has(`${ref.registry}/${ref.repository}`))) {
        hints.set(`${ref.registry}/${ref.repository}`, hint)
      }
      return decision
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
      const revision = ctx.operation === 'CREATE' ? revisionOf(ctx.pod, ctx.namespace) : undefined
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
      // A revision this replica does not know yet: ask the cluster for a pod of it already admitted
      // (once per revision; half the lookup time at most, so a slow API server leaves the registry
      // the rest), before anything is decided from the registry.
      let pinSource: PinSource | undefined
      if (revision !== undefined) {
        if (rolloutPins.has(revision)) {
          pinSource = 'memory'
        } else {
          const t = time()
          pinSource = await rolloutPins.load(revision, AbortSignal.any([t.signal, AbortSignal.timeout(Math.floor(t.ms / 2))]))
        }
      }
      const hints = new Map<string, string>()
      // One decision per distinct image: the containers of a pod repeat images. Those the cache
      // cannot answer are looked up together, and waited for once.
      const decisions = new Map<string, Decision>()
      const lookups: Array<Promise<void>> = []
      const decideAt = (i: number): void => {
        const image = sites[i]!.image
        if (decisions.has(image)) return
        const d = decide(image, ctx.references.get(image), revision)
        if (d.kind !== 'candidate') { decisions.set(image, d); return }
        decisions.set(image, KEEP) // until the lookup answers
        lookups.push(lookup(image, d.ref, d.tag, time(), budget(), hints).then((looked) => { decisions.set(image, looked) }))
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
      await apply(ctx, sites, decisions, revision, pinSource)
      // After the images' own warnings: how the repositories that needed the index would pin cheaply.
      for (const [repo, hint] of hints) ctx.warnings.push(`pullpin: ${repo}: ${hint}`)
    },
  }

  async function apply (ctx: MutationContext, sites: readonly ImageSite[], decisions: ReadonlyMap<string, Decision>, revision: Revision | undefined, pinSource: PinSource | undefined): Promise<void> {
    // pullpin.io/pins, the one record of what was pinned (the patch of every pinned pod carries
    // it: BENCHMARKS.md "One pin per rollout"). Not in audit mode, whose draft is never sent.
    const recordPins = ctx.mode === 'enforce'
    let pins: Record<string, PinRecord> | undefined
    // Counted once per review and source rather than per image.
    const pinnedFrom = new Map<PinnedFrom, number>()
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
      if (recordPins) (pins ??= Object.create(null) as Record<string, PinRecord>)[site.container] = d.digest !== undefined ? { image: site.image, pin: d.to, digest: d.digest } : { image: site.image, pin: d.to }
      ctx.changes.push({ kind: 'pin', field: site.field, container: site.container, from: site.image, to: d.to, verified: d.verified, ...(d.digest !== undefined && d.source !== 'stale' ? { digest: d.digest } : {}) })
      pinnedFrom.set(d.source, (pinnedFrom.get(d.source) ?? 0) + 1)
      if (d.source === 'stale') ctx.warnings.push(`pullpin: ${site.image} pinned from the last known digest; the registry did not answer`)
      // Remember the first pin per revision, but not for what audit mode or a dry run only looked at.
      if (revision !== undefined && ctx.mode === 'enforce' && !ctx.dryRun) {
        rolloutPins.remember(revision, site.image, { to: d.to, verified: d.verified, ...(d.digest !== undefined ? { digest: d.digest } : {}) })
      }
    }
    // …and are not applied: a pod already admitted unchanged leaves no pin in memory or metrics.
    await forEachChunked(sites.length, one, () => deadlineReason(ctx))
    for (const [source, n] of pinnedFrom) metrics?.pinned(config.format, source, n)
    if (pins === undefined) return
    // What the pod was pinned to, for `kubectl get pod -o yaml` and for the other replicas (rollout-pins.ts).
    // On CREATE the record is this pod's alone: one copied into a template from another pod's YAML is replaced.
    const record = ctx.operation === 'CREATE' ? JSON.stringify(pins) : mergedRecord(ctx.pod.metadata?.annotations?.[PINS_ANNOTATION], pins)
    if (!recordAnnotation(ctx.pod, PINS_ANNOTATION, record)) {
      ctx.warnings.push(`pullpin: ${PINS_ANNOTATION} not written: the pod's annotations would pass the API server's 256 KiB`)
    }
    if (pinSource !== undefined && revision !== undefined && !ctx.dryRun) metrics?.pins(pinSource)
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

/**
 * The rollout revision a pod belongs to: its controller and the controller's revision label
 * (REVISION_LABELS). A controller of another kind, or a pod without the label, is remembered by
 * the controller alone and in memory only; a pod without a controller has no rollout.
 */
function revisionOf (pod: Pod, namespace: string): Revision | undefined {
  const owner = pod.metadata?.ownerReferences?.find(o => o.controller === true)
  if (owner === undefined) return undefined
  const labels = pod.metadata?.labels
  for (const name of REVISION_LABELS[owner.kind] ?? []) {
    const value = labels?.[name]
    if (typeof value === 'string' && value !== '') {
      return { key: `${namespace}\u0000${owner.uid}\u0000${name}=${value}`, namespace, ownerUid: owner.uid, label: { name, value } }
    }
  }
  return { key: `${namespace}\u0000${owner.uid}`, namespace, ownerUid: owner.uid }
}

/**
 * The API server refuses an object whose annotations (keys and values) add up to more than this
 * (apimachinery's ValidateAnnotationsSize, TotalAnnotationSizeLimitB).
 */
export const ANNOTATIONS_MAX_BYTES = 256 * 1024

/**
 * A record by container name, merged into the one already on the pod: containers recorded
 * earlier keep their entry; a container re-pinned on UPDATE records this time's.
 */
function mergedRecord (written: string | undefined, record: Record<string, unknown>): string {
  let previous: Record<string, unknown> | undefined
  if (written !== undefined) {
    try {
      const parsed = JSON.parse(written) as unknown
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) previous = parsed as Record<string, unknown>
    } catch {
      // A hand-edited, unparsable annotation is replaced rather than kept half-valid.
    }
  }
  return JSON.stringify(previous === undefined ? record : { ...previous, ...record })
}

/**
 * Writes pullpin's record only if the pod's annotations stay within the API server's limit: the
 * pins stay (the pod can be created), the record is what gives way. Returns whether it was written.
 */
function recordAnnotation (pod: Pod, key: string, value: string): boolean {
  const annotations = pod.metadata?.annotations ?? {}
  let size = Buffer.byteLength(key) + Buffer.byteLength(value)
  for (const [k, v] of Object.entries(annotations)) {
    if (k !== key) size += Buffer.byteLength(k) + (typeof v === 'string' ? Buffer.byteLength(v) : 0)
  }
  // Left out, the value already on the pod (an UPDATE's) stays.
  if (size > ANNOTATIONS_MAX_BYTES) return false
  const meta = pod.metadata ?? (pod.metadata = {})
  ;(meta.annotations ?? (meta.annotations = {}))[key] = value
  return true
}

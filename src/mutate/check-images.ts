// Step: pull-readiness checks (issue 13). Every image the kubelet will pull (after pinning) is
// checked before the pod exists, whether pinning is on or not:
//  - reference: an image string the kubelet cannot parse (an uppercase owner gets its fix first);
//  - exists: a tag, SHA tag, digest or tag@digest the registry does not have;
//  - pullAccess: the pull secret the pod will use is refused by the registry, or the image needs
//    credentials and no pull secret matches its registry;
//  - platforms: the image has no build for the os/architecture of nodes the pod can land on.
// Only images on registry.hosts are looked up (reference errors are reported for any image).
//
// The checks record findings (findings.ts); warnings and a denial are made from them in one place.
// A registry that is slow or broken never blocks a pod: a check without an answer within the
// lookup budget reports nothing (a diagnostic says why), and only a definite "not found" can deny.
//
// Warm path: immutable answers (a manifest or config by digest, a SHA tag seen to exist) are kept
// for good, tag answers and pull-access answers for their TTL, so a review of known images makes
// no registry request.
import { isSecretSource, type ChecksConfig, type PullSecretRule, type RegistryConfig } from '../policy/config.js'
import { compileRegistryGlob, normalizeRegistryKey } from '../reference/host-glob.js'
import { tryParseImageReference, type ImageReference, type ReferenceParse } from '../reference/parse.js'
import type { TagCache } from '../cache/tag-cache.js'
import type { ImmutableCache } from '../cache/immutable-cache.js'
import type { PullAccess, PullAccessCache } from '../cache/pull-access.js'
import type { ImageConfig, ManifestDocument, Platform } from '../registry/client.js'
import type { RegistryCredential } from '../registry/keyring.js'
import { isCodedError } from '../errors.js'
import { lookupTime } from './lookup-budget.js'
import { LRUCache } from 'lru-cache'
import { applyFindings, middle, WARNING_MAX_CHARS, type CheckName, type Finding, type FindingReason } from './findings.js'
import { deadlineReason, type MutationContext, type MutationStep } from './mutator.js'
import { forEachChunked } from './chunks.js'
import { IMAGE_MEMO_SIZE, memoize } from './memoize.js'
import { formatPlatform, imagePlatforms, missingPlatforms, parsePlatform, podPlatforms } from './platforms.js'
import { imageAt, type ImageSite, type Pod } from './pod.js'

export type CheckResult = 'ok' | 'warn' | 'deny' | 'would-warn' | 'would-deny' | 'error'

export interface CheckMetrics {
  /** `n` checked distinct images (1 by default) of one check and result (pullpin_checks_total{check,result}). */
  result (check: CheckName, result: CheckResult, n?: number): void
  /** An image left unchecked because its registry is not on registry.hosts. */
  outsideHosts (): void
}

export interface CheckDeps {
  readonly checks: ChecksConfig
  readonly registry: Pick<RegistryConfig, 'hosts' | 'lookupBudgetMs'>
  readonly pullSecrets: readonly PullSecretRule[]
  readonly tags: TagCache
  readonly immutable: ImmutableCache
  /** Per-credential pull access; without it the pull-access check is off. */
  readonly access?: PullAccessCache
  /** The credentials pullpin holds (from the pull secrets' sources, or registry.credentials files). */
  readonly credentials?: { lookup (image: { registry: string; repository: string }): RegistryCredential[] }
  /** The nodes' platforms: from the Nodes with a cluster, else checks.nodePlatforms. */
  readonly nodePlatforms?: () => readonly Platform[]
  readonly metrics?: CheckMetrics
  /** SHA tags seen to exist, kept for good (registry.cache.maxImmutableEntries). */
  readonly maxVerifiedTags?: number
  /** How long a digest the registry does not have is remembered (registry.cache.negativeTtlSeconds). */
  readonly negativeTtlMs?: number
}

/** What one image's checks found, before it is told per container. */
interface Problem {
  readonly check: CheckName
  readonly reason: FindingReason
  readonly deny: boolean
  /** The warning text after "pullpin: <container>: "; NAME stands for `name`. */
  readonly text: string
  /** The image's normalized name (or the string itself when it does not parse). */
  readonly name: string
  readonly detail?: string
}

/** A site's image as the kubelet will see it: after pinning (the draft), with the digest the pin step got for it. */
interface Target { readonly site: ImageSite; readonly image: string; readonly digest?: string }

const GHCR = 'ghcr.io'

export function createCheckStep (deps: CheckDeps): MutationStep {
  const { checks, tags, immutable, access, metrics } = deps
  const allowed = deps.registry.hosts.map(compileRegistryGlob)
  // Matched per image, not memoized: a memo by registry was worth 3–4 % of a review (BENCHMARKS.md,
  // "The checks' memos, measured"), under the bar for a speed device.
  const isAllowed = (ref: ImageReference): boolean => allowed.some(m => m(ref))
  const parse = memoize(IMAGE_MEMO_SIZE, (image: string) => tryParseImageReference(image))
  const staticPlatforms = checks.nodePlatforms.map(parsePlatform).filter((p): p is Platform => p !== undefined)
  const nodePlatforms = deps.nodePlatforms ?? (() => staticPlatforms)
  const rules: SecretRule[] = deps.pullSecrets.map(r => ({ name: r.name, globs: r.registries?.map(compileRegistryGlob), owns: ownerOf(r) }))
  // Which pull secrets an image's registry (or name, when a glob has a path) calls for, once per key.
  const rulesByName = deps.pullSecrets.some(r => r.registries?.some(p => normalizeRegistryKey(p).includes('/')) === true)
  const rulesFor = memoize(IMAGE_MEMO_SIZE, (_key: string, ref?: ImageReference) => ({ list: rules.filter(({ globs }) => globs === undefined || globs.some(m => m(ref!))) }))
  const verified = new LRUCache<string, string>({ max: Math.max(1, deps.maxVerifiedTags ?? 10_000) })
  const missingDigests = new LRUCache<string, Error>({ max: 10_000, ttl: Math.max(1, deps.negativeTtlMs ?? 10_000) })
  const lookups = checks.exists !== 'off' || checks.platforms !== 'off' || (checks.pullAccess !== 'off' && access !== undefined)

  /** The reference check: needs no registry, and applies to every image. */
  function referenceProblem (p: Extract<ReferenceParse, { ok: false }>): Problem {
    const fix = /must be lowercase.*: try (\S+)$/.exec(p.reason)
    const text = fix !== null
      ? `use ${fix[1]!}: repository names are lowercase`
      : `invalid image reference: ${p.reason}`
    return { check: 'reference', reason: 'ReferenceInvalid', deny: false, text, name: p.input, detail: p.message }
  }

  /** The digest the image names or its tag points at; "not found" is a finding, other errors no answer. */
  async function resolve (ref: ImageReference, pinned: string | undefined, signal: AbortSignal): Promise<{ digest: string; doc?: ManifestDocument } | Problem> {
    const digest = ref.digest
    if (digest !== undefined) {
      const key = `${ref.registry}/${ref.repository}@${digest}`
      const gone = missingDigests.get(key)
      if (gone !== undefined) return notFound(ref, gone)
      // The pin step asked for this very digest this review: existence alone needs no GET.
      if (pinned === digest && checks.platforms === 'off') return { digest }
      try {
        return { digest, doc: await immutable.manifest(ref, digest, signal) }
      } catch (err) {
        if (!isCodedError(err, 'PULLPIN_REGISTRY_NOT_FOUND')) throw err
        missingDigests.set(key, err)
        return notFound(ref, err)
      }
    }
    const tag = ref.tag ?? 'latest'
    const sha = tags.isShaTag(tag)
    const key = `${ref.registry}/${ref.repository}:${tag}`
    if (sha) {
      const known = verified.get(key)
      if (known !== undefined) return { digest: known }
      // Pinned this review: the pin step's own HEAD of this SHA tag answered with the digest.
      if (pinned !== undefined) { verified.set(key, pinned); return { digest: pinned } }
    }
    try {
      const r = await tags.resolveTag(ref, tag, signal)
      // A SHA tag is immutable (pinning.shaTagPatterns): once seen it is never asked again.
      if (sha && !r.stale) verified.set(key, r.digest)
      return { digest: r.digest }
    } catch (err) {
      if (!isCodedError(err, 'PULLPIN_REGISTRY_NOT_FOUND')) throw err
      return notFound(ref, err)
    }
  }

  function notFound (ref: ImageReference, err: Error): Problem {
    const tag = ref.tag ?? 'latest'
    const deny = checks.exists === 'deny'
    if (ref.digest !== undefined) {
      return { check: 'exists', reason: 'ImageNotFound', deny, text: `digest ${ref.digest.slice(0, 19)}… not found in ${NAME} — deleted, or never pushed?`, name: ref.name, detail: err.message }
    }
    const short = tag.length > 20 ? `${tag.slice(0, 7)}…` : tag
    const cause = tags.isShaTag(tag) ? 'not pushed by CI?' : 'never pushed, or deleted?'
    return { check: 'exists', reason: 'ImageNotFound', deny, text: `tag ${short} not found in ${NAME} — ${cause}`, name: ref.name, detail: err.message }
  }

  /** The platform check, from the manifest (and for a single image its config), both by digest. */
  async function platformProblem (ref: ImageReference, digest: string, doc: ManifestDocument | undefined, wanted: readonly Platform[], signal: AbortSignal): Promise<Problem | undefined> {
    if (wanted.length === 0) return undefined
    const manifest = doc ?? immutable.peekManifest(ref, digest) ?? await immutable.manifest(ref, digest, signal)
    const config = manifest.kind === 'image' && manifest.config !== undefined
      ? immutable.peekConfig(ref, manifest.config.digest) ?? await immutable.config(ref, manifest.config.digest, signal)
      : undefined
    return platformOf(ref, digest, manifest, config, wanted)
  }

  /** The pull secrets the pod will use for `ref` (those pullpin injects): each one's credentials are `credentialsOf` it. */
  function secretsFor (ref: ImageReference): readonly SecretRule[] {
    return rulesFor(rulesByName ? ref.name : ref.registry, ref).list
  }

  /** The credentials pullpin holds for `ref` that stand for the pull secret `rule`. */
  function credentialsOf (rule: SecretRule, held: RegistryCredential[]): RegistryCredential[] {
    return rule.owns === undefined ? held : held.filter(rule.owns)
  }

  async function accessProblem (ref: ImageReference, reference: string, pod: Pod, signal: AbortSignal): Promise<Problem | undefined> {
    if (access === undefined) return undefined
    const secrets = secretsFor(ref)
    if (secrets.length === 0) {
      // The pod's own secrets cannot be read here: only a pod with none is known to pull anonymously.
      const own = pod.spec?.imagePullSecrets
      if (Array.isArray(own) && own.length > 0) return undefined
      const a = access.peek(ref, []) ?? await access.check(ref, reference, [], signal)
      if (a.access === 'ok') return undefined
      return noSecretProblem(ref, a)
    }
    const held = deps.credentials?.lookup(ref) ?? []
    let denied: { name: string; answer: Extract<PullAccess, { access: 'denied' }> } | undefined
    for (const s of secrets) {
      const credentials = credentialsOf(s, held)
      // A secret pullpin holds no credentials of (its source not read yet) cannot be checked.
      if (credentials.length === 0) return undefined
      const a = access.peek(ref, credentials) ?? await access.check(ref, reference, credentials, signal)
      // The kubelet tries every secret of the pod: one that can read is enough.
      if (a.access === 'ok') return undefined
      denied ??= { name: s.name, answer: a }
    }
    if (denied === undefined) return undefined
    return deniedProblem(ref, denied.name, denied.answer)
  }

  // ---- the warm path: every answer from the caches, no promise, no timer ----

  /**
   * Platform problems per image digest, name and set of node platforms (pure, so memoized). Maps
   * in maps: the keys are strings the caches already hold, so no key is built per image.
   */
  const platformMemo = new Map<string, Map<string, Map<string, Problem | null>>>()
  let platformMemoSize = 0
  const nodesKeys = new WeakMap<readonly Platform[], string>()
  const keyOfPlatforms = (list: readonly Platform[]): string => {
    let k = nodesKeys.get(list)
    if (k === undefined) nodesKeys.set(list, k = list.map(formatPlatform).join(','))
    return k
  }

  function peekResolve (ref: ImageReference, pinned: string | undefined): { digest: string } | Problem | undefined {
    const digest = ref.digest
    if (digest !== undefined) {
      const gone = missingDigests.get(`${ref.registry}/${ref.repository}@${digest}`)
      if (gone !== undefined) return notFound(ref, gone)
      if (pinned === digest || immutable.peekManifest(ref, digest) !== undefined) return { digest }
      return undefined
    }
    // Pinned this review: the pin step's own answer for this SHA tag (or digest) is the digest.
    if (pinned !== undefined) return { digest: pinned }
    const tag = ref.tag ?? 'latest'
    if (tags.isShaTag(tag)) {
      const known = verified.get(`${ref.registry}/${ref.repository}:${tag}`)
      if (known !== undefined) return { digest: known }
    }
    const hit = tags.peekTag(ref, tag)
    return hit !== undefined ? { digest: hit.digest } : undefined
  }

  function peekPlatform (ref: ImageReference, digest: string, wanted: readonly Platform[]): Problem | null | undefined {
    if (wanted.length === 0) return null
    const nodes = keyOfPlatforms(wanted)
    const memo = platformMemo.get(digest)?.get(ref.name)?.get(nodes)
    if (memo !== undefined) return memo
    const manifest = immutable.peekManifest(ref, digest)
    if (manifest === undefined) return undefined
    const config = manifest.kind === 'image' && manifest.config !== undefined ? immutable.peekConfig(ref, manifest.config.digest) : undefined
    if (manifest.kind === 'image' && manifest.config !== undefined && config === undefined) return undefined
    const found = platformOf(ref, digest, manifest, config, wanted) ?? null
    if (platformMemoSize >= IMAGE_MEMO_SIZE) { platformMemo.clear(); platformMemoSize = 0 }
    let byName = platformMemo.get(digest)
    if (byName === undefined) platformMemo.set(digest, byName = new Map<string, Map<string, Problem | null>>())
    let byNodes = byName.get(ref.name)
    if (byNodes === undefined) byName.set(ref.name, byNodes = new Map<string, Problem | null>())
    byNodes.set(nodes, found)
    platformMemoSize++
    return found
  }

  function peekAccess (ref: ImageReference, pod: Pod): Problem | null | undefined {
    if (access === undefined) return null
    const secrets = secretsFor(ref)
    if (secrets.length === 0) {
      const own = pod.spec?.imagePullSecrets
      if (Array.isArray(own) && own.length > 0) return null
      const a = access.peek(ref, [])
      return a === undefined ? undefined : a.access === 'ok' ? null : noSecretProblem(ref, a)
    }
    const held = deps.credentials?.lookup(ref) ?? []
    let denied: { name: string; answer: Extract<PullAccess, { access: 'denied' }> } | undefined
    for (const s of secrets) {
      const credentials = credentialsOf(s, held)
      if (credentials.length === 0) return null
      const a = access.peek(ref, credentials)
      if (a === undefined) return undefined
      if (a.access === 'ok') return null
      denied ??= { name: s.name, answer: a }
    }
    return denied === undefined ? null : deniedProblem(ref, denied.name, denied.answer)
  }

  /** Every check of one image from the caches alone; undefined when one of them needs the registry. */
  function peekImage (ref: ImageReference, pinned: string | undefined, pod: Pod, wanted: readonly Platform[], ok: OkCounts): Problem[] | undefined {
    const resolved = peekResolve(ref, pinned)
    if (resolved === undefined) return undefined
    if ('check' in resolved) return checks.exists !== 'off' ? [resolved] : []
    const platforms = checks.platforms !== 'off' ? peekPlatform(ref, resolved.digest, wanted) : null
    if (platforms === undefined) return undefined
    const pull = checks.pullAccess !== 'off' ? peekAccess(ref, pod) : null
    if (pull === undefined) return undefined
    if (checks.exists !== 'off') ok.exists++
    if (checks.platforms !== 'off' && platforms === null) ok.platforms++
    if (checks.pullAccess !== 'off' && pull === null) ok.pullAccess++
    if (platforms === null && pull === null) return NONE
    const out: Problem[] = []
    if (platforms !== null) out.push(platforms)
    if (pull !== null) out.push(pull)
    return out
  }

  /** Every check of one distinct image; errors and timeouts are no answer (diagnostics). */
  async function checkImage (ref: ImageReference, pinned: string | undefined, pod: Pod, wanted: readonly Platform[], signal: AbortSignal, diagnostics: string[]): Promise<Problem[]> {
    const out: Problem[] = []
    const fail = (check: CheckName, err: unknown): void => {
      metrics?.result(check, 'error')
      diagnostics.push(`${check} check of ${ref.name}: ${signal.aborted ? 'registry.lookupBudgetMs ran out' : (err as Error).message}`)
    }
    let resolved: { digest: string; doc?: ManifestDocument } | Problem | undefined
    if (checks.exists !== 'off' || checks.platforms !== 'off' || checks.pullAccess !== 'off') {
      try {
        resolved = await resolve(ref, pinned, signal)
      } catch (err) {
        if (checks.exists !== 'off') fail('exists', err)
      }
    }
    if (resolved !== undefined && 'check' in resolved) {
      // Missing: nothing else to check. checks.exists: off still keeps quiet.
      if (checks.exists !== 'off') out.push(resolved)
      return out
    }
    if (checks.exists !== 'off' && resolved !== undefined) metrics?.result('exists', 'ok')
    const reference = resolved?.digest ?? ref.digest ?? ref.tag ?? 'latest'
    const [platforms, pull] = await Promise.all([
      checks.platforms !== 'off' && resolved !== undefined
        ? platformProblem(ref, resolved.digest, resolved.doc, wanted, signal).catch((err: unknown) => { fail('platforms', err); return null })
        : Promise.resolve(null),
      checks.pullAccess !== 'off'
        ? accessProblem(ref, reference, pod, signal).catch((err: unknown) => { fail('pullAccess', err); return null })
        : Promise.resolve(null),
    ])
    if (platforms !== null) { if (platforms === undefined) metrics?.result('platforms', 'ok'); else out.push(platforms) }
    if (pull !== null) { if (pull === undefined) metrics?.result('pullAccess', 'ok'); else out.push(pull) }
    return out
  }

  return {
    name: 'check-images',
    operations: ['CREATE', 'UPDATE'],
    async run (ctx) {
      const targets = targetsOf(ctx)
      if (targets.length === 0) return
      // The review's one lookup budget, shared with pinning (lookup-budget.ts).
      const signal = (): AbortSignal => lookupTime(ctx, deps.registry.lookupBudgetMs).signal
      let wanted: readonly Platform[] | undefined
      const problems = new Map<string, Problem[] | Promise<Problem[]>>()
      const pending: Array<Promise<void>> = []
      const diagnostics: string[] = []
      // The warm path's "ok" results, counted once per review rather than per image.
      const ok: OkCounts = { exists: 0, platforms: 0, pullAccess: 0 }
      const one = (i: number): void => {
        const { image, digest } = targets[i]!
        if (problems.has(image)) return
        // An image as written was parsed once for the whole review (MutationContext.references).
        const p = ctx.references.get(image) ?? parse(image)
        if (!p.ok) {
          problems.set(image, [referenceProblem(p)])
          return
        }
        if (!isAllowed(p.ref)) {
          metrics?.outsideHosts()
          problems.set(image, [])
          return
        }
        if (!lookups) { problems.set(image, []); return }
        wanted ??= checks.platforms !== 'off' ? podPlatforms(ctx.pod, nodePlatforms()) : []
        const quick = peekImage(p.ref, digest, ctx.pod, wanted, ok)
        if (quick !== undefined) { problems.set(image, quick); return }
        const s = signal()
        // The review's lookup budget is spent (pinning waited for a slow registry): no new
        // request is started, for an answer nobody would wait for.
        if (s.aborted) {
          diagnostics.push(`checks of ${p.ref.name}: registry.lookupBudgetMs ran out`)
          problems.set(image, [])
          return
        }
        const running = checkImage(p.ref, digest, ctx.pod, wanted, s, diagnostics)
        problems.set(image, running)
        pending.push(running.then(found => { problems.set(image, found) }))
      }
      await forEachChunked(targets.length, one, () => deadlineReason(ctx))
      if (pending.length > 0) await Promise.all(pending)
      if (ok.exists > 0) metrics?.result('exists', 'ok', ok.exists)
      if (ok.platforms > 0) metrics?.result('platforms', 'ok', ok.platforms)
      if (ok.pullAccess > 0) metrics?.result('pullAccess', 'ok', ok.pullAccess)
      const findings: Finding[] = []
      const audit = ctx.mode !== 'enforce'
      const counted = new Set<Problem>()
      // A huge pod's findings are told in slices too (chunks.ts).
      await forEachChunked(targets.length, (i) => {
        const { site, image } = targets[i]!
        const found = problems.get(image)
        if (found === undefined || !Array.isArray(found)) return
        for (const pr of found) {
          if (!counted.has(pr)) {
            counted.add(pr)
            metrics?.result(pr.check, pr.deny ? (audit ? 'would-deny' : 'deny') : (audit ? 'would-warn' : 'warn'))
          }
          findings.push(toFinding(site, image, pr))
        }
      }, () => deadlineReason(ctx))
      ctx.diagnostics.push(...diagnostics)
      if (findings.length === 0) return
      ctx.findings.push(...findings)
      applyFindings(findings, ctx)
    },
  }
}

const NONE: Problem[] = []

/** A pull secret as the pull-access check reads it: its registries, and which held credentials are its. */
interface SecretRule {
  readonly name: string
  readonly globs?: ReadonlyArray<(image: ImageReference) => boolean>
  /** Undefined: every credential held for the image (the registry.credentials files stand for the secret). */
  readonly owns?: (c: RegistryCredential) => boolean
}

/**
 * With a source, exactly that source's credentials: a Secret's are labelled "namespace/name"
 * (src/cluster), a fetched source's "<description> (<pull secret name>)" (src/credentials/sources.ts).
 */
function ownerOf (rule: PullSecretRule): ((c: RegistryCredential) => boolean) | undefined {
  const source = rule.source
  if (source === undefined) return undefined
  if (isSecretSource(source)) {
    const label = `${source.namespace}/${source.name}`
    return c => c.source === label
  }
  const suffix = ` (${rule.name})`
  return c => c.source.endsWith(suffix)
}

type OkCounts = Record<'exists' | 'platforms' | 'pullAccess', number>

/** The platform check's answer from the documents (undefined: nothing missing, or nothing to tell). */
function platformOf (ref: ImageReference, digest: string, manifest: ManifestDocument, config: ImageConfig | undefined, wanted: readonly Platform[]): Problem | undefined {
  const offered = imagePlatforms(manifest, config)
  if (offered === undefined) return undefined
  const missing = missingPlatforms(offered, wanted)
  if (missing.length === 0) return undefined
  const want = missing.map(formatPlatform).join(', ')
  const has = offered.map(formatPlatform).join(', ')
  return {
    check: 'platforms',
    reason: 'PlatformMissing',
    deny: false,
    text: `${NAME} has no ${want} build (has ${has})`,
    name: ref.name,
    detail: `image ${ref.name}@${digest} offers ${has}; the pod can land on nodes of ${want}`,
  }
}

function noSecretProblem (ref: ImageReference, a: Extract<PullAccess, { access: 'denied' }>): Problem {
  return {
    check: 'pullAccess',
    reason: 'NoPullSecret',
    deny: false,
    text: `${NAME} needs credentials; no pull secret matches ${ref.registry}: kubelet gets 401`,
    name: ref.name,
    detail: `anonymous pull of ${ref.name} answered ${a.status}; add a pullSecrets entry for ${ref.registry}`,
  }
}

function deniedProblem (ref: ImageReference, secret: string, a: Extract<PullAccess, { access: 'denied' }>): Problem {
  const fix = ref.registry === GHCR ? 'token needs read:packages (and SSO)' : 'check its scope'
  return {
    check: 'pullAccess',
    reason: 'PullAccessDenied',
    deny: false,
    text: `pull secret ${secret} cannot read ${NAME} (${a.status}): ${fix}`,
    name: ref.name,
    detail: `registry answered ${a.status} for ${ref.name} with the credentials of pull secret ${secret}; see docs/registry-auth.md#pull-access-denied`,
  }
}

/** Stands for the image's name in a Problem's text until it is fitted for a container. */
const NAME = '\u0000'

/** The finding for one site: the container named, the image name shortened to fit 120 characters. */
function toFinding (site: ImageSite, image: string, p: Problem): Finding {
  const container = middle(site.container, 40)
  const ref = p.name
  const fixed = `pullpin: ${container}: ${p.text}`
  const room = Math.max(12, WARNING_MAX_CHARS - (fixed.length - (p.text.includes(NAME) ? 1 : 0)))
  const text = p.text.replace(NAME, middle(ref, room))
  const message = `${container}: ${text}`
  return {
    check: p.check,
    reason: p.reason,
    field: site.field,
    container: site.container,
    image,
    severity: p.deny ? 'deny' : 'warning',
    message: message.length + 9 > WARNING_MAX_CHARS ? message.slice(0, WARNING_MAX_CHARS - 10) + '…' : message,
    ...(p.detail !== undefined ? { detail: p.detail } : {}),
  }
}

/**
 * CREATE: every image, as it stands after pinning. UPDATE: only images new or changed against
 * oldObject (what was admitted before was checked then); pods/ephemeralcontainers: only those.
 */
function targetsOf (ctx: MutationContext): Target[] {
  const out: Target[] = []
  // field → container → digest: keys the changes already hold, none built per image.
  let pinned: Map<string, Map<string, string>> | undefined
  for (const c of ctx.changes) {
    if (c.kind !== 'pin' || c.digest === undefined) continue
    pinned ??= new Map()
    let byName = pinned.get(c.field)
    if (byName === undefined) pinned.set(c.field, byName = new Map<string, string>())
    byName.set(c.container, c.digest)
  }
  const old = ctx.operation === 'UPDATE' ? new Map<string, unknown>() : undefined
  if (old !== undefined) {
    for (const field of ['initContainers', 'containers', 'ephemeralContainers'] as const) {
      const list = ctx.oldObject?.spec?.[field]
      if (Array.isArray(list)) for (const c of list) if (c !== null && typeof c === 'object') old.set(`${field}/${c.name}`, c.image)
    }
  }
  for (const site of ctx.images) {
    if (old !== undefined) {
      // Image volumes cannot change on UPDATE: they were checked when the pod was created.
      if (site.field === 'volumes') continue
      if (ctx.subResource === 'ephemeralcontainers' && site.field !== 'ephemeralContainers') continue
      if (old.get(`${site.field}/${site.container}`) === site.image) continue
    }
    const now = imageAt(ctx.pod, site)
    const digest = pinned?.get(site.field)?.get(site.container)
    const image = typeof now === 'string' && now !== '' ? now : site.image
    out.push(digest !== undefined ? { site, image, digest } : { site, image })
  }
  return out
}

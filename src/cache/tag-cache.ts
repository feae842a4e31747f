// The tag cache: every registry lookup pullpin makes goes through here.
//
// - Mutable tag → digest, fresh for `ttlMs`; then served stale for `staleWhileRevalidateMs` while
//   one background refresh runs; past that a caller waits for the registry, and when the registry
//   fails the last known digest is still served (marked stale) for `staleIfErrorMs`.
// - "Not found" is remembered for `negativeTtlMs`, so a typo'd tag does not hammer the registry.
// - Per repository, an index digest → SHA tags, built from the tag list plus a HEAD of every tag
//   matching the SHA patterns. SHA tags are immutable: once known they are never HEADed again
//   (until the repository is evicted); a refresh HEADs only tags it has not seen.
// - Concurrent identical lookups share one upstream request (in-flight promises keyed by lookup),
//   and a caller's deadline never cancels a shared lookup: it keeps running and fills the cache.
// - Both maps are LRU-bounded (lru-cache).
// - Index building has a budget (limits.indexHeadsPerRepository per build, and a caller's
//   IndexBudget per review): a repository with thousands of SHA tags costs at most that many HEADs
//   per build, and the next refresh goes on where the last one stopped.
// - Callers waiting on one signal (one review) share one abort listener, whatever the number of
//   lookups (src/async/abort.ts): a listener per lookup piled up past Node's limit of 10 per EventTarget.
import { LRUCache } from 'lru-cache'
import { isCodedError } from '../errors.js'
import { MANIFEST_MEDIA_TYPES, type ManifestInfo, type RepositoryRef } from '../registry/client.js'
import { abortable } from '../async/abort.js'
import { InFlight } from '../async/in-flight.js'

export interface RegistryReader {
  headManifest (ref: RepositoryRef, reference: string, signal?: AbortSignal): Promise<ManifestInfo>
  listTags (ref: RepositoryRef, signal?: AbortSignal): Promise<string[]>
}

export interface TagCacheOptions {
  readonly registry: RegistryReader
  readonly shaTagPatterns: readonly RegExp[]
  readonly ttlMs: number
  readonly staleWhileRevalidateMs: number
  readonly staleIfErrorMs: number
  readonly negativeTtlMs: number
  readonly maxEntries: number
  readonly maxRepositories: number
  readonly tagListMinIntervalMs: number
  /** HEADs in flight while indexing one repository (the registry client also limits per registry). */
  readonly indexConcurrency?: number
  /** At most this many SHA tags HEADed by one index build or refresh (limits.indexHeadsPerRepository). */
  readonly indexHeadsPerRepository?: number
  /**
   * refreshActive() keeps a mutable tag fresh while it was looked up within this long
   * (registry.cache.activeSeconds); 0 or absent: no background refresh beyond stale-while-revalidate.
   */
  readonly activeMs?: number
  /** Jitter source for background refreshes (default Math.random). */
  readonly random?: () => number
  readonly now?: () => number
  readonly onEvent?: (event: CacheEvent) => void
}

export type CacheEvent =
  | { kind: 'tag'; result: 'hit' | 'miss' | 'stale' | 'stale-error' | 'negative' | 'error' }
  | { kind: 'index'; result: 'hit' | 'refresh' | 'error' | 'budget'; heads?: number }

/**
 * What one review may still spend on SHA-tag HEADs (limits.indexHeadsPerReview), shared by every
 * repository it indexes. `incomplete` collects the repositories ("registry/repository") whose index
 * it found incomplete for want of budget (this review's or a repository build's).
 */
export interface IndexBudget {
  remaining: number
  readonly incomplete: Set<string>
}

export interface TagResolution {
  readonly digest: string
  readonly mediaType: string
  /** True when this is a last-known answer served because the registry could not be reached. */
  readonly stale: boolean
}

interface TagEntry {
  readonly digest?: string
  readonly mediaType?: string
  readonly notFound?: Error
  readonly at: number
  /** Last lookup of this tag (hot path included): background refreshes stop once it is old. */
  seen: number
  /** When refreshActive() asks the registry again (Infinity: never, for SHA tags and digests). */
  refreshAt: number
}

/**
 * Background refreshes come due at a random point in the last REFRESH_JITTER of the TTL, so
 * replicas that learned a tag at the same moment do not ask the registry in step.
 */
const REFRESH_JITTER = 0.2

interface RepoIndex {
  /** SHA tag → digest, each verified by a HEAD of that tag. */
  readonly shaTags: Map<string, string>
  /** SHA tags listed but not HEADed yet (a build ran out of budget): the next refresh takes them first. */
  unindexed: number
  /**
   * SHA tags listed but whose HEAD said not found (a deleted manifest the list still shows), with
   * when: not HEADed again for negativeTtlMs, like any "not found", so they cannot spend every
   * refresh's budget, and a registry that was only late is asked again.
   */
  readonly missing: Map<string, number>
  /** digest → SHA tags, best first. */
  byDigest: Map<string, string[]>
  listedAt: number
  lastError?: Error
}

const keyOf = (ref: RepositoryRef): string => `${ref.registry}/${ref.repository}`

/**
 * A flat copy of a key built by concatenation. V8 keeps a concatenated string as a tree of its
 * pieces (a ConsString) and a Map keeps that tree alive as long as the entry: for an image name
 * it costs about 2.5× the flat text. Only entries being stored pay for the copy (bench/memory.ts:
 * 471 → 254 bytes of heap per cached tag; BENCHMARKS.md).
 */
function flat (s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8')
}

/** Every tag entry shares one string per manifest media type instead of a copy per HTTP answer. */
const KNOWN_MEDIA_TYPES = new Map<string, string>(MANIFEST_MEDIA_TYPES.map(t => [t, t]))

/** Prefer the full 40-hex tag, then the longest `sha-` form, then lexical order. */
export function rankShaTags (tags: Iterable<string>): string[] {
  const full = /^[0-9a-f]{40}$/
  return [...tags].sort((a, b) => {
    const fa = full.test(a) ? 0 : 1
    const fb = full.test(b) ? 0 : 1
    if (fa !== fb) return fa - fb
    if (a.length !== b.length) return b.length - a.length
    return a < b ? -1 : a > b ? 1 : 0
  })
}

export class TagCache {
  private readonly tags: LRUCache<string, TagEntry>
  private readonly repos: LRUCache<string, RepoIndex>
  private readonly tagFetches = new InFlight<string, TagResolution>()
  private readonly indexBuilds = new InFlight<string, RepoIndex>()
  private readonly now: () => number

  constructor (private readonly opts: TagCacheOptions) {
    this.tags = new LRUCache({ max: opts.maxEntries })
    this.repos = new LRUCache({ max: opts.maxRepositories })
    this.now = opts.now ?? Date.now
  }

  isShaTag (tag: string): boolean {
    return this.opts.shaTagPatterns.some(re => re.test(tag))
  }

  /** A fresh answer without any I/O, or undefined. The admission hot path tries this first. */
  peekTag (ref: RepositoryRef, tag: string): TagResolution | undefined {
    // A plain key: reusing one per reference object did not earn its place
    // (BENCHMARKS.md, "Contracts and speed devices").
    const e = this.tags.get(`${keyOf(ref)}:${tag}`)
    if (e?.digest === undefined) return undefined
    const now = this.now()
    if (now - e.at >= this.opts.ttlMs) return undefined
    e.seen = now
    return { digest: e.digest, mediaType: e.mediaType ?? '', stale: false }
  }

  /** Resolve a tag to its digest, from the cache when it can. Throws the registry's coded errors. */
  async resolveTag (ref: RepositoryRef, tag: string, signal?: AbortSignal): Promise<TagResolution> {
    const key = `${keyOf(ref)}:${tag}`
    const e = this.tags.get(key)
    const age = e === undefined ? Infinity : this.now() - e.at
    if (e?.notFound !== undefined && age < this.opts.negativeTtlMs) {
      this.emit({ kind: 'tag', result: 'negative' })
      throw e.notFound
    }
    if (e !== undefined) e.seen = this.now()
    if (e?.digest !== undefined) {
      if (age < this.opts.ttlMs) {
        this.emit({ kind: 'tag', result: 'hit' })
        return { digest: e.digest, mediaType: e.mediaType ?? '', stale: false }
      }
      if (age < this.opts.ttlMs + this.opts.staleWhileRevalidateMs) {
        // Serve the old answer now; one background refresh brings the new one.
        this.emit({ kind: 'tag', result: 'stale' })
        this.fetchTag(ref, tag, key).catch(() => {})
        return { digest: e.digest, mediaType: e.mediaType ?? '', stale: false }
      }
    }
    this.emit({ kind: 'tag', result: 'miss' })
    try {
      return await abortable(this.fetchTag(ref, tag, key), signal)
    } catch (err) {
      if (e?.digest !== undefined && age < this.opts.ttlMs + this.opts.staleIfErrorMs && !isCodedError(err, 'PULLPIN_REGISTRY_NOT_FOUND')) {
        this.emit({ kind: 'tag', result: 'stale-error' })
        return { digest: e.digest, mediaType: e.mediaType ?? '', stale: true }
      }
      this.emit({ kind: 'tag', result: 'error' })
      throw err
    }
  }

  private fetchTag (ref: RepositoryRef, tag: string, key: string): Promise<TagResolution> {
    return this.tagFetches.run(key, async () => {
      try {
        const m = await this.opts.registry.headManifest(ref, tag)
        const at = this.now()
        this.tags.set(flat(key), { digest: m.digest, mediaType: KNOWN_MEDIA_TYPES.get(m.mediaType) ?? m.mediaType, at, seen: this.tags.peek(key)?.seen ?? at, refreshAt: this.refreshAt(tag, at) })
        return { digest: m.digest, mediaType: m.mediaType, stale: false }
      } catch (err) {
        if (isCodedError(err, 'PULLPIN_REGISTRY_NOT_FOUND') && this.opts.negativeTtlMs > 0) {
          const at = this.now()
          this.tags.set(flat(key), { notFound: err, at, seen: at, refreshAt: Infinity })
        }
        throw err
      }
    })
  }

  /** SHA tags and digests never move: only mutable tags are refreshed in the background. */
  private refreshAt (tag: string, at: number): number {
    if (!((this.opts.activeMs ?? 0) > 0) || tag.includes(':') || this.isShaTag(tag)) return Infinity
    return at + this.opts.ttlMs * (1 - REFRESH_JITTER * (this.opts.random ?? Math.random)())
  }

  /**
   * Starts a background refresh of every mutable tag that is due (near the end of its TTL, jittered)
   * and was looked up within activeMs, so pods keep being answered from the cache without waiting,
   * while tags nobody asks for any more cost the registry nothing. Returns how many it started.
   * The pinning stack calls it on a timer (src/pinning.ts).
   */
  refreshActive (): number {
    const activeMs = this.opts.activeMs ?? 0
    if (activeMs <= 0) return 0
    const now = this.now()
    let started = 0
    // entries() does not touch the LRU order: a refresh is not a use.
    for (const [key, e] of this.tags.entries()) {
      if (e.refreshAt > now || now - e.seen >= activeMs || this.tagFetches.get(key) !== undefined) continue
      // A refresh that fails is not tried again before another TTL (stale-if-error covers the wait).
      e.refreshAt = now + this.opts.ttlMs
      const slash = key.indexOf('/')
      const colon = key.indexOf(':', slash)
      const ref = { registry: key.slice(0, slash), repository: key.slice(slash + 1, colon) }
      this.fetchTag(ref, key.slice(colon + 1), key).catch(() => {})
      started++
    }
    return started
  }

  /** SHA tags with this digest, best first, when the index already knows them (no I/O). */
  peekShaTags (ref: RepositoryRef, digest: string): string[] | undefined {
    return this.repos.get(keyOf(ref))?.byDigest.get(digest)
  }

  /**
   * SHA tags with this digest, best first. Builds the repository's index on first use; when the digest
   * is not in it, refreshes the tag list (at most once per tagListMinIntervalMs), since CI has probably
   * just pushed it.
   */
  async shaTagsFor (ref: RepositoryRef, digest: string, signal?: AbortSignal, budget?: IndexBudget): Promise<string[]> {
    const key = keyOf(ref)
    let idx = this.repos.get(key)
    const known = idx?.byDigest.get(digest)
    if (known !== undefined) {
      this.emit({ kind: 'index', result: 'hit' })
      return known
    }
    // An index a budget cut short is refreshed on the next miss whatever the interval: it goes on
    // with the tags not yet checked, so one hostile pod cannot keep other pods unpinned.
    if (idx === undefined || idx.unindexed > 0 || this.now() - idx.listedAt >= this.opts.tagListMinIntervalMs) {
      if (budget !== undefined && budget.remaining <= 0) {
        // Out of budget: not even the tag list is asked for.
        budget.incomplete.add(key)
        return idx?.byDigest.get(digest) ?? []
      }
      try {
        idx = await abortable(this.refreshIndex(ref, budget), signal)
      } catch (err) {
        this.emit({ kind: 'index', result: 'error' })
        if (idx === undefined) throw err
      }
    }
    const found = idx.byDigest.get(digest)
    if (budget !== undefined && idx.unindexed > 0 && found === undefined) budget.incomplete.add(key)
    return found ?? []
  }

  /** Build or refresh a repository's SHA-tag index now (warm-up at start, `pullpin resolve`). */
  warm (ref: RepositoryRef): Promise<number> {
    return this.refreshIndex(ref).then(idx => idx.shaTags.size)
  }

  /**
   * A coalesced build charges the review that started it: a review joining a running build
   * spends nothing (its HEADs are already being paid for).
   */
  private refreshIndex (ref: RepositoryRef, budget?: IndexBudget): Promise<RepoIndex> {
    const key = keyOf(ref)
    return this.indexBuilds.run(key, async () => {
      const idx = this.repos.get(key) ?? { shaTags: new Map<string, string>(), byDigest: new Map(), listedAt: 0, unindexed: 0, missing: new Map<string, number>() }
      const listed = await this.opts.registry.listTags(ref)
      const current = new Set(listed.filter(t => this.isShaTag(t)))
      // A SHA tag deleted at the registry leaves the index; new ones are HEADed once.
      for (const t of idx.shaTags.keys()) if (!current.has(t)) idx.shaTags.delete(t)
      const now = this.now()
      for (const [t, at] of idx.missing) if (!current.has(t) || now - at >= this.opts.negativeTtlMs) idx.missing.delete(t)
      const fresh = [...current].filter(t => !idx.shaTags.has(t) && !idx.missing.has(t))
      const allowed = Math.min(fresh.length, this.opts.indexHeadsPerRepository ?? Infinity, budget?.remaining ?? Infinity)
      const heads = fresh.slice(0, allowed)
      if (budget !== undefined) budget.remaining -= heads.length
      idx.unindexed = fresh.length - heads.length
      if (idx.unindexed > 0) this.emit({ kind: 'index', result: 'budget', heads: heads.length })
      await mapLimit(heads, this.opts.indexConcurrency ?? 16, async (t) => {
        try {
          idx.shaTags.set(t, (await this.opts.registry.headManifest(ref, t)).digest)
        } catch (err) {
          // A tag deleted between list and HEAD is simply not indexed; anything else fails the refresh.
          if (!isCodedError(err, 'PULLPIN_REGISTRY_NOT_FOUND')) throw err
          idx.missing.set(t, this.now())
        }
      })
      const byDigest = new Map<string, string[]>()
      for (const [t, d] of idx.shaTags) {
        const list = byDigest.get(d)
        if (list === undefined) byDigest.set(d, [t])
        else list.push(t)
      }
      for (const [d, list] of byDigest) byDigest.set(d, rankShaTags(list))
      idx.byDigest = byDigest
      idx.listedAt = this.now()
      this.repos.set(key, idx)
      this.emit({ kind: 'index', result: 'refresh', heads: heads.length })
      return idx
    })
  }

  stats (): { tags: number; repositories: number; shaTags: number; inflight: number } {
    let shaTags = 0
    for (const idx of this.repos.values()) shaTags += idx.shaTags.size
    return { tags: this.tags.size, repositories: this.repos.size, shaTags, inflight: this.tagFetches.size + this.indexBuilds.size }
  }

  private emit (e: CacheEvent): void {
    this.opts.onEvent?.(e)
  }
}

async function mapLimit<T> (items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!)
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

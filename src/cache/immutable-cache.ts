// Answers that never change: a manifest or index named by its digest, and a config blob named by
// its digest (content addressed: image-spec descriptor.md, "Digests"). They are kept without
// expiry, bounded by an LRU, so pull-readiness checks and revision lookups repeat no registry
// request for an image they have seen. Failures are not kept: the next caller asks again.
//
// Like the tag cache, concurrent callers share one fetch, and a caller's signal ends only its own
// wait (src/async/abort.ts): the fetch goes on and fills the cache for the next review.
import { LRUCache } from 'lru-cache'
import { abortable } from '../async/abort.js'
import { InFlight } from '../async/in-flight.js'
import type { ImageConfig, ManifestDocument, RepositoryRef } from '../registry/client.js'

export interface ImmutableReader {
  getManifest (ref: RepositoryRef, reference: string, signal?: AbortSignal): Promise<ManifestDocument>
  getConfig (ref: RepositoryRef, digest: string, signal?: AbortSignal): Promise<ImageConfig>
}

export interface ImmutableCacheEvent {
  readonly kind: 'manifest' | 'config'
  readonly result: 'hit' | 'miss' | 'error'
}

export interface ImmutableCacheOptions {
  readonly registry: ImmutableReader
  /** LRU bound over manifests and configs together. */
  readonly maxEntries: number
  readonly onEvent?: (e: ImmutableCacheEvent) => void
}

type Entry = { readonly kind: 'manifest', readonly value: ManifestDocument } | { readonly kind: 'config', readonly value: ImageConfig }

export class ImmutableCache {
  readonly #opts: ImmutableCacheOptions
  readonly #entries: LRUCache<string, Entry>
  readonly #inFlight = new InFlight<string, Entry>()

  constructor (opts: ImmutableCacheOptions) {
    this.#opts = opts
    this.#entries = new LRUCache({ max: Math.max(1, Math.floor(opts.maxEntries)) })
  }

  /** The manifest or index with this digest. */
  async manifest (ref: RepositoryRef, digest: string, signal?: AbortSignal): Promise<ManifestDocument> {
    const entry = await this.#get('manifest', ref, digest, signal, (s) => this.#opts.registry.getManifest(ref, digest, s))
    return (entry as Extract<Entry, { kind: 'manifest' }>).value
  }

  /** The config blob with this digest. */
  async config (ref: RepositoryRef, digest: string, signal?: AbortSignal): Promise<ImageConfig> {
    const entry = await this.#get('config', ref, digest, signal, (s) => this.#opts.registry.getConfig(ref, digest, s))
    return (entry as Extract<Entry, { kind: 'config' }>).value
  }

  /** The cached manifest, without I/O. */
  peekManifest (ref: RepositoryRef, digest: string): ManifestDocument | undefined {
    const e = this.#entries.get(key('manifest', ref, digest))
    return e?.kind === 'manifest' ? e.value : undefined
  }

  /** The cached config, without I/O. */
  peekConfig (ref: RepositoryRef, digest: string): ImageConfig | undefined {
    const e = this.#entries.get(key('config', ref, digest))
    return e?.kind === 'config' ? e.value : undefined
  }

  get size (): number { return this.#entries.size }

  #get (kind: Entry['kind'], ref: RepositoryRef, digest: string, signal: AbortSignal | undefined, fetch: (signal?: AbortSignal) => Promise<ManifestDocument | ImageConfig>): Promise<Entry> {
    const k = key(kind, ref, digest)
    const cached = this.#entries.get(k)
    if (cached !== undefined) {
      this.#opts.onEvent?.({ kind, result: 'hit' })
      return Promise.resolve(cached)
    }
    const shared = this.#inFlight.run(k, async () => {
      try {
        // No caller's signal: the fetch outlives any one review (the transport's timeout bounds it).
        const value = await fetch()
        const entry = { kind, value } as Entry
        this.#entries.set(k, entry)
        this.#opts.onEvent?.({ kind, result: 'miss' })
        return entry
      } catch (err) {
        this.#opts.onEvent?.({ kind, result: 'error' })
        throw err
      }
    })
    return signal === undefined ? shared : abortable(shared, signal)
  }
}

// Digests are content addresses, but a registry serves them per repository (a blob pushed to one
// repository is not readable through another): the key keeps the repository.
function key (kind: Entry['kind'], ref: RepositoryRef, digest: string): string {
  return `${kind}\u0000${ref.registry}/${ref.repository}@${digest}`
}

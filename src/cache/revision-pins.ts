// The cold path of pinning in a few requests (issue 15): CI records the commit an image was built
// from as org.opencontainers.image.revision (image-spec annotations.md, "Pre-Defined Annotation
// Keys"; docker/metadata-action writes it as a label, and as an annotation when asked), and tags
// the image with that commit. So instead of listing the repository and HEADing every SHA tag:
//  1. the tag's digest (the tag cache, already asked for it);
//  2. the revision, read from the manifest's or index's annotations, else from the config blob's
//     labels; for an index without it, from its first platform manifest (annotations, then config)
//     — documents by digest never change, so they come from the immutable cache;
//  3. candidate tags from pinning.shaTagTemplates;
//  4. each candidate's digest through the tag cache (a HEAD), in order: the first equal to the
//     tag's digest is the pin. A candidate with another digest is never used.
// What this cannot answer (no revision, no candidate with the digest) the caller asks the SHA-tag
// index for, within its budget.
import { LRUCache } from 'lru-cache'
import { isCodedError } from '../errors.js'
import { abortable } from '../async/abort.js'
import { InFlight } from '../async/in-flight.js'
import type { ManifestDocument, RepositoryRef } from '../registry/client.js'
import type { ImmutableCache } from './immutable-cache.js'
import type { TagCache } from './tag-cache.js'

/** image-spec annotations.md: "Source control revision identifier for the packaged software." */
export const REVISION_KEY = 'org.opencontainers.image.revision'

export interface RevisionPinsOptions {
  readonly tags: Pick<TagCache, 'resolveTag'>
  readonly documents: Pick<ImmutableCache, 'manifest' | 'config'>
  /** The candidate tags of a revision (src/policy/sha-tag-templates.ts candidateTags); [] when none. */
  readonly candidates: (revision: string) => readonly string[]
  /** Verified pins kept (LRU): a SHA tag never moves, so a found one is kept for good. */
  readonly maxEntries: number
  readonly onEvent?: (e: RevisionEvent) => void
}

export type RevisionOutcome =
  /** A candidate tag has the digest: the pin. */
  | { readonly kind: 'found'; readonly tag: string; readonly revision: string }
  /** Neither the manifest (or index, or its first platform manifest) nor the config names a revision. */
  | { readonly kind: 'no-revision' }
  /** A revision, but no candidate tag exists with this digest (`tried` lists them). */
  | { readonly kind: 'no-candidate'; readonly revision: string; readonly tried: readonly string[] }

export interface RevisionEvent {
  readonly result: RevisionOutcome['kind'] | 'error'
  /** Where the revision was read: the top manifest/index, or the first platform manifest of an index. */
  readonly from?: 'annotation' | 'label' | 'platform-annotation' | 'platform-label'
}

const keyOf = (ref: RepositoryRef, digest: string): string => `${ref.registry}/${ref.repository}@${digest}`

export class RevisionPins {
  readonly #opts: RevisionPinsOptions
  readonly #found: LRUCache<string, readonly string[]>
  readonly #running = new InFlight<string, RevisionOutcome>()

  constructor (opts: RevisionPinsOptions) {
    this.#opts = opts
    this.#found = new LRUCache({ max: Math.max(1, Math.floor(opts.maxEntries)) })
  }

  /** The verified SHA tag of this digest, as a one-element list, when already found (no I/O). */
  peek (ref: RepositoryRef, digest: string): readonly string[] | undefined {
    return this.#found.get(keyOf(ref, digest))
  }

  /**
   * The SHA tag for `digest` by its revision. Concurrent callers share one lookup; a caller's
   * signal ends only its wait. Registry errors reach the caller (the index would meet them too).
   */
  lookup (ref: RepositoryRef, digest: string, signal?: AbortSignal): Promise<RevisionOutcome> {
    const key = keyOf(ref, digest)
    const found = this.#found.get(key)
    if (found?.[0] !== undefined) return Promise.resolve({ kind: 'found', tag: found[0], revision: '' })
    return abortable(this.#running.run(key, () => this.#lookup(ref, digest, key)), signal)
  }

  async #lookup (ref: RepositoryRef, digest: string, key: string): Promise<RevisionOutcome> {
    try {
      const read = await this.#revision(ref, digest)
      if (read === undefined) return this.#emit({ kind: 'no-revision' })
      const tried = this.#opts.candidates(read.revision)
      for (const tag of tried) {
        let candidate: string
        try {
          candidate = (await this.#opts.tags.resolveTag(ref, tag)).digest
        } catch (err) {
          // CI has not pushed this form of the tag: try the next template.
          if (isCodedError(err, 'PULLPIN_REGISTRY_NOT_FOUND')) continue
          throw err
        }
        if (candidate !== digest) continue
        this.#found.set(key, [tag])
        return this.#emit({ kind: 'found', tag, revision: read.revision }, read.from)
      }
      return this.#emit({ kind: 'no-candidate', revision: read.revision, tried }, read.from)
    } catch (err) {
      this.#opts.onEvent?.({ result: 'error' })
      throw err
    }
  }

  /** The revision and where it was read, or undefined. At most 4 documents, each by digest. */
  async #revision (ref: RepositoryRef, digest: string): Promise<{ revision: string, from: NonNullable<RevisionEvent['from']> } | undefined> {
    const top = await this.#opts.documents.manifest(ref, digest)
    const own = await this.#fromManifest(ref, top)
    if (own !== undefined) return own
    if (top.kind !== 'index') return undefined
    // An index without it: its first platform manifest (buildx puts attestation manifests, with
    // platform unknown/unknown, after the images; they carry no revision).
    const first = top.manifests.find(m => m.platform === undefined || m.platform.os !== 'unknown')
    if (first === undefined) return undefined
    const fromEntry = revisionIn(first.annotations)
    if (fromEntry !== undefined) return { revision: fromEntry, from: 'platform-annotation' }
    const platform = await this.#opts.documents.manifest(ref, first.digest)
    if (platform.kind !== 'image') return undefined
    const read = await this.#fromManifest(ref, platform)
    return read === undefined ? undefined : { revision: read.revision, from: read.from === 'annotation' ? 'platform-annotation' : 'platform-label' }
  }

  async #fromManifest (ref: RepositoryRef, doc: ManifestDocument): Promise<{ revision: string, from: 'annotation' | 'label' } | undefined> {
    const annotated = revisionIn(doc.annotations)
    if (annotated !== undefined) return { revision: annotated, from: 'annotation' }
    if (doc.kind !== 'image' || doc.config === undefined) return undefined
    const labelled = revisionIn((await this.#opts.documents.config(ref, doc.config.digest)).labels)
    return labelled === undefined ? undefined : { revision: labelled, from: 'label' }
  }

  #emit (outcome: RevisionOutcome, from?: RevisionEvent['from']): RevisionOutcome {
    this.#opts.onEvent?.({ result: outcome.kind, ...(from === undefined ? {} : { from }) })
    return outcome
  }
}

function revisionIn (map: Readonly<Record<string, string>>): string | undefined {
  const v = Object.hasOwn(map, REVISION_KEY) ? map[REVISION_KEY] : undefined
  return v === undefined || v.trim() === '' ? undefined : v
}

// Memory of the tag cache, measured in a process of its own (node --expose-gc):
//  1. RSS with the cache empty (modules loaded, cache constructed, after GC): the baseline;
//  2. RSS after 100,000 tag → digest entries (maxEntries 100,000);
//  3. RSS after also indexing 100 repositories × 1,000 SHA tags (100,000 SHA-tag entries);
//  4. a bounded soak: 500,000 more distinct tags pushed through the LRU, RSS sampled every
//     100,000: the LRU bound must keep it flat.
//
// The cache only talks to a RegistryReader (src/cache/tag-cache.ts), so this measures the cache
// with a synthetic in-process reader that answers at once: the memory is the cache's own, not
// sockets' or a registry's. Digests are real sha256 strings, keys look like real image names.
//
//   node --expose-gc --import tsx bench/memory.ts      → one JSON line on stdout
import { createHash } from 'node:crypto'
import { TagCache, type RegistryReader } from '../src/cache/tag-cache.js'
import type { ManifestInfo, RepositoryRef } from '../src/registry/client.js'

const TAGS = 100_000
const REPOS = 100
const SHA_TAGS_PER_REPO = 1_000
const SOAK_TAGS = 500_000
const MEDIA_TYPE = 'application/vnd.oci.image.index.v1+json'

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with node --expose-gc')

// Strings as the registry client hands them over: parsed from HTTP headers, i.e. flat copies made
// from bytes (a template literal would make a ConsString instead, and skew the numbers).
const fromBytes = (s: string): string => Buffer.from(s, 'latin1').toString('latin1')
const digestOf = (s: string): string => fromBytes(`sha256:${createHash('sha256').update(s).digest('hex')}`)
const sha40 = (s: string): string => createHash('sha1').update(s).digest('hex')

const reader: RegistryReader = {
  headManifest (ref: RepositoryRef, reference: string): Promise<ManifestInfo> {
    // A SHA tag has the digest of the build it names; mutable tags point at some build.
    return Promise.resolve({ digest: digestOf(`${ref.repository}@${reference}`), mediaType: fromBytes(MEDIA_TYPE) })
  },
  listTags (ref: RepositoryRef): Promise<string[]> {
    return Promise.resolve(Array.from({ length: SHA_TAGS_PER_REPO }, (_, i) => sha40(`${ref.repository}-${i}`)))
  },
}

const cache = new TagCache({
  registry: reader,
  shaTagPatterns: [/^[0-9a-f]{40}$/, /^sha-[0-9a-f]{7,40}$/],
  ttlMs: 3_600_000,
  staleWhileRevalidateMs: 30_000,
  staleIfErrorMs: 3_600_000,
  negativeTtlMs: 10_000,
  maxEntries: TAGS,
  maxRepositories: 1_000,
  tagListMinIntervalMs: 10_000,
})

function rss (): number {
  gc!(); gc!()
  return process.memoryUsage().rss
}

/** Image-like names: 100 teams × 100 apps on one registry host, tags like CI's branch builds. */
function ref (i: number): { ref: RepositoryRef; tag: string } {
  return {
    ref: { registry: 'registry.example.com', repository: `team-${i % 100}/app-${Math.floor(i / 100) % 100}` },
    tag: `build-${i}`,
  }
}

async function fill (from: number, to: number): Promise<void> {
  for (let i = from; i < to; i += 1000) {
    const batch: Array<Promise<unknown>> = []
    for (let j = i; j < Math.min(to, i + 1000); j++) {
      const { ref: r, tag } = ref(j)
      batch.push(cache.resolveTag(r, tag))
    }
    await Promise.all(batch)
  }
}

const MiB = 1024 * 1024
const empty = rss()
const heapEmpty = process.memoryUsage().heapUsed
const t0 = performance.now()
await fill(0, TAGS)
const fillMs = performance.now() - t0
const afterTags = rss()
const heapAfterTags = process.memoryUsage().heapUsed
const t1 = performance.now()
for (let r = 0; r < REPOS; r++) await cache.warm({ registry: 'registry.example.com', repository: `indexed/repo-${r}` })
const indexMs = performance.now() - t1
const afterIndex = rss()
const heapAfterIndex = process.memoryUsage().heapUsed
const stats = cache.stats()

const soak: number[] = []
for (let k = 0; k < SOAK_TAGS / TAGS; k++) {
  await fill(TAGS * (k + 1), TAGS * (k + 2))
  soak.push(rss())
}
const afterSoak = cache.stats()

process.stdout.write(JSON.stringify({
  emptyMiB: empty / MiB,
  tags: stats.tags,
  shaTags: stats.shaTags,
  repositories: stats.repositories,
  fillMs,
  indexMs,
  afterTagsMiB: afterTags / MiB,
  tagsOverEmptyMiB: (afterTags - empty) / MiB,
  heapAfterTagsMiB: heapAfterTags / MiB,
  heapBytesPerTag: (heapAfterTags - heapEmpty) / TAGS,
  heapAfterIndexMiB: heapAfterIndex / MiB,
  heapBytesPerShaTag: (heapAfterIndex - heapAfterTags) / (REPOS * SHA_TAGS_PER_REPO),
  afterIndexMiB: afterIndex / MiB,
  indexOverEmptyMiB: (afterIndex - empty) / MiB,
  soakMiB: soak.map(b => b / MiB),
  soakTagsAfter: afterSoak.tags,
  soakGrowthMiB: (Math.max(...soak) - afterIndex) / MiB,
}) + '\n')

// A repository with thousands of SHA tags, built in seconds: one image is pushed with skopeo (its
// config and layer blobs), then one manifest per "CI build" is PUT straight to the registry API
// ("Pushing Manifests", distribution-spec), each with its own build number, so every SHA tag has
// its own digest, as years of CI would leave it.
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { request } from 'undici'
import { buildImage, MEDIA_TYPE_OCI_MANIFEST, type OciImageSpec } from './oci-layout.js'
import { gitSha } from './pinning-env.js'
import { sha256, type RegistryFixture } from './registry.js'

export interface Build {
  /** The 40-hex SHA tag (the build's commit). */
  readonly tag: string
  readonly digest: string
  /** The manifest bytes, to PUT under more tags (`latest`). */
  readonly manifest: Buffer
}

export interface ManyTagsOptions {
  /** Builds' commits are gitSha(`${seed}-${i}`). */
  readonly seed: string
  readonly count: number
  /** Each manifest names its commit as org.opencontainers.image.revision (as docker/metadata-action annotates). */
  readonly revisionAnnotation: boolean
  readonly concurrency?: number
}

/** The manifest of build `i` (not pushed). */
export function buildManifest (base: OciImageSpec, opts: Pick<ManyTagsOptions, 'seed' | 'revisionAnnotation'>, i: number): Build {
  const image = buildImage(base)
  const tag = gitSha(`${opts.seed}-${i}`)
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_MANIFEST,
    config: { mediaType: image.config.mediaType, digest: image.config.digest, size: image.config.size },
    layers: [{ mediaType: image.layer.mediaType, digest: image.layer.digest, size: image.layer.size }],
    annotations: {
      'pullpin.test.build': String(i),
      ...(opts.revisionAnnotation ? { 'org.opencontainers.image.revision': tag } : {}),
    },
  }))
  return { tag, digest: sha256(manifest), manifest }
}

/** PUTs `manifest` under each tag (registry API, `concurrency` at a time). */
export async function putManifest (registry: RegistryFixture, repo: string, manifest: Buffer, tags: readonly string[], concurrency = 16, mediaType: string = MEDIA_TYPE_OCI_MANIFEST): Promise<void> {
  const queue = [...tags]
  const authorization = registry.authorization(repo)
  const worker = async (): Promise<void> => {
    for (let tag = queue.shift(); tag !== undefined; tag = queue.shift()) {
      const res = await request(`${registry.url}/v2/${repo}/manifests/${tag}`, {
        method: 'PUT',
        dispatcher: registry.dispatcher,
        headers: { 'content-type': mediaType, ...(authorization === undefined ? {} : { authorization }) },
        body: manifest,
      })
      const text = await res.body.text()
      if (res.statusCode !== 201) throw new Error(`PUT ${repo}:${tag} answered ${res.statusCode}: ${text}`)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker))
}

/**
 * Puts `count` builds of `base` in `repo`, each under its 40-hex SHA tag (plus the base image under
 * "base", pushed by skopeo through the API). Returns the builds in order.
 *
 * The builds' manifests are written into the registry's filesystem storage, in the layout
 * distribution itself writes on a manifest PUT (registry/storage/paths.go: the manifest as a blob,
 * its revision link, the tag's current and index links), which the running registry serves like any
 * pushed manifest (a tag list and HEADs read the same files). Why not PUT them: 10,000 PUTs took
 * 63-72 s on the shared 2-core test machine, this takes seconds (with the storage on tmpfs:
 * fastStorage). The caller checks a sample through the API (the test does).
 */
export async function pushManyTags (registry: RegistryFixture, repo: string, base: OciImageSpec, opts: ManyTagsOptions): Promise<Build[]> {
  await registry.push(base, repo, ['base'])
  const builds = Array.from({ length: opts.count }, (_, i) => buildManifest(base, opts, i))
  const storage = (registry.config.storage as { filesystem?: { rootdirectory?: string } } | undefined)?.filesystem?.rootdirectory ?? join(registry.dir, 'data')
  const root = join(storage, 'docker', 'registry', 'v2')
  const manifests = join(root, 'repositories', repo, '_manifests')
  const write = async (file: string, data: string | Buffer): Promise<void> => {
    await mkdir(dirname(file), { recursive: true })
    await writeFile(file, data)
  }
  const queue = [...builds]
  const worker = async (): Promise<void> => {
    for (let b = queue.shift(); b !== undefined; b = queue.shift()) {
      const hex = b.digest.slice('sha256:'.length)
      await write(join(root, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data'), b.manifest)
      await write(join(manifests, 'revisions', 'sha256', hex, 'link'), b.digest)
      await write(join(manifests, 'tags', b.tag, 'index', 'sha256', hex, 'link'), b.digest)
      // Last: a tag whose current link exists is listed and served.
      await write(join(manifests, 'tags', b.tag, 'current', 'link'), b.digest)
    }
  }
  await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 32, queue.length) }, worker))
  return builds
}

/**
 * Registry options putting its storage on tmpfs when the machine has one (/dev/shm): 40,000 small
 * files are written in seconds there, a minute on the test machine's disk. `cleanup` removes it.
 */
export async function fastStorage (): Promise<{ configOverrides: Record<string, unknown>, cleanup: () => Promise<void> }> {
  const parent = await stat('/dev/shm').then(s => s.isDirectory() ? '/dev/shm' : tmpdir(), () => tmpdir())
  const dir = await mkdtemp(join(parent, 'pullpin-many-tags-'))
  return {
    configOverrides: {
      storage: { filesystem: { rootdirectory: dir }, delete: { enabled: true }, maintenance: { uploadpurging: { enabled: false } } },
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  }
}

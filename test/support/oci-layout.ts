// Deterministic OCI images built in memory and written as OCI image layouts, so tests can push
// real images (with skopeo, `oci:DIR:REF`) without any network. Everything derives from a `seed`
// string: the same seed always gives the same bytes and digests, different seeds give different
// digests. Media types and layout follow the OCI image spec v1.1:
//   image-layout.md (oci-layout file, index.json, blobs/<alg>/<hex>), manifest.md, image-index.md,
//   config.md (rootfs.diff_ids are digests of the *uncompressed* layer tars), layer.md.
import { createHash } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'

export const MEDIA_TYPE_OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const MEDIA_TYPE_OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const MEDIA_TYPE_OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
export const MEDIA_TYPE_OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip'
export const MEDIA_TYPE_OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar'

export interface Platform {
  os: string
  architecture: string
  variant?: string
}

export interface OciImageSpec {
  kind?: 'image'
  /** Everything (layer content, labels) derives from this string. */
  seed: string
  /** Default linux/amd64. */
  platform?: Platform
  /** Default 'gzip'. */
  layerCompression?: 'gzip' | 'none'
  /** Go into config.config.Labels (in addition to `pullpin.test.seed`). */
  labels?: Record<string, string>
  /** Manifest annotations. */
  annotations?: Record<string, string>
}

export interface OciIndexSpec {
  kind: 'index'
  seed: string
  /** Default linux/amd64 + linux/arm64. Each child image uses seed `${seed}/${os}/${arch}[/${variant}]`. */
  platforms?: Platform[]
  layerCompression?: 'gzip' | 'none'
  /** Index annotations. */
  annotations?: Record<string, string>
}

export interface Blob {
  mediaType: string
  digest: string // "sha256:<hex>"
  size: number
  bytes: Buffer
}

export interface BuiltImage {
  kind: 'image'
  mediaType: typeof MEDIA_TYPE_OCI_MANIFEST
  /** Manifest digest: what a registry reports as Docker-Content-Digest. */
  digest: string
  size: number
  manifest: Buffer
  config: Blob
  layer: Blob & { diffId: string }
  platform: Platform
  /** Every blob of the image: config, layer (not the manifest). */
  blobs: Blob[]
}

export interface BuiltIndex {
  kind: 'index'
  mediaType: typeof MEDIA_TYPE_OCI_INDEX
  /** Index digest. */
  digest: string
  size: number
  index: Buffer
  /** Child images in index order. */
  manifests: BuiltImage[]
  /** Config and layer blobs of every child (not the manifests or the index). */
  blobs: Blob[]
}

export type Built = BuiltImage | BuiltIndex

export type WrittenLayout<B extends Built = Built> = B & {
  dir: string
  /** The `org.opencontainers.image.ref.name` in the layout's index.json. */
  ref: string
  /** skopeo source name: `oci:${dir}:${ref}`. */
  ociReference: string
}

export const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' }
export const DEFAULT_INDEX_PLATFORMS: Platform[] = [
  { os: 'linux', architecture: 'amd64' },
  { os: 'linux', architecture: 'arm64' }
]

export function sha256Digest (bytes: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(bytes).digest('hex')
}

function blob (mediaType: string, bytes: Buffer): Blob {
  return { mediaType, digest: sha256Digest(bytes), size: bytes.length, bytes }
}

function json (value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8')
}

function platformPath (p: Platform): string {
  return p.variant === undefined ? `${p.os}/${p.architecture}` : `${p.os}/${p.architecture}/${p.variant}`
}

/** A one-file ustar archive (POSIX.1-1988 header, mtime 0, root-owned) so its bytes are reproducible. */
export function tarOneFile (name: string, content: Buffer): Buffer {
  const header = Buffer.alloc(512, 0)
  const put = (value: string, offset: number, length: number): void => {
    header.write(value, offset, Math.min(length, Buffer.byteLength(value)), 'utf8')
  }
  const octal = (n: number, length: number): string => n.toString(8).padStart(length - 1, '0') + '\0'
  put(name, 0, 100)
  put(octal(0o644, 8), 100, 8)
  put(octal(0, 8), 108, 8) // uid
  put(octal(0, 8), 116, 8) // gid
  put(octal(content.length, 12), 124, 12)
  put(octal(0, 12), 136, 12) // mtime
  put('        ', 148, 8) // checksum is computed with its own field as spaces
  put('0', 156, 1) // regular file
  put('ustar\0', 257, 6)
  put('00', 263, 2)
  put('root', 265, 32)
  put('root', 297, 32)
  let sum = 0
  for (const byte of header) sum += byte
  put(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8)
  const pad = (512 - (content.length % 512)) % 512
  // The archive ends with two zero blocks.
  return Buffer.concat([header, content, Buffer.alloc(pad, 0), Buffer.alloc(1024, 0)])
}

export function buildImage (spec: OciImageSpec): BuiltImage {
  const platform = spec.platform ?? DEFAULT_PLATFORM
  const tar = tarOneFile('pullpin-seed.txt', Buffer.from(`${spec.seed}\n`, 'utf8'))
  const diffId = sha256Digest(tar)
  // Node's gzip writes MTIME 0 and a fixed OS byte, so the compressed bytes are reproducible too.
  const layer = (spec.layerCompression ?? 'gzip') === 'gzip'
    ? { ...blob(MEDIA_TYPE_OCI_LAYER_GZIP, gzipSync(tar, { level: 9 })), diffId }
    : { ...blob(MEDIA_TYPE_OCI_LAYER_TAR, tar), diffId }

  const config = blob(MEDIA_TYPE_OCI_CONFIG, json({
    created: '1970-01-01T00:00:00Z',
    architecture: platform.architecture,
    ...(platform.variant === undefined ? {} : { variant: platform.variant }),
    os: platform.os,
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Labels: { 'pullpin.test.seed': spec.seed, ...spec.labels }
    },
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [{ created: '1970-01-01T00:00:00Z', created_by: `pullpin test image ${spec.seed}` }]
  }))

  const manifest = json({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_MANIFEST,
    config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
    layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
    ...(spec.annotations === undefined ? {} : { annotations: spec.annotations })
  })

  return {
    kind: 'image',
    mediaType: MEDIA_TYPE_OCI_MANIFEST,
    digest: sha256Digest(manifest),
    size: manifest.length,
    manifest,
    config,
    layer,
    platform,
    blobs: [config, layer]
  }
}

export function buildIndex (spec: OciIndexSpec): BuiltIndex {
  const platforms = spec.platforms ?? DEFAULT_INDEX_PLATFORMS
  const manifests = platforms.map((platform) => buildImage({
    seed: `${spec.seed}/${platformPath(platform)}`,
    platform,
    ...(spec.layerCompression === undefined ? {} : { layerCompression: spec.layerCompression })
  }))
  const index = json({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_INDEX,
    manifests: manifests.map((m) => ({
      mediaType: m.mediaType,
      digest: m.digest,
      size: m.size,
      platform: {
        architecture: m.platform.architecture,
        os: m.platform.os,
        ...(m.platform.variant === undefined ? {} : { variant: m.platform.variant })
      }
    })),
    ...(spec.annotations === undefined ? {} : { annotations: spec.annotations })
  })
  return {
    kind: 'index',
    mediaType: MEDIA_TYPE_OCI_INDEX,
    digest: sha256Digest(index),
    size: index.length,
    index,
    manifests,
    blobs: manifests.flatMap((m) => m.blobs)
  }
}

export function build (spec: OciImageSpec): BuiltImage
export function build (spec: OciIndexSpec): BuiltIndex
export function build (spec: OciImageSpec | OciIndexSpec): Built
export function build (spec: OciImageSpec | OciIndexSpec): Built {
  return spec.kind === 'index' ? buildIndex(spec) : buildImage(spec)
}

async function writeBlob (dir: string, digest: string, bytes: Buffer): Promise<void> {
  const [alg, hex] = digest.split(':') as [string, string]
  await writeFile(join(dir, 'blobs', alg, hex), bytes)
}

async function writeLayoutFiles (dir: string, ref: string, top: Blob, blobs: Blob[]): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true })
  await writeFile(join(dir, 'oci-layout'), json({ imageLayoutVersion: '1.0.0' }))
  for (const b of [...blobs, top]) await writeBlob(dir, b.digest, b.bytes)
  await writeFile(join(dir, 'index.json'), json({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_INDEX,
    manifests: [{
      mediaType: top.mediaType,
      digest: top.digest,
      size: top.size,
      annotations: { 'org.opencontainers.image.ref.name': ref }
    }]
  }))
}

/** Writes a single-arch image as an OCI layout in `dir` (created if missing). */
export async function writeImageLayout (dir: string, spec: OciImageSpec, ref = 'latest'): Promise<WrittenLayout<BuiltImage>> {
  const image = buildImage(spec)
  await writeLayoutFiles(dir, ref, blob(image.mediaType, image.manifest), image.blobs)
  return { ...image, dir, ref, ociReference: `oci:${dir}:${ref}` }
}

/** Writes a multi-arch image (an OCI image index over one manifest per platform) as an OCI layout. */
export async function writeIndexLayout (dir: string, spec: OciIndexSpec, ref = 'latest'): Promise<WrittenLayout<BuiltIndex>> {
  const index = buildIndex(spec)
  const children = index.manifests.map((m) => blob(m.mediaType, m.manifest))
  await writeLayoutFiles(dir, ref, blob(index.mediaType, index.index), [...index.blobs, ...children])
  return { ...index, dir, ref, ociReference: `oci:${dir}:${ref}` }
}

export function writeLayout (dir: string, spec: OciImageSpec, ref?: string): Promise<WrittenLayout<BuiltImage>>
export function writeLayout (dir: string, spec: OciIndexSpec, ref?: string): Promise<WrittenLayout<BuiltIndex>>
export function writeLayout (dir: string, spec: OciImageSpec | OciIndexSpec, ref?: string): Promise<WrittenLayout>
export function writeLayout (dir: string, spec: OciImageSpec | OciIndexSpec, ref = 'latest'): Promise<WrittenLayout> {
  return spec.kind === 'index' ? writeIndexLayout(dir, spec, ref) : writeImageLayout(dir, spec, ref)
}

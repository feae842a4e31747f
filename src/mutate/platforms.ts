// Platforms: which os/architecture builds an image has, which ones the nodes a pod can land on
// need, and what is missing. Pure functions over data (the manifest, the config blob, labels).
import type { ImageConfig, ManifestDocument, Platform } from '../registry/client.js'
import type { Pod } from './pod.js'

/** "os/architecture[/variant]", as in checks.nodePlatforms and `docker --platform`. */
export function parsePlatform (s: string): Platform | undefined {
  const [os, architecture, variant] = s.split('/')
  if (os === undefined || os === '' || architecture === undefined || architecture === '') return undefined
  return variant !== undefined && variant !== '' ? { os, architecture, variant } : { os, architecture }
}

export function formatPlatform (p: Platform): string {
  return p.variant !== undefined ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`
}

/**
 * The Node labels that say a node's platform (kubelet well-known labels, k8s.io/api
 * core/v1 well_known_labels.go: LabelOSStable, LabelArchStable).
 */
export const OS_LABEL = 'kubernetes.io/os'
export const ARCH_LABEL = 'kubernetes.io/arch'

/**
 * The platforms among `nodes` a pod can land on: its nodeSelector's kubernetes.io/os and
 * kubernetes.io/arch narrow them. A selector no node matches leaves the selector's own platform
 * (the pod cannot be scheduled yet, but the image must still run where it asks to).
 */
export function podPlatforms (pod: Pod, nodes: readonly Platform[]): readonly Platform[] {
  const selector = pod.spec?.nodeSelector
  const sel = selector !== null && typeof selector === 'object' && !Array.isArray(selector) ? selector as Record<string, unknown> : {}
  const os = typeof sel[OS_LABEL] === 'string' ? sel[OS_LABEL] : undefined
  const arch = typeof sel[ARCH_LABEL] === 'string' ? sel[ARCH_LABEL] : undefined
  // The nodes' own list, not a copy: the check step keys its memo by this list's identity.
  if (os === undefined && arch === undefined) return nodes
  const out = nodes.filter(n => (os === undefined || n.os === os) && (arch === undefined || n.architecture === arch))
  if (out.length > 0) return out
  return os !== undefined && arch !== undefined ? [{ os, architecture: arch }] : []
}

/**
 * The platforms an image offers: an index's entries (without the "unknown/unknown" entries
 * BuildKit adds for attestations), or the one platform of a single image's config. Undefined when
 * it cannot be told (a config without os/architecture): nothing is reported then.
 */
export function imagePlatforms (doc: ManifestDocument, config: ImageConfig | undefined): Platform[] | undefined {
  if (doc.kind === 'index') {
    const out: Platform[] = []
    for (const m of doc.manifests) {
      const p = m.platform
      if (p !== undefined && p.os !== 'unknown' && p.architecture !== 'unknown') out.push(p)
    }
    return out.length > 0 ? out : undefined
  }
  if (config?.os === undefined || config.architecture === undefined) return undefined
  return [config.variant !== undefined ? { os: config.os, architecture: config.architecture, variant: config.variant } : { os: config.os, architecture: config.architecture }]
}

/**
 * Whether an image platform runs on a node platform, as containerd's platform matcher decides
 * (containerd/platforms: os and architecture equal after normalisation; a node's variant must
 * equal the image's when the image names one; arm64 without a variant is v8).
 */
export function runsOn (image: Platform, node: Platform): boolean {
  if (normalizeOs(image.os) !== normalizeOs(node.os)) return false
  const a = normalizeArch(image.architecture, image.variant)
  const b = normalizeArch(node.architecture, node.variant)
  if (a.arch !== b.arch) return false
  return a.variant === undefined || b.variant === undefined || a.variant === b.variant
}

/** The node platforms no image platform runs on. */
export function missingPlatforms (offered: readonly Platform[], wanted: readonly Platform[]): Platform[] {
  return wanted.filter(w => !offered.some(o => runsOn(o, w)))
}

function normalizeOs (os: string): string {
  return os.toLowerCase() === 'macos' ? 'darwin' : os.toLowerCase()
}

// containerd/platforms database.go normalizeArch.
function normalizeArch (arch: string, variant: string | undefined): { arch: string; variant: string | undefined } {
  const a = arch.toLowerCase()
  const v = variant?.toLowerCase()
  switch (a) {
    case 'i386': return { arch: '386', variant: undefined }
    case 'x86_64': case 'x86-64': case 'amd64': return { arch: 'amd64', variant: v === 'v1' ? undefined : v }
    case 'aarch64': case 'arm64': return { arch: 'arm64', variant: v === undefined || v === '8' || v === 'v8' ? undefined : v }
    case 'armhf': return { arch: 'arm', variant: 'v7' }
    case 'armel': return { arch: 'arm', variant: 'v6' }
    case 'arm': return { arch: 'arm', variant: v === undefined || v === '7' ? 'v7' : v === '5' || v === '6' || v === '8' ? `v${v}` : v }
    default: return { arch: a, variant: v }
  }
}

// The slice of the Pod API pullpin reads and writes (core/v1 Pod). Kept structural and partial on
// purpose: everything else in the object passes through untouched, and the patch is computed by
// diffing, so fields pullpin does not know about can never be lost.

export interface Container { name: string; image?: string; [k: string]: unknown }
export interface LocalObjectReference { name?: string; [k: string]: unknown }

/** An image volume (core/v1 ImageVolumeSource, Kubernetes 1.31+): `image.reference` is pulled like a container's image. */
export interface Volume { name?: string; image?: { reference?: string; [k: string]: unknown }; [k: string]: unknown }

export interface PodSpec {
  volumes?: Volume[]
  containers?: Container[]
  initContainers?: Container[]
  ephemeralContainers?: Container[]
  imagePullSecrets?: LocalObjectReference[]
  serviceAccountName?: string
  [k: string]: unknown
}

export interface ObjectMeta {
  name?: string
  generateName?: string
  namespace?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
  ownerReferences?: Array<{ uid: string; kind: string; name: string; controller?: boolean; [k: string]: unknown }>
  [k: string]: unknown
}

export interface Pod {
  apiVersion?: string
  kind?: string
  metadata?: ObjectMeta
  spec?: PodSpec
  [k: string]: unknown
}

export const CONTAINER_FIELDS = ['initContainers', 'containers', 'ephemeralContainers'] as const
export type ContainerField = typeof CONTAINER_FIELDS[number]

/** Where an image stands: a container list, or an image volume (spec.volumes[].image.reference). */
export type ImageField = ContainerField | 'volumes'

export interface ImageSite {
  readonly field: ImageField
  readonly index: number
  /** The container's name, or the image volume's. */
  readonly container: string
  readonly image: string
}

/**
 * Every image of a pod with where it stands: containers, then image volumes (the kubelet pulls
 * those too, with the pod's imagePullSecrets). Containers without an image are passed over.
 */
export function listImages (pod: Pod): ImageSite[] {
  const out: ImageSite[] = []
  const spec = pod.spec
  if (spec === undefined || spec === null) return out
  for (const field of CONTAINER_FIELDS) {
    const list = spec[field]
    if (!Array.isArray(list)) continue
    for (let index = 0; index < list.length; index++) {
      const c = list[index]
      if (c !== null && typeof c === 'object' && typeof c.image === 'string' && c.image !== '') {
        out.push({ field, index, container: typeof c.name === 'string' ? c.name : `${field}[${index}]`, image: c.image })
      }
    }
  }
  const volumes = spec.volumes
  if (Array.isArray(volumes)) {
    for (let index = 0; index < volumes.length; index++) {
      const v = volumes[index]
      const reference = v !== null && typeof v === 'object' && v.image !== null && typeof v.image === 'object' ? v.image.reference : undefined
      if (typeof reference === 'string' && reference !== '') {
        out.push({ field: 'volumes', index, container: typeof v!.name === 'string' ? v!.name : `volumes[${index}]`, image: reference })
      }
    }
  }
  return out
}

/** The image written at a site of `pod` (a draft: after the steps' changes), if any. */
export function imageAt (pod: Pod, site: ImageSite): string | undefined {
  if (site.field === 'volumes') {
    const ref = pod.spec?.volumes?.[site.index]?.image?.reference
    return typeof ref === 'string' ? ref : undefined
  }
  const image = pod.spec?.[site.field]?.[site.index]?.image
  return typeof image === 'string' ? image : undefined
}

/** Writes `image` at a site of a draft (draftOf copies every object on the way). */
export function setImageAt (pod: Pod, site: ImageSite, image: string): void {
  if (site.field === 'volumes') pod.spec!.volumes![site.index]!.image!.reference = image
  else pod.spec![site.field]![site.index]!.image = image
}

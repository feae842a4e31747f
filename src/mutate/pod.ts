// The slice of the Pod API pullpin reads and writes (core/v1 Pod). Kept structural and partial on
// purpose: everything else in the object passes through untouched, and the patch is computed by
// diffing, so fields pullpin does not know about can never be lost.

export interface Container { name: string; image?: string; [k: string]: unknown }
export interface LocalObjectReference { name?: string; [k: string]: unknown }

export interface PodSpec {
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

export interface ImageSite {
  readonly field: ContainerField
  readonly index: number
  readonly container: string
  readonly image: string
}

/** Every image of a pod with where it stands; containers without an image are passed over. */
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
  return out
}

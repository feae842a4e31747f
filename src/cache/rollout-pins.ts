// One pin per rollout: the pods of one pod-template revision (a ReplicaSet's pod-template-hash, a
// StatefulSet's or DaemonSet's controller-revision-hash, a Job's controller UID) get the pin its
// first pod got, even when the tag moved in between. The first pin of each (revision, image as
// written) is remembered here; a replica that has none for a revision asks the cluster once for a
// pod of that revision it (or another replica) already admitted and reuses the pins recorded on
// it (the pullpin.io/pins annotation), so replicas and restarts agree (README "Pinning").
// Bounded by an LRU over revisions: a revision that ended gets no more pods, is no longer read,
// and so is the first to go.
import { LRUCache } from 'lru-cache'
import { InFlight } from '../async/in-flight.js'
import { tryParseImageReference } from '../reference/parse.js'

export interface RememberedPin {
  readonly to: string
  readonly verified: boolean
  /** The digest the pin stands for (a SHA tag's too), recorded in pullpin.io/pins. */
  readonly digest?: string
}

/** The revision label that selects a rollout's pods, by the kind of their controller. */
export const REVISION_LABELS: Readonly<Record<string, readonly string[]>> = {
  ReplicaSet: ['pod-template-hash'],
  StatefulSet: ['controller-revision-hash'],
  DaemonSet: ['controller-revision-hash'],
  // Jobs label their pods with their own UID (the unprefixed label before Kubernetes 1.27).
  Job: ['batch.kubernetes.io/controller-uid', 'controller-uid'],
}

export interface Revision {
  /** namespace, controller UID and revision label: never shared by two rollouts. */
  readonly key: string
  readonly namespace: string
  readonly ownerUid: string
  /** The label selecting the revision's pods; absent when the pod carries none (memory only). */
  readonly label?: { readonly name: string; readonly value: string }
}

/**
 * Reads the pullpin.io/pins annotations of pods of `revision` already stored in the cluster
 * (src/cluster/admitted-pins.ts), the one to trust first; [] when there is none. Throws when the
 * API server did not answer in time.
 */
export type AdmittedPinsReader = (revision: Revision & { readonly label: NonNullable<Revision['label']> }, signal: AbortSignal) => Promise<readonly string[]>

/**
 * Where a pod's pins came from: this replica's memory, a pod of the revision in the cluster, the
 * registry because the API server did not answer, or the registry for the revision's first pod.
 */
export type PinSource = 'memory' | 'cluster' | 'registry' | 'first'

export interface RolloutPinsOptions {
  /** Pins remembered (registry.cache.ownerPins); 0 turns the memory off. */
  readonly max: number
  /** Absent without a cluster: memory in process only. */
  readonly reader?: AdmittedPinsReader
  /** The API server did not answer (called on each failure; the caller logs once). */
  readonly onUnreachable?: (err: unknown) => void
  /** The API server answered again after failing. */
  readonly onReachable?: () => void
}

export class RolloutPins {
  private readonly pins: LRUCache<string, Map<string, RememberedPin>> | undefined
  private readonly loading = new InFlight<string, PinSource>()
  private readonly reader: AdmittedPinsReader | undefined
  private unreachable = false

  constructor (private readonly opts: RolloutPinsOptions) {
    // Sized in pins, not revisions, as the memory it bounds; a revision known to have no pins yet counts one.
    this.pins = opts.max > 0 ? new LRUCache({ maxSize: opts.max, sizeCalculation: (m) => Math.max(1, m.size) }) : undefined
    this.reader = opts.reader
  }

  /** The revision's pins are known here (remembered, or the cluster was asked): no I/O needed. */
  has (revision: Revision): boolean {
    return this.pins?.has(revision.key) ?? false
  }

  get (revision: Revision, image: string): RememberedPin | undefined {
    return this.pins?.get(revision.key)?.get(image)
  }

  /** The first pin of (revision, image) stays. */
  remember (revision: Revision, image: string, pin: RememberedPin): void {
    if (this.pins === undefined) return
    const known = this.pins.get(revision.key)
    if (known?.has(image) === true) return
    const next = new Map(known)
    next.set(image, pin)
    this.pins.set(revision.key, next)
  }

  /**
   * Fill the memory for a revision it does not know, from a pod of that revision in the cluster
   * (one request per revision, shared by the concurrent reviews that need it). Never throws.
   */
  load (revision: Revision, signal: AbortSignal): Promise<PinSource> {
    const reader = this.reader
    const label = revision.label
    if (reader === undefined || label === undefined || this.pins === undefined) {
      this.mark(revision)
      return Promise.resolve('first')
    }
    return this.loading.run(revision.key, async () => {
      let annotations: readonly string[]
      try {
        annotations = await reader({ ...revision, label }, signal)
      } catch (err) {
        this.unreachable = true
        this.opts.onUnreachable?.(err)
        // Not marked as asked: the pod is pinned from the registry and remembers that pin, so
        // this replica at least stays consistent with itself for the revision.
        return 'registry'
      }
      if (this.unreachable) {
        this.unreachable = false
        this.opts.onReachable?.()
      }
      for (const text of annotations) {
        const pins = parsePinsAnnotation(text)
        if (pins.size === 0) continue
        const known = this.pins!.get(revision.key)
        // Pins this replica remembered meanwhile stay (first pin wins); the rest come from the pod.
        this.pins!.set(revision.key, known === undefined ? pins : new Map([...pins, ...known]))
        return 'cluster'
      }
      this.mark(revision)
      return 'first'
    })
  }

  private mark (revision: Revision): void {
    if (this.pins !== undefined && !this.pins.has(revision.key)) this.pins.set(revision.key, new Map())
  }

  /** Pins remembered. */
  get size (): number { return this.pins?.calculatedSize ?? 0 }
}

/** One container's entry in pullpin.io/pins. */
export interface PinRecord {
  /** The image as written. */
  readonly image: string
  /** What pullpin wrote instead. */
  readonly pin: string
  readonly digest?: string
}

/**
 * image as written → pin, from a pullpin.io/pins value (container name → PinRecord). Entries that
 * are malformed, or whose pin names another repository than the image (a hand-written annotation
 * must not move a rollout to another image), are ignored.
 */
export function parsePinsAnnotation (text: string): Map<string, RememberedPin> {
  const out = new Map<string, RememberedPin>()
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return out
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return out
  for (const entry of Object.values(parsed as Record<string, unknown>)) {
    if (entry === null || typeof entry !== 'object') continue
    const { image, pin, digest } = entry as Record<string, unknown>
    if (typeof image !== 'string' || typeof pin !== 'string' || out.has(image)) continue
    const from = tryParseImageReference(image)
    const to = tryParseImageReference(pin)
    if (!from.ok || !to.ok || from.ref.registry !== to.ref.registry || from.ref.name !== to.ref.name) continue
    if (pin === image) continue
    out.set(image, { to: pin, verified: true, ...(typeof digest === 'string' && /^sha256:[0-9a-f]{64}$/.test(digest) ? { digest } : {}) })
  }
  return out
}

// The mutation pipeline: steps edit a draft of the pod and record what they changed; the JSON
// patch is then made by diffing the request's object against the draft (fast-json-patch), so a
// patch can only ever express changes that were really made, and applying it to the request's
// object gives exactly the draft.
//
// Steps may change four things, and only these are copied and diffed: metadata.annotations,
// spec.imagePullSecrets, the containers' `image` and image volumes' `image.reference`. The draft shares every other part with the
// request's object, and the diff compares only the projection of both onto those fields, so a
// patch cannot touch anything else whatever a step does (and the draft costs a fraction of a
// whole-pod copy: BENCHMARKS.md, "Profile findings", bench/pieces.ts).
import fastJsonPatch from 'fast-json-patch'
import type { Operation } from 'fast-json-patch'
import type { Mode } from '../policy/config.js'
import { tryParseImageReference, type ReferenceParse } from '../reference/parse.js'
import { CHUNK_SIZE, forEachChunked, nextTurn } from './chunks.js'
import { IMAGE_MEMO_SIZE, memoize } from './memoize.js'
import { CONTAINER_FIELDS, listImages, type ContainerField, type ImageField, type ImageSite, type Pod } from './pod.js'
import type { Finding } from './findings.js'
import { SKIP_CONTAINERS_ANNOTATION } from '../policy/annotations.js'

export type AdmissionOperation = 'CREATE' | 'UPDATE'

/** What a step changed (or, in audit mode, would change). */
export type Change =
  | { readonly kind: 'secret'; readonly secret: string }
  | {
    readonly kind: 'pin'
    readonly field: ImageField
    readonly container: string
    readonly from: string
    readonly to: string
    /** true when the SHA tag's digest was compared with the tag's digest at the registry. */
    readonly verified: boolean
    /** The digest `to` names, when the registry was asked this review (the checks need not ask again). */
    readonly digest?: string
  }

export interface MutationContext {
  readonly operation: AdmissionOperation
  /** 'ephemeralcontainers' for the pods/ephemeralcontainers subresource, else undefined. */
  readonly subResource: string | undefined
  readonly namespace: string
  readonly mode: Mode
  /** request.dryRun: the patch is still computed; side effects (secret copies…) must not happen. */
  readonly dryRun: boolean
  readonly original: Readonly<Pod>
  readonly oldObject: Readonly<Pod> | undefined
  /**
   * The draft every step edits: only its annotations, imagePullSecrets and container images may
   * change (see the top of this file); everything else is the request's object itself, read-only.
   */
  readonly pod: Pod
  /** Images of the request's object, computed once. */
  readonly images: readonly ImageSite[]
  /**
   * Every distinct image string of `images`, parsed once for the whole review: secret selection
   * and pinning both read it, so no image is parsed twice and an invalid one costs no exception.
   */
  readonly references: ReadonlyMap<string, ReferenceParse>
  /** The review's deadline: steps doing I/O must give up when its signal aborts and leave the pod as it is. */
  readonly deadline: Deadline
  readonly changes: Change[]
  /** What the pull-readiness checks found, as data (findings.ts); also told in `warnings`. */
  readonly findings: Finding[]
  /** Human-facing findings: each becomes an admission warning (and a log field). */
  readonly warnings: string[]
  /** The full story behind short warnings (registry error messages…): logged, never sent to the client. */
  readonly diagnostics: string[]
  /** Set by a step to deny the pod (for example checks.exists: deny). */
  deny: string | undefined
}

/**
 * A review's deadline. The signal is made on first use, so a review that needs no I/O (every
 * answer in a cache) never pays for a timer (BENCHMARKS.md, "Where the CPU per review goes").
 */
export interface Deadline {
  readonly signal: AbortSignal
  /** The whole review's deadline, in ms (Infinity when there is none, as for `pullpin resolve`). */
  readonly ms: number
  /** ms left before the review's deadline (Infinity when there is none). */
  remainingMs (): number
}

export interface MutationStep {
  readonly name: string
  /** Which operations the step runs on. Secrets are CREATE-only: the API server rejects spec changes on UPDATE except images. */
  readonly operations: readonly AdmissionOperation[]
  /**
   * Edits `ctx.pod`: its annotations, imagePullSecrets and container images, nothing else (only
   * those are diffed into the patch). Always a Promise; the review's deadline is raced around the
   * whole review by the handler, and costs nothing when every answer comes from a cache.
   */
  run (ctx: MutationContext): Promise<void>
}

export interface MutationInput {
  readonly operation: AdmissionOperation
  readonly subResource?: string | undefined
  readonly namespace: string
  readonly mode: Mode
  readonly dryRun: boolean
  readonly object: Pod
  readonly oldObject?: Pod | undefined
  readonly deadline: Deadline
}

export interface MutationResult {
  readonly pod: Pod
  readonly patch: Operation[]
  readonly changes: readonly Change[]
  readonly findings: readonly Finding[]
  readonly warnings: readonly string[]
  readonly diagnostics: readonly string[]
  readonly deny: string | undefined
}

/** The caller awaits it, raced against the review's deadline (src/admission/deadline.ts). */
export type Mutator = (input: MutationInput) => Promise<MutationResult>

export interface MutatorOptions {
  /**
   * More distinct images than this in one pod: the pod is left unchanged with one warning, or
   * denied when `failOpen` is false (limits.maxImagesPerReview). Undefined: no cap.
   */
  readonly maxImagesPerReview?: number
  readonly failOpen?: boolean
  /** The reference parser (tests count its calls); tryParseImageReference by default. */
  readonly parse?: (image: string) => ReferenceParse
}

export function createMutator (steps: readonly MutationStep[], opts: MutatorOptions = {}): Mutator {
  const maxImages = opts.maxImagesPerReview ?? Infinity
  const failOpen = opts.failOpen ?? true
  // Across reviews too: the pods of one Deployment repeat the same few images.
  const parse = memoize(IMAGE_MEMO_SIZE, opts.parse ?? tryParseImageReference)
  return async function mutate (input) {
    const images = withoutSkipped(input.object, listImages(input.object))
    const distinct = new Map<string, ReferenceParse | undefined>()
    for (const site of images) {
      if (distinct.has(site.image)) continue
      if (distinct.size >= maxImages) return overLimit(input, maxImages, failOpen)
      distinct.set(site.image, undefined)
    }
    const keys = [...distinct.keys()]
    const ctx: MutationContext = {
      operation: input.operation,
      subResource: input.subResource,
      namespace: input.namespace,
      mode: input.mode,
      dryRun: input.dryRun,
      original: input.object,
      oldObject: input.oldObject,
      pod: draftOf(input.object),
      images,
      references: distinct as Map<string, ReferenceParse>,
      deadline: input.deadline,
      changes: [],
      findings: [],
      warnings: [],
      diagnostics: [],
      deny: undefined,
    }
    await forEachChunked(keys.length, i => { distinct.set(keys[i]!, parse(keys[i]!)) }, () => deadlineReason(ctx))
    for (const step of steps) {
      if (!step.operations.includes(ctx.operation)) continue
      await step.run(ctx)
      if (ctx.deny !== undefined) break
    }
    // A huge pod's diff and response are built after a turn of the event loop, like its steps.
    if (images.length > CHUNK_SIZE) await nextTurn()
    return finish(ctx)
  }
}

/**
 * The images left once the pod's pullpin.io/skip-containers names are taken out: no step sees
 * them (no secret chosen for them, no pin, no check), as with sidecars injected by a mesh.
 */
function withoutSkipped (pod: Pod, images: ImageSite[]): ImageSite[] {
  const value = pod.metadata?.annotations?.[SKIP_CONTAINERS_ANNOTATION]
  if (typeof value !== 'string' || value === '') return images
  const skipped = new Set(value.split(',').map(s => s.trim()).filter(s => s !== ''))
  return skipped.size === 0 ? images : images.filter(site => !skipped.has(site.container))
}

/** The review's deadline has passed: a huge pod's remaining work is dropped (the handler has answered). */
export function deadlineReason (ctx: MutationContext): Error | undefined {
  const signal = ctx.deadline.signal
  return signal.aborted ? signal.reason as Error : undefined
}

function overLimit (input: MutationInput, max: number, failOpen: boolean): MutationResult {
  const reason = `pod has more than ${max} distinct images (limits.maxImagesPerReview)`
  return {
    pod: input.object,
    patch: [],
    changes: [],
    findings: [],
    warnings: [`pullpin: ${reason}; pod ${failOpen ? 'admitted unchanged' : 'denied (failOpen is false)'}`],
    diagnostics: [],
    deny: failOpen ? undefined : reason,
  }
}

async function finish (ctx: MutationContext): Promise<MutationResult> {
  // Audit mode reports the changes and never sends a patch: no diff to make.
  const patch = ctx.deny !== undefined || ctx.mode !== 'enforce' ? [] : await podPatch(ctx.original, ctx.pod, () => deadlineReason(ctx))
  return { pod: ctx.pod, patch, changes: ctx.changes, findings: ctx.findings, warnings: ctx.warnings, diagnostics: ctx.diagnostics, deny: ctx.deny }
}

function isObject (v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/**
 * The draft: shallow copies along the paths a step may write (the pod, metadata, annotations,
 * spec, the container lists and each container), everything below them shared. Object spread
 * defines properties, so a "__proto__" key parsed from JSON stays an own property.
 */
export function draftOf (pod: Pod): Pod {
  const draft: Pod = { ...pod }
  const meta = pod.metadata
  if (isObject(meta)) {
    draft.metadata = { ...meta }
    if (isObject(meta.annotations)) draft.metadata.annotations = { ...meta.annotations }
  }
  const spec = pod.spec
  if (isObject(spec)) {
    const s = draft.spec = { ...spec }
    for (const field of CONTAINER_FIELDS) {
      const list = spec[field]
      if (Array.isArray(list)) s[field] = list.map(c => isObject(c) ? { ...c } : c)
    }
    // Image volumes (Kubernetes 1.31+) only when the pod has one: most pods have none, and then
    // the volumes are neither copied nor diffed.
    const volumes = spec.volumes
    if (Array.isArray(volumes) && volumes.some(v => isObject(v) && isObject(v.image))) {
      s.volumes = volumes.map(v => isObject(v) && isObject(v.image) ? { ...v, image: { ...v.image } } : v)
    }
  }
  return draft
}

/**
 * The JSON patch that turns `original` into `draft`, over the fields a step may change: the diff
 * of their projections. The container lists are diffed container by container (what
 * fast-json-patch's compare does to them, in its order: lists and indexes from last to first,
 * before the rest of the projection), so the cost is linear and a huge pod's diff runs in slices
 * with turns of the event loop between them (chunks.ts); `stop` is asked between slices.
 */
export async function podPatch (original: Pod, draft: Pod, stop?: () => Error | undefined): Promise<Operation[]> {
  const lists = pairedLists(original, draft)
  const ops: Operation[] = []
  // The annotations are diffed apart from the rest when their ops come last in compare's order
  // (both pods have metadata, the draft adds no top-level field).
  const apart = isObject(original.metadata) && isObject(draft.metadata) && (original.spec !== undefined || draft.spec === undefined)
  const rest = (): Operation[] => {
    const volumes = isObject(original.spec) && isObject(draft.spec) && original.spec.volumes !== draft.spec.volumes
    for (const op of fastJsonPatch.compare(projection(original, lists, volumes, apart), projection(draft, lists, volumes, apart))) ops.push(op)
    if (apart) annotationOps(original.metadata!.annotations, draft.metadata!.annotations, ops)
    return ops
  }
  let total = 0
  for (const l of lists) total += l.original.length
  if (total === 0) return rest()
  // Visited in order: each list from its last container to its first.
  let list = 0
  let offset = 0
  const one = (k: number): void => {
    while (k - offset >= lists[list]!.original.length) offset += lists[list++]!.original.length
    const { field, original: o, draft: d } = lists[list]!
    const i = o.length - 1 - (k - offset)
    containerOps(field, i, o[i], d[i], ops)
  }
  await forEachChunked(total, one, stop)
  return rest()
}

interface ListPair { readonly field: ContainerField; readonly original: readonly unknown[]; readonly draft: readonly unknown[] }

/** The container lists diffed one container at a time: arrays of the same length in both pods (draftOf keeps them so), in compare's order. */
function pairedLists (original: Pod, draft: Pod): ListPair[] {
  const out: ListPair[] = []
  const a = original.spec
  const b = draft.spec
  if (!isObject(a) || !isObject(b)) return out
  for (let f = CONTAINER_FIELDS.length - 1; f >= 0; f--) {
    const field = CONTAINER_FIELDS[f]!
    const o = a[field]
    const d = b[field]
    if (Array.isArray(o) && Array.isArray(d) && o.length === d.length) out.push({ field, original: o, draft: d })
  }
  return out
}

/** The operations for one container: compare's over its projection, at its path. */
function containerOps (field: ContainerField, i: number, o: unknown, d: unknown, ops: Operation[]): void {
  if (o === d) return
  if (isObject(o) && isObject(d)) {
    // The common cases without a diff to run: a container a step left alone, or a pinned image
    // (compare's one "replace" of a value that is not an object).
    if (o.image === d.image) return
    if (o.image !== undefined && d.image !== undefined && !isStructured(o.image) && !isStructured(d.image)) {
      ops.push({ op: 'replace', path: `/spec/${field}/${i}/image`, value: d.image })
      return
    }
  }
  const at = `/spec/${field}/${i}`
  // Wrapped, so that a container that is not an object still diffs as a value: "/c" is its path.
  for (const op of fastJsonPatch.compare({ c: imageOnly(o) }, { c: imageOnly(d) })) ops.push({ ...op, path: at + op.path.slice(2) })
}

const ANNOTATIONS = '/metadata/annotations'

/**
 * compare's operations for the annotations (projected as `metadata.annotations` when present),
 * in its order. A map of strings, the only kind the API server sends, is diffed here: compare
 * would deep-copy a map it adds whole through JSON, and every pinned pod's annotations gain
 * pullpin's records (BENCHMARKS.md, "The patch's annotations without a copy"). The map added is
 * the draft's own, which nothing changes once the steps are done. Anything else goes to compare.
 */
function annotationOps (o: unknown, d: unknown, ops: Operation[]): void {
  if (o === d) return
  if (o === undefined && isStringMap(d)) {
    ops.push({ op: 'add', path: ANNOTATIONS, value: d })
    return
  }
  if (!isStringMap(o) || !isStringMap(d)) {
    const wrapped = (v: unknown): Record<string, unknown> => v === undefined ? {} : { a: v }
    for (const op of fastJsonPatch.compare(wrapped(o), wrapped(d))) ops.push({ ...op, path: ANNOTATIONS + op.path.slice(2) })
    return
  }
  const oldKeys = Object.keys(o)
  let deleted = false
  for (let k = oldKeys.length - 1; k >= 0; k--) {
    const key = oldKeys[k]!
    if (Object.hasOwn(d, key)) {
      if (o[key] !== d[key]) ops.push({ op: 'replace', path: `${ANNOTATIONS}/${fastJsonPatch.escapePathComponent(key)}`, value: d[key] })
    } else {
      ops.push({ op: 'remove', path: `${ANNOTATIONS}/${fastJsonPatch.escapePathComponent(key)}` })
      deleted = true
    }
  }
  const newKeys = Object.keys(d)
  if (!deleted && newKeys.length === oldKeys.length) return
  for (const key of newKeys) {
    if (!Object.hasOwn(o, key)) ops.push({ op: 'add', path: `${ANNOTATIONS}/${fastJsonPatch.escapePathComponent(key)}`, value: d[key] })
  }
}

function isStringMap (v: unknown): v is Record<string, string> {
  if (!isObject(v)) return false
  for (const key in v) if (typeof v[key] !== 'string') return false
  return true
}

/**
 * The fields a step may change, at their paths in the pod (array indexes kept), so a diff of two
 * projections is the patch of the pods. Only fields that are present are projected: a missing
 * annotations map or imagePullSecrets list diffs as one "add" of the whole value. The container
 * lists in `paired` are left out (containerOps diffs them), and so are the annotations when
 * annotationOps diffs them (`withoutAnnotations`).
 */
function projection (pod: Pod, paired: readonly ListPair[], volumes: boolean, withoutAnnotations: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  const meta = pod.metadata
  if (isObject(meta)) out.metadata = meta.annotations !== undefined && !withoutAnnotations ? { annotations: meta.annotations } : {}
  else if (meta !== undefined) out.metadata = meta
  const spec = pod.spec
  if (isObject(spec)) {
    const s: Record<string, unknown> = {}
    if (spec.imagePullSecrets !== undefined) s.imagePullSecrets = spec.imagePullSecrets
    for (const field of CONTAINER_FIELDS) {
      const list = spec[field]
      if (list !== undefined && !paired.some(p => p.field === field)) s[field] = Array.isArray(list) ? list.map(imageOnly) : list
    }
    // Only when draftOf copied them (the pod has an image volume).
    if (volumes && Array.isArray(spec.volumes)) s.volumes = spec.volumes.map(volumeImageOnly)
    out.spec = s
  } else if (spec !== undefined) out.spec = spec
  return out
}

function isStructured (v: unknown): boolean {
  return v !== null && typeof v === 'object'
}

function volumeImageOnly (v: unknown): unknown {
  if (!isObject(v)) return v
  const image = v.image
  if (image === undefined) return {}
  if (!isObject(image)) return { image }
  return { image: image.reference !== undefined ? { reference: image.reference } : {} }
}

function imageOnly (c: unknown): unknown {
  if (!isObject(c)) return c
  return c.image !== undefined ? { image: c.image } : {}
}

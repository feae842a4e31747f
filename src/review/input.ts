// `pullpin review` input: Kubernetes YAML or JSON (JSON is YAML 1.2 flow syntax, so one parser
// reads both), multi-document streams and `List` kinds, as `helm template` and `kustomize build`
// print them. Every kind with a pod template becomes a Workload: where its pod template sits in
// its document (so --fix can find each image's node) and a Pod built from it for the mutator.
// Pure: files are read by the caller (src/review/files.ts).
import { isMap, isScalar, LineCounter, parseAllDocuments, type Document, type Scalar } from 'yaml'
import type { Pod } from '../mutate/pod.js'

/** Where the pod template of each kind sits (Kubernetes API: PodSpec owners). */
export const POD_TEMPLATE_PATHS: Readonly<Record<string, readonly string[]>> = {
  Pod: [],
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
}

export type NodePath = ReadonlyArray<string | number>

export interface Workload {
  readonly file: string
  readonly kind: string
  readonly name: string
  /** The object's own namespace, when it names one. */
  readonly namespace: string | undefined
  /** 1-based line of the object in its file. */
  readonly line: number
  /** The parsed document the object is in (for --fix). */
  readonly document: Document.Parsed
  /** Path of the pod template (or of the Pod itself) inside the document. */
  readonly templatePath: NodePath
  /** A Pod of that template, as the API server would hand it to the webhook. */
  readonly pod: Pod
}

export interface ParsedSource {
  readonly file: string
  readonly text: string
  readonly documents: readonly Document.Parsed[]
  readonly lineCounter: LineCounter
  readonly workloads: readonly Workload[]
  /** Objects of kinds without a pod template, by kind. */
  readonly skipped: ReadonlyMap<string, number>
}

/** A document that does not parse: the file and the line say where. */
export class ReviewInputError extends Error {
  constructor (readonly file: string, readonly line: number | undefined, reason: string) {
    super(`${file}${line !== undefined ? `:${line}` : ''}: ${reason}`)
  }
}

function isObject (v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** Parses one file's text; throws ReviewInputError for YAML that does not parse. */
export function parseSource (file: string, text: string): ParsedSource {
  const lineCounter = new LineCounter()
  const documents = parseAllDocuments(text, { lineCounter, prettyErrors: true })
  const list = Array.isArray(documents) ? documents : []
  const workloads: Workload[] = []
  const skipped = new Map<string, number>()
  for (const doc of list) {
    const error = doc.errors[0]
    if (error !== undefined) {
      const line = error.linePos?.[0]?.line ?? lineCounter.linePos(error.pos[0]).line
      throw new ReviewInputError(file, line, `not valid YAML: ${error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`)
    }
    const value = doc.toJS({ maxAliasCount: 1000 }) as unknown
    if (value === null || value === undefined) continue
    collect(file, doc, lineCounter, value, [], workloads, skipped)
  }
  return { file, text, documents: list, lineCounter, workloads, skipped }
}

function collect (file: string, doc: Document.Parsed, lines: LineCounter, value: unknown, path: NodePath, out: Workload[], skipped: Map<string, number>): void {
  if (!isObject(value)) {
    skipped.set('(not an object)', (skipped.get('(not an object)') ?? 0) + 1)
    return
  }
  const kind = typeof value.kind === 'string' ? value.kind : '(no kind)'
  // `kubectl get -o yaml` and kustomize print List / <Kind>List wrappers around items.
  if ((kind === 'List' || kind.endsWith('List')) && Array.isArray(value.items)) {
    value.items.forEach((item, i) => collect(file, doc, lines, item, [...path, 'items', i], out, skipped))
    return
  }
  const templatePath = POD_TEMPLATE_PATHS[kind]
  const template = templatePath !== undefined ? at(value, templatePath) : undefined
  if (templatePath === undefined || !isObject(template)) {
    skipped.set(kind, (skipped.get(kind) ?? 0) + 1)
    return
  }
  const meta = isObject(value.metadata) ? value.metadata : {}
  const tmeta = isObject(template.metadata) ? template.metadata : {}
  const name = typeof meta.name === 'string' ? meta.name : '(unnamed)'
  const namespace = typeof meta.namespace === 'string' && meta.namespace !== '' ? meta.namespace : undefined
  const node = path.length === 0 ? doc.contents : doc.getIn(path, true)
  const offset = (node as { range?: [number, number, number] } | null)?.range?.[0] ?? 0
  const pod: Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { ...tmeta, name: kind === 'Pod' ? name : `${name}-review`, ...(namespace !== undefined ? { namespace } : {}) },
    spec: isObject(template.spec) ? template.spec : {},
  }
  out.push({ file, kind, name, namespace, line: lines.linePos(offset).line, document: doc, templatePath: [...path, ...templatePath], pod })
}

function at (value: Record<string, unknown>, path: readonly string[]): unknown {
  let v: unknown = value
  for (const key of path) {
    if (!isObject(v)) return undefined
    v = v[key]
  }
  return v
}

/** The scalar node at `path` of a document, if there is one. */
export function scalarAt (doc: Document.Parsed, path: NodePath): Scalar | undefined {
  const node = doc.getIn(path, true)
  return isScalar(node) ? node : undefined
}

/** The mapping node at `path`, if there is one. */
export function hasMapAt (doc: Document.Parsed, path: NodePath): boolean {
  return isMap(path.length === 0 ? doc.contents : doc.getIn(path, true))
}

/** 1-based line of the node at `path` (its parent's line when it has none). */
export function lineOf (source: ParsedSource, doc: Document.Parsed, path: NodePath): number | undefined {
  for (let p = path; p.length > 0; p = p.slice(0, -1)) {
    const node = doc.getIn(p, true) as { range?: [number, number, number] } | undefined
    if (node?.range !== undefined) return source.lineCounter.linePos(node.range[0]).line
  }
  return undefined
}

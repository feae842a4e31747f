// `pullpin review`: the webhook's own mutator, run on every pod template of some manifests before
// they are deployed, in its "what would you do" form (enforce decisions on a dry run: nothing is
// remembered, nothing created), and what it answered turned into findings (findings.ts).
import type { Mutator } from '../mutate/mutator.js'
import { listImages, type Pod } from '../mutate/pod.js'
import type { NamespacePolicy } from '../policy/namespace-mode.js'
import { findingsFromMutation, type Check, type Finding } from './findings.js'
import type { NodePath, ParsedSource } from './input.js'
import type { ValuesSource } from './values.js'

/** Where an image string stands in a file, so --fix can rewrite it. */
export type FixTarget =
  | { readonly kind: 'image'; readonly source: ParsedSource; readonly document: ParsedSource['documents'][number]; readonly path: NodePath }
  | { readonly kind: 'values-tag'; readonly source: ValuesSource; readonly path: NodePath }

export interface ReviewedImage {
  readonly container: string
  readonly image: string
  readonly line: number | undefined
  readonly fix: FixTarget | undefined
}

export interface ReviewedObject {
  readonly file: string
  readonly line: number
  readonly kind: string
  readonly name: string
  /** The namespace the object would land in (--namespace, else its own, else "default"). */
  readonly namespace: string
  /** The namespace's mode by the config's static labels ("enforce", "audit", "off: not opted in"). */
  readonly mode: string
  readonly images: readonly ReviewedImage[]
  readonly findings: readonly Finding[]
}

export interface ReviewReport {
  readonly objects: readonly ReviewedObject[]
  /** Objects of kinds without a pod template, by kind. */
  readonly skipped: Readonly<Record<string, number>>
}

export interface ReviewDeps {
  readonly mutate: Mutator
  readonly namespaces: NamespacePolicy
  /** Static namespace labels (config namespaces.labels). */
  readonly labels: Readonly<Record<string, Readonly<Record<string, string>>>>
  /** --namespace: where every object would land. */
  readonly namespace?: string
  /** Called as objects are reviewed (progress on a terminal). */
  readonly onProgress?: (done: number, total: number) => void
}

interface Target {
  readonly file: string
  readonly line: number
  readonly kind: string
  readonly name: string
  readonly namespace: string | undefined
  readonly pod: Pod
  readonly fixFor: (field: string, index: number) => { fix: FixTarget | undefined, line: number | undefined }
}

export async function review (sources: readonly ParsedSource[], values: readonly ValuesSource[], deps: ReviewDeps): Promise<ReviewReport> {
  const targets: Target[] = []
  const skipped: Record<string, number> = {}
  for (const source of sources) {
    for (const [kind, n] of source.skipped) skipped[kind] = (skipped[kind] ?? 0) + n
    for (const w of source.workloads) {
      targets.push({
        file: w.file,
        line: w.line,
        kind: w.kind,
        name: w.name,
        namespace: w.namespace,
        pod: w.pod,
        fixFor: (field, index) => {
          const path = [...w.templatePath, 'spec', field, index, 'image']
          const node = w.document.getIn(path, true) as { range?: [number, number, number] } | undefined
          return {
            fix: source.file === '-' ? undefined : { kind: 'image', source, document: w.document, path },
            line: node?.range !== undefined ? source.lineCounter.linePos(node.range[0]).line : undefined,
          }
        },
      })
    }
  }
  for (const v of values) {
    for (const img of v.images) {
      targets.push({
        file: v.file,
        line: img.line,
        kind: 'HelmValues',
        name: img.path,
        namespace: undefined,
        pod: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'values' }, spec: { containers: [{ name: img.path, image: img.image }] } },
        fixFor: () => ({ fix: { kind: 'values-tag', source: v, path: [...img.mapPath, 'tag'] }, line: img.line }),
      })
    }
  }
  let done = 0
  const objects = await Promise.all(targets.map(async (t): Promise<ReviewedObject> => {
    const namespace = deps.namespace ?? t.namespace ?? 'default'
    const decision = deps.namespaces.decide(namespace, deps.labels[namespace])
    const sites = listImages(t.pod)
    const result = await deps.mutate({
      operation: 'CREATE',
      namespace,
      mode: 'enforce',
      dryRun: true,
      object: t.pod,
      deadline: { signal: new AbortController().signal, ms: Infinity, remainingMs: () => Infinity },
    })
    const findings = findingsFromMutation(result, sites)
    deps.onProgress?.(++done, targets.length)
    return {
      file: t.file,
      line: t.line,
      kind: t.kind,
      name: t.name,
      namespace,
      mode: decision.mode === 'off' ? `off: ${decision.reason}` : decision.mode,
      images: sites.map(s => ({ container: s.container, image: s.image, ...t.fixFor(s.field, s.index) })),
      findings,
    }
  }))
  return { objects, skipped }
}

/** Whether any finding is of a check listed in --fail-on. */
export function failed (report: ReviewReport, failOn: readonly Check[]): boolean {
  return report.objects.some(o => o.findings.some(f => failOn.includes(f.check)))
}

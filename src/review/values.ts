// Helm values that split an image into `repository` and `tag` (`image: {repository: ghcr.io/acme/web,
// tag: latest}`, optionally with `registry`), found at dotted paths given with --image-path.
import { isMap, LineCounter, parseDocument, type Document } from 'yaml'
import { ReviewInputError, type NodePath } from './input.js'

export interface ValuesImage {
  /** The --image-path as given ("image", "sidecar.image"). */
  readonly path: string
  readonly mapPath: NodePath
  /** The image the chart renders from these values, as `repository:tag` (or `registry/repository:tag`). */
  readonly image: string
  readonly line: number
}

export interface ValuesSource {
  readonly file: string
  readonly text: string
  readonly document: Document.Parsed
  readonly images: readonly ValuesImage[]
}

export function parseValues (file: string, text: string, imagePaths: readonly string[]): ValuesSource {
  const lineCounter = new LineCounter()
  const document = parseDocument(text, { lineCounter, prettyErrors: true })
  const error = document.errors[0]
  if (error !== undefined) {
    throw new ReviewInputError(file, error.linePos?.[0]?.line, `not valid YAML: ${error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`)
  }
  const images: ValuesImage[] = []
  for (const path of imagePaths) {
    const mapPath = path.split('.').filter(p => p !== '')
    const node = document.getIn(mapPath, true)
    if (!isMap(node)) throw new ReviewInputError(file, undefined, `--image-path ${path}: no mapping with repository and tag there`)
    const value = node.toJSON() as Record<string, unknown>
    const repository = value.repository
    if (typeof repository !== 'string' || repository === '') throw new ReviewInputError(file, lineCounter.linePos(node.range?.[0] ?? 0).line, `--image-path ${path}: "repository" must be a string`)
    const registry = typeof value.registry === 'string' && value.registry !== '' ? `${value.registry}/` : ''
    // Helm charts render `tag` with quote/toString: a number there (a short SHA of digits) is a tag too.
    const tag = typeof value.tag === 'string' || typeof value.tag === 'number' ? String(value.tag) : ''
    images.push({ path, mapPath, image: `${registry}${repository}${tag !== '' ? `:${tag}` : ''}`, line: lineCounter.linePos(node.range?.[0] ?? 0).line })
  }
  return { file, text, document, images }
}

// `pullpin review --fix`: writes each pin into the file it came from. The yaml package's document
// API finds the scalar that holds the image (or a values file's `tag`), and only that scalar's
// characters are replaced in the original text, in the style it was written in: comments,
// ordering, indentation and every other byte of the file stay as they were (re-serialising the
// document would reflow what pullpin did not touch).
import { isScalar, parse, type Document, type Scalar } from 'yaml'
import { parseImageReference } from '../reference/parse.js'
import type { NodePath } from './input.js'
import type { ReviewReport } from './review.js'

interface Edit { readonly start: number; readonly end: number; readonly text: string }

export interface FixResult {
  /** file → its new text (only files that change). */
  readonly files: ReadonlyMap<string, string>
  /** Pins that could not be written, and why. */
  readonly skipped: readonly string[]
  readonly applied: number
}

export function planFixes (report: ReviewReport): FixResult {
  const edits = new Map<string, { text: string, edits: Edit[] }>()
  const skipped: string[] = []
  let applied = 0
  for (const object of report.objects) {
    for (const finding of object.findings) {
      if (finding.check !== 'pin' || finding.to === undefined) continue
      const site = object.images.find(i => i.container === finding.container && i.image === finding.image)
      const fix = site?.fix
      if (fix === undefined) {
        skipped.push(`${object.file}: ${object.kind} ${object.name} container ${finding.container ?? '?'}: not written (stdin)`)
        continue
      }
      let value: string
      let doc: Document.Parsed
      let path: NodePath
      let text: string
      if (fix.kind === 'image') {
        value = finding.to
        doc = fix.document
        path = fix.path
        text = fix.source.text
      } else {
        // The chart renders repository:tag, so the tag carries the pin (and the digest, if pinned by one).
        const pinned = parseImageReference(finding.to)
        if (pinned.tag === undefined) {
          skipped.push(`${object.file}: ${object.name}: ${finding.to} has no tag to write into ${object.name}.tag`)
          continue
        }
        value = pinned.digest !== undefined ? `${pinned.tag}@${pinned.digest}` : pinned.tag
        doc = fix.source.document
        path = fix.path
        text = fix.source.text
      }
      const node = doc.getIn(path, true)
      if (!isScalar(node) || node.range === undefined || node.range === null) {
        skipped.push(`${object.file}: ${object.kind} ${object.name}: no scalar at ${path.join('.')} to rewrite`)
        continue
      }
      const entry = edits.get(object.file) ?? { text, edits: [] }
      edits.set(object.file, entry)
      const [start, end] = node.range
      if (!entry.edits.some(e => e.start === start)) entry.edits.push({ start, end, text: render(node, value) })
      applied++
    }
  }
  const files = new Map<string, string>()
  for (const [file, { text, edits: list }] of edits) {
    let out = text
    for (const e of [...list].sort((a, b) => b.start - a.start)) out = out.slice(0, e.start) + e.text + out.slice(e.end)
    files.set(file, out)
  }
  return { files, skipped, applied }
}

/**
 * `value` as a scalar in `node`'s style. A plain scalar stays plain unless YAML would read the
 * new text as something else than this string (a SHA tag of digits only is a number in YAML,
 * and Helm would render it as 1.234567e+06): then it is double-quoted.
 */
function render (node: Scalar, value: string): string {
  switch (node.type) {
    case 'QUOTE_SINGLE':
      return `'${value.replace(/'/g, "''")}'`
    case 'PLAIN': {
      let reads: unknown
      try { reads = parse(value) } catch { reads = undefined }
      if (reads === value) return value
      return JSON.stringify(value)
    }
    default:
      return JSON.stringify(value)
  }
}

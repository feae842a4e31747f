// `pullpin review` output: a table for people, JSON for scripts, SARIF 2.1.0 for code-scanning
// UIs (OASIS SARIF v2.1.0: sarifLog → runs[].tool.driver.rules and runs[].results, each result
// with a ruleId, a level and a physicalLocation whose region.startLine is 1-based, §3.30.5).
import { CHECKS, type Check, type Finding } from './findings.js'
import type { ReviewReport } from './review.js'

const RULES: Readonly<Record<Check, string>> = {
  'missing-image': 'The image does not exist on its registry: the pod would hit ImagePullBackOff.',
  'reference-error': 'The image reference is invalid: the kubelet cannot pull it.',
  'pull-access': 'The registry refused the pull credentials for this image.',
  platforms: 'The image has no manifest for the platform the pod needs.',
  'registry-error': 'The registry could not be asked (unavailable, timeout, bad answer).',
  'not-pinned': 'The webhook would leave this image unpinned.',
  pin: 'The webhook would pin this image to an immutable SHA tag (or digest).',
  secret: 'The webhook would add this imagePullSecret.',
}

function lineOf (o: ReviewReport['objects'][number], f: Finding): number {
  return o.images.find(i => i.container === f.container && i.image === f.image)?.line ?? o.line
}

export function formatJson (report: ReviewReport): string {
  return JSON.stringify({
    objects: report.objects.map(o => ({
      file: o.file,
      line: o.line,
      kind: o.kind,
      name: o.name,
      namespace: o.namespace,
      mode: o.mode,
      images: o.images.map(i => ({ container: i.container, image: i.image, ...(i.line !== undefined ? { line: i.line } : {}) })),
      findings: o.findings.map(f => ({ ...f, line: lineOf(o, f) })),
    })),
    skipped: report.skipped,
  }, null, 2) + '\n'
}

export function formatTable (report: ReviewReport): string {
  const rows: string[][] = [['LOCATION', 'OBJECT', 'NAMESPACE', 'CONTAINER', 'RESULT']]
  for (const o of report.objects) {
    const where = `${o.file}:${o.line}`
    const what = `${o.kind}/${o.name}`
    const ns = `${o.namespace} (${o.mode})`
    if (o.findings.length === 0) {
      for (const i of o.images) rows.push([where, what, ns, i.container, `ok ${i.image}`])
      if (o.images.length === 0) rows.push([where, what, ns, '-', 'no images'])
      continue
    }
    for (const f of o.findings) rows.push([`${o.file}:${lineOf(o, f)}`, what, ns, f.container ?? '-', `${f.severity === 'note' ? '' : f.severity + ' '}${f.check}: ${f.message}`])
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map(r => r[c]!.length)))
  const lines = rows.map(r => r.map((cell, c) => c === r.length - 1 ? cell : cell.padEnd(widths[c]!)).join('  ').trimEnd())
  const skipped = Object.entries(report.skipped)
  const counts = countBy(report)
  const summary = `${report.objects.length} object(s) with pod templates; ${Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(', ') || 'no findings'}` +
    (skipped.length > 0 ? `; skipped ${skipped.reduce((n, [, c]) => n + c, 0)} other object(s) (${skipped.map(([k, n]) => `${k} ${n}`).join(', ')})` : '')
  return lines.join('\n') + '\n\n' + summary + '\n'
}

function countBy (report: ReviewReport): Record<string, number> {
  const out: Record<string, number> = {}
  for (const o of report.objects) for (const f of o.findings) out[f.check] = (out[f.check] ?? 0) + 1
  return out
}

export function formatSarif (report: ReviewReport, tool: { version: string }): string {
  const rules = CHECKS.map(id => ({ id, shortDescription: { text: RULES[id] } }))
  const results = report.objects.flatMap(o => o.findings.map(f => ({
    ruleId: f.check,
    ruleIndex: CHECKS.indexOf(f.check),
    level: f.severity,
    message: { text: `${o.kind}/${o.name}${f.container !== undefined ? ` container ${f.container}` : ''}: ${f.message}` },
    locations: [{
      physicalLocation: {
        // stdin has no path; SARIF wants a URI reference, so it is named as such.
        artifactLocation: { uri: o.file === '-' ? 'stdin' : encodeURI(o.file.split('\\').join('/')) },
        region: { startLine: lineOf(o, f) },
      },
    }],
  })))
  return JSON.stringify({
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [{
      tool: { driver: { name: 'pullpin', version: tool.version, rules } },
      results,
    }],
  }, null, 2) + '\n'
}

// `pullpin doctor` output: one ✓ / ✗ / – line per check, the fix under each ✗; or JSON.
import type { DoctorCheck } from './ladder.js'

const MARK = { pass: '✓', fail: '✗', skip: '–' } as const

export function formatChecks (image: string, checks: readonly DoctorCheck[]): string {
  const lines = [`pullpin doctor ${image}`]
  for (const c of checks) {
    lines.push(`${MARK[c.status]} ${c.title}: ${c.detail}`)
    if (c.status === 'fail' && c.fix !== undefined) lines.push(`    fix: ${c.fix}`)
  }
  const failed = checks.filter(c => c.status === 'fail').length
  lines.push('', failed === 0 ? 'all checks passed' : `${failed} check(s) failed`)
  return lines.join('\n') + '\n'
}

export function formatChecksJson (image: string, checks: readonly DoctorCheck[]): string {
  return JSON.stringify({ image, ok: checks.every(c => c.status !== 'fail'), checks }, null, 2) + '\n'
}

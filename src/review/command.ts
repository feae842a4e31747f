// `pullpin review` put together: the webhook's config, credentials, registry client, cache and
// mutation steps (as src/app.ts builds them), the inputs read and reviewed, the report printed,
// and with --fix the pins written back. src/cli.ts parses the arguments and calls this.
import { writeFile } from 'node:fs/promises'
import { buildSteps } from '../app.js'
import { createMutator } from '../mutate/mutator.js'
import { createPinningStack } from '../pinning.js'
import { deepFreeze, type Config } from '../policy/config.js'
import { createNamespacePolicy } from '../policy/namespace-mode.js'
import type { CredentialStore } from '../registry/credential-store.js'
import type { Check } from './findings.js'
import { planFixes } from './fix.js'
import { readInputs, readText } from './files.js'
import { formatJson, formatSarif, formatTable } from './format.js'
import { parseSource } from './input.js'
import { failed, review } from './review.js'
import { parseValues } from './values.js'

export type ReviewOutput = 'table' | 'json' | 'sarif'

export interface ReviewCommandOptions {
  readonly paths: readonly string[]
  readonly values: readonly string[]
  readonly imagePaths: readonly string[]
  readonly config: Config
  readonly credentials: CredentialStore
  readonly namespace?: string
  readonly output: ReviewOutput
  readonly failOn: readonly Check[]
  readonly fix: boolean
  readonly version: string
}

export interface ReviewIo {
  readonly out: (s: string) => void
  readonly err: (s: string) => void
  readonly readStdin: () => Promise<string>
  /** Progress lines on stderr (a terminal): only when lookups take a while. */
  readonly progress: boolean
}

export const EXIT_CLEAN = 0
export const EXIT_FINDINGS = 1

export async function runReview (opts: ReviewCommandOptions, io: ReviewIo): Promise<number> {
  const inputs = await readInputs(opts.paths, io.readStdin)
  const sources = inputs.map(i => parseSource(i.file, i.text))
  const values = await Promise.all(opts.values.map(async file => parseValues(file, await readText(file), opts.imagePaths)))
  // Reviewing is asking: pinning runs even when the config has it off for the webhook.
  const config: Config = deepFreeze({ ...opts.config, pinning: { ...opts.config.pinning, enabled: true } })
  const stack = await createPinningStack({ config, limits: config.limits, credentials: opts.credentials })
  try {
    const mutate = createMutator(buildSteps(config, stack), { maxImagesPerReview: config.limits.maxImagesPerReview, failOpen: config.failOpen })
    const started = performance.now()
    let shown = false
    const report = await review(sources, values, {
      mutate,
      namespaces: createNamespacePolicy(config, undefined),
      labels: config.namespaces.labels,
      ...(opts.namespace !== undefined ? { namespace: opts.namespace } : {}),
      onProgress: (done, total) => {
        if (!io.progress || (!shown && performance.now() - started < 1000 && done < total)) return
        shown = true
        io.err(`\rreviewed ${done}/${total} objects${done === total ? '\n' : ''}`)
      },
    })
    const output = opts.output === 'json' ? formatJson(report) : opts.output === 'sarif' ? formatSarif(report, { version: opts.version }) : formatTable(report)
    io.out(output)
    if (opts.fix) {
      const plan = planFixes(report)
      for (const [file, text] of plan.files) await writeFile(file, text)
      for (const s of plan.skipped) io.err(`pullpin: --fix: ${s}\n`)
      io.err(`pullpin: --fix wrote ${plan.applied} pin(s) into ${plan.files.size} file(s)\n`)
    }
    return failed(report, opts.failOn) ? EXIT_FINDINGS : EXIT_CLEAN
  } finally {
    await stack.close()
  }
}

// An in-process admission handler (no HTTP) built exactly as src/app.ts builds it.
import { createAdmissionHandler, type AdmissionHandler } from '../../src/admission/handler.js'
import { buildSteps } from '../../src/app.js'
import { createMutator, type MutationStep } from '../../src/mutate/mutator.js'
import { parseConfig, type Config } from '../../src/policy/config.js'
import { createNamespacePolicy } from '../../src/policy/namespace-mode.js'
import { staticNamespaceLabels } from '../../src/policy/static-namespaces.js'
import { createLogger } from '../../src/server/logger.js'
import { createMetrics, type Metrics } from '../../src/metrics.js'
import { LogCapture } from './pullpin.js'

export const BASE_CONFIG = `
namespaces:
  labels:
    team-a: { pullpin.io/inject: enabled }
    team-b: { pullpin.io/inject: audit }
    team-c: { pullpin.io/inject: disabled }
    kube-system: { pullpin.io/inject: enabled }
    pullpin-system: { pullpin.io/inject: enabled }
pullSecrets:
  - name: ghcr-credentials
    registries: [ghcr.io]
  - name: gar-credentials
    registries: ["*.pkg.dev"]
  - name: hub-credentials
    registries: [docker.io]
`

export interface TestHandler {
  handle: AdmissionHandler
  config: Config
  metrics: Metrics
  logs: LogCapture
}

export function testHandler (yaml = BASE_CONFIG, opts: { steps?: MutationStep[]; deadlineMs?: number } = {}): TestHandler {
  const config = parseConfig(yaml, 'test')
  const metrics = createMetrics({ defaultMetrics: false })
  const logs = new LogCapture()
  const handle = createAdmissionHandler({
    policy: createNamespacePolicy(config, 'pullpin-system'),
    namespaces: staticNamespaceLabels(config),
    mutator: createMutator(opts.steps ?? buildSteps(config), { maxImagesPerReview: config.limits.maxImagesPerReview, failOpen: config.failOpen }),
    logger: createLogger({ level: 'debug', destination: logs }),
    metrics: metrics.admission,
    failOpen: config.failOpen,
    deadlineMs: opts.deadlineMs ?? 2000,
  })
  return { handle, config, metrics, logs }
}

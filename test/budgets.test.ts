// The time budgets of a review as one model (issue 11 item 6, issue 12 "deadlineMs names two
// budgets"): the whole-review deadline (--review-deadline-ms, from the webhook's timeoutSeconds),
// the registry lookup budget (registry.lookupBudgetMs) and the first-pod copy creation budget
// (cluster.copyCreateBudgetMs). Each contradiction of the issue is reproduced here.
import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createAdmissionHandler } from '../src/admission/handler.js'
import { buildSteps } from '../src/app.js'
import { createMutator } from '../src/mutate/mutator.js'
import { createPinningStack } from '../src/pinning.js'
import { checkBudgets, REVIEW_MARGIN_MS } from '../src/policy/budgets.js'
import { parseConfig } from '../src/policy/config.js'
import { createNamespacePolicy } from '../src/policy/namespace-mode.js'
import { staticNamespaceLabels } from '../src/policy/static-namespaces.js'
import { CredentialStore, readDockerConfigFiles } from '../src/registry/credential-store.js'
import { createLogger } from '../src/server/logger.js'
import { createMetrics } from '../src/metrics.js'
import { main } from '../src/cli.js'
import { gitSha, startPinningEnv, type PinningEnv } from './support/pinning-env.js'
import { admissionReview, podFromWorkload } from './support/pods.js'
import { LogCapture, startPullpin } from './support/pullpin.js'

let env: PinningEnv
t.before(async () => { env = await startPinningEnv() })
t.teardown(() => env.stop())

t.test('failOpen: false + a short review deadline: a slow registry never denies the pod', async t => {
  await env.registry.push({ seed: 'budget-slow' }, 'acme/budget-slow', ['latest', gitSha('budget-slow')])
  // The handler as app.ts builds it, but without the start-time check (which would refuse this
  // pair): the step itself must not let the registry use up the review's deadline.
  const config = env.config('', 'failOpen: false', '  lookupBudgetMs: 2000')
  const credentials = new CredentialStore()
  credentials.replace(await readDockerConfigFiles(config.registry.credentials.dockerConfigFiles))
  const pinning = await createPinningStack({ config, credentials })
  t.teardown(() => pinning.close())
  const logs = new LogCapture()
  const handle = createAdmissionHandler({
    policy: createNamespacePolicy(config, 'pullpin-system'),
    namespaces: staticNamespaceLabels(config),
    mutator: createMutator(buildSteps(config, pinning)),
    logger: createLogger({ level: 'debug', destination: logs }),
    metrics: createMetrics({ defaultMetrics: false }).admission,
    failOpen: config.failOpen,
    deadlineMs: 1000,
  })
  env.proxy.fault = (r) => r.path.includes('/acme/budget-slow/') ? { action: 'delay', ms: 5000 } : undefined
  t.teardown(() => { env.proxy.fault = undefined })
  const pod = podFromWorkload('deployment-web', { namespace: 'team-a' })
  pod.spec!.containers = [{ ...pod.spec!.containers![0]!, image: `${env.host}/acme/budget-slow:latest` }]
  const out = await handle(admissionReview(pod))
  t.equal(out.response.allowed, true, 'admitted: a slow registry is not an internal error')
  t.equal(out.response.status, undefined)
  t.equal(out.response.warnings?.length, 1, JSON.stringify(out.response.warnings))
  // The warning names the budget that ran out: here the review deadline, not registry.lookupBudgetMs.
  t.match(out.response.warnings?.[0], /acme\/budget-slow:latest not pinned: lookup cut by the review deadline \(1000 ms\)/)
  t.notMatch(out.response.warnings?.[0], /2000/)
})

t.test('a registry budget that runs out names registry.lookupBudgetMs', async t => {
  await env.registry.push({ seed: 'budget-own' }, 'acme/budget-own', ['latest', gitSha('budget-own')])
  const p = await startPullpin(env.configYaml('', 'failOpen: false', undefined, '  lookupBudgetMs: 300'), { reviewDeadlineMs: 5000 })
  t.teardown(() => p.close())
  env.proxy.fault = (r) => r.path.includes('/acme/budget-own/') ? { action: 'delay', ms: 3000 } : undefined
  t.teardown(() => { env.proxy.fault = undefined })
  const pod = podFromWorkload('deployment-web', { namespace: 'team-a' })
  pod.spec!.containers = [{ ...pod.spec!.containers![0]!, image: `${env.host}/acme/budget-own:latest` }]
  const res = await p.post('/mutate', admissionReview(pod))
  t.equal(res.json.response.allowed, true)
  t.match(res.json.response.warnings, [/acme\/budget-own:latest not pinned: registry\.lookupBudgetMs \(300 ms\) ran out/])
})

t.test('a lookup budget that does not fit in the review deadline is refused at start, with key and reason', async t => {
  await t.rejects(startPullpin(env.configYaml('', 'failOpen: false'), { reviewDeadlineMs: 1000 }), {
    code: 'PULLPIN_CONFIG_INVALID',
    message: /\/registry\/lookupBudgetMs: 2000 ms .* does not fit in the review deadline of 1000 ms/,
  })
  // Pinning and the checks off: no registry budget to fit.
  const off = await startPullpin(env.configYaml('', 'checks: { exists: off, pullAccess: off, platforms: off }').replace('enabled: true', 'enabled: false'), { reviewDeadlineMs: 1000 })
  await off.close()
})

t.test('pullpin serve: the same contradiction exits 2 naming the key', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-budget-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'config.yaml')
  await writeFile(file, 'registry: { hosts: [ghcr.io] }\npinning: { enabled: true }\n')
  const errors: string[] = []
  const io = { out: () => undefined, err: (s: string) => errors.push(s), env: {} as NodeJS.ProcessEnv }
  t.equal(await main(['serve', '--standalone', '--config', file, '--port', '0', '--certs-dir', dir, '--review-deadline-ms', '1000'], io), 2)
  t.match(errors.join('\n'), /registry\/lookupBudgetMs/)
})

t.test('the old pinning.deadlineMs key is refused with the new name', async t => {
  t.throws(() => parseConfig('pinning: { deadlineMs: 2000 }', 'old.yaml'), {
    code: 'PULLPIN_CONFIG_INVALID',
    message: /old\.yaml: \/pinning\/deadlineMs: moved to registry\.lookupBudgetMs/,
  })
})

t.test('cluster: the copy creation and the lookups run in sequence, and both must fit', async t => {
  const yaml = (copy = '') => `
pullSecrets:
  - { name: ghcr, registries: [ghcr.io], source: { namespace: platform, name: ghcr } }
registry: { hosts: [ghcr.io] }
pinning: { enabled: true }
cluster: { ${copy} }
`
  // The case: 3 s of copy creation + 2 s of lookups in a 4.5 s review deadline.
  t.throws(() => checkBudgets(parseConfig(yaml('copyCreateBudgetMs: 3000')), { reviewDeadlineMs: 4500, cluster: true }), {
    code: 'PULLPIN_CONFIG_INVALID',
    message: /\/cluster\/copyCreateBudgetMs: 3000 ms .* \+ registry\.lookupBudgetMs 2000 ms .* does not fit in the review deadline of 4500 ms/,
  })
  // The defaults fit the chart's default deadline (timeoutSeconds 5 → 4500 ms).
  t.doesNotThrow(() => checkBudgets(parseConfig(yaml()), { reviewDeadlineMs: 4500, cluster: true }))
  const defaults = parseConfig(yaml())
  t.ok(defaults.cluster.copyCreateBudgetMs + defaults.registry.lookupBudgetMs + REVIEW_MARGIN_MS <= 4500)
  // Standalone: no copy is created at admission, so only the lookups count.
  t.doesNotThrow(() => checkBudgets(parseConfig(yaml('copyCreateBudgetMs: 3000')), { reviewDeadlineMs: 4500, cluster: false }))
  // serviceaccount injection creates no copy during a review either.
  t.doesNotThrow(() => checkBudgets(parseConfig(yaml('copyCreateBudgetMs: 3000') + 'injection: serviceaccount\n'), { reviewDeadlineMs: 4500, cluster: true }))
})

// The admission hot path without HTTP: CPU time per review of the handler as src/app.ts builds it
// (namespace policy → secret injection → pin step → JSON patch → metrics; audit: warnings and a log
// line), answering the bench pod (bench/fixtures.ts) from a warm tag cache. The tag cache is filled by a synthetic
// in-process RegistryReader (no network), since a warm cache does no I/O anyway. The log goes to
// /dev/null through pino's own synchronous destination, so its serialization is measured and the
// disk is not. This is the number `bench/profile.ts` findings are checked against.
//
//   node --import tsx bench/hot-path.ts [--steps checks|all|secrets|none] [--alloc-sites team-a|team-b]
//     → one JSON line: µs of CPU per review, best and median of 5 rounds, and bytes allocated per
//       review (JSON.parse included: the server does it too). --steps checks adds the pull-readiness
//       checks (every check on, answered from warm caches: src/app.ts's default), all is secrets and
//       pins without checks, secrets leaves the pin step out, none both, to see what each costs. --alloc-sites prints, on stderr, the
//       functions that allocate most for that namespace's review.
import { createHash } from 'node:crypto'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { createAdmissionHandler } from '../src/admission/handler.js'
import { createMutator } from '../src/mutate/mutator.js'
import { createSecretInjectionStep } from '../src/mutate/inject-secrets.js'
import { createPinningStep } from '../src/mutate/pin-images.js'
import { parseConfig } from '../src/policy/config.js'
import { createNamespacePolicy } from '../src/policy/namespace-mode.js'
import { staticNamespaceLabels } from '../src/policy/static-namespaces.js'
import { createLogger } from '../src/server/logger.js'
import { createMetrics } from '../src/metrics.js'
import { TagCache, type RegistryReader } from '../src/cache/tag-cache.js'
import { RolloutPins } from '../src/cache/rollout-pins.js'
import { tagCacheOptions } from '../src/pinning.js'
import { ImmutableCache } from '../src/cache/immutable-cache.js'
import { PullAccessCache } from '../src/cache/pull-access.js'
import { createCheckStep } from '../src/mutate/check-images.js'
import { allocatedPerCall, allocationSites } from './alloc.js'
import { BENCH_REPOSITORIES, benchConfigYaml, benchReview } from './fixtures.js'
import { gitSha, type PinningEnv } from '../test/support/pinning-env.js'

const { values: args } = parseArgs({ options: { steps: { type: 'string', default: 'all' }, 'alloc-sites': { type: 'string' } } })
const STEPS = args.steps as 'checks' | 'all' | 'secrets' | 'none'
if (!['checks', 'all', 'secrets', 'none'].includes(STEPS)) throw new Error('--steps must be checks, all, secrets or none')
const HOST = 'registry.bench.local:5000'
const REVIEWS = 10_000
const ROUNDS = 5

const env = { host: HOST, dockerConfigFile: '/dev/null', registry: { caFile: '/dev/null' } } as unknown as PinningEnv
const config = parseConfig(benchConfigYaml(env), 'hot-path bench')
const digestOf = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`
// Each repository's mutable tag and its SHA tag point at the same build, as CI pushes them.
const reader: RegistryReader = {
  headManifest (ref) {
    return Promise.resolve({ digest: digestOf(`${ref.repository}@${gitSha(`bench-${ref.repository}`)}`), mediaType: 'application/vnd.oci.image.manifest.v1+json' })
  },
  listTags (ref) {
    const sha = gitSha(`bench-${ref.repository}`)
    return Promise.resolve(['latest', 'main', sha, `sha-${sha.slice(0, 7)}`])
  },
}
// A long TTL: the bench measures warm-cache reviews, never a refresh.
const cache = new TagCache({ ...tagCacheOptions(config, reader), ttlMs: 3_600_000 })
const metrics = createMetrics()
// The checks' caches, over synthetic answers: every image a single linux/amd64 image the pull
// secret's credential may read.
const immutable = new ImmutableCache({
  registry: {
    getManifest: (_ref, digest) => Promise.resolve({ digest, mediaType: 'application/vnd.oci.image.manifest.v1+json', kind: 'image', annotations: {}, manifests: [], config: { digest: digestOf(`config ${digest}`), mediaType: 'application/vnd.oci.image.config.v1+json', annotations: {} } }),
    getConfig: () => Promise.resolve({ os: 'linux', architecture: 'amd64', labels: {} }),
  },
  maxEntries: 10_000,
})
const access = new PullAccessCache({ probeFor: () => ({ headManifest: () => Promise.resolve({}) }), ttlMs: 3_600_000, staleWhileRevalidateMs: 0, maxEntries: 10_000 })
const credential = { username: 'bench', password: 'bench', source: '/dev/null', key: HOST }
// The same steps src/app.ts buildSteps makes for this config (--steps checks: all of them).
const handle = createAdmissionHandler({
  policy: createNamespacePolicy(config, 'pullpin-system'),
  namespaces: staticNamespaceLabels(config),
  mutator: createMutator([
    ...(STEPS === 'none' ? [] : [createSecretInjectionStep(config.pullSecrets)]),
    ...(STEPS === 'all' || STEPS === 'checks' ? [createPinningStep({ config: config.pinning, registry: config.registry, cache, rolloutPins: new RolloutPins({ max: config.registry.cache.ownerPins }), metrics: metrics.pinning })] : []),
    ...(STEPS === 'checks'
      ? [createCheckStep({ checks: config.checks, registry: config.registry, pullSecrets: config.pullSecrets, tags: cache, immutable, access, credentials: { lookup: () => [credential] }, metrics: metrics.checks })]
      : []),
  ]),
  logger: createLogger({ destination: pino.destination({ dest: '/dev/null', sync: true }) }),
  metrics: metrics.admission,
  failOpen: config.failOpen,
  deadlineMs: 9000,
})

async function measure (namespace: string): Promise<{ bestUs: number; medianUs: number; allocatedBytes: number; patched: boolean }> {
  const text = benchReview(HOST, namespace)
  const first = await handle(JSON.parse(text))
  for (let i = 0; i < REVIEWS; i++) await handle(JSON.parse(text))
  const rounds: number[] = []
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = process.cpuUsage()
    for (let i = 0; i < REVIEWS; i++) await handle(JSON.parse(text))
    const used = process.cpuUsage(c0)
    rounds.push((used.user + used.system) / REVIEWS)
  }
  rounds.sort((a, b) => a - b)
  const allocatedBytes = Math.round(await allocatedPerCall(REVIEWS, () => handle(JSON.parse(text))))
  return { bestUs: rounds[0]!, medianUs: rounds[Math.floor(ROUNDS / 2)]!, allocatedBytes, patched: first.response.patch !== undefined }
}

// JSON.parse of the body is in every review (Fastify does it before the handler); measured apart.
const body = benchReview(HOST, 'team-a')
const p0 = process.cpuUsage()
for (let i = 0; i < REVIEWS * 5; i++) JSON.parse(body)
const parse = process.cpuUsage(p0)
const enforce = await measure('team-a')
const audit = await measure('team-b')
if (enforce.patched !== (STEPS !== 'none') || audit.patched) throw new Error('hot-path bench: enforce must patch (with a step) and audit must not')
process.stdout.write(JSON.stringify({
  steps: STEPS,
  images: BENCH_REPOSITORIES.length,
  bodyBytes: body.length,
  jsonParseUs: (parse.user + parse.system) / (REVIEWS * 5),
  jsonParseBytes: Math.round(await allocatedPerCall(REVIEWS, () => JSON.parse(body))),
  enforce,
  audit,
}) + '\n')
if (args['alloc-sites'] !== undefined) {
  const text = benchReview(HOST, args['alloc-sites'])
  for (const [bytes, site] of await allocationSites(REVIEWS, () => handle(JSON.parse(text)))) process.stderr.write(`${bytes.toFixed(0).padStart(7)} B  ${site}\n`)
}

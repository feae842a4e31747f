// `npx tsx bench/rollout-revision.ts [--reviews 300]`: what one pin per rollout costs a review
// (issue 14; BENCHMARKS.md "One pin per rollout"). The bench pod (4 images, warm tag cache) as a
// ReplicaSet's pod, reviewed one at a time over HTTPS by an in-process pullpin connected to the
// in-test API server (loopback HTTP, same process), in four variants:
//   memory    every pod of one revision this replica already knows: no API request (the warm path)
//   first     every pod a new revision with no pod stored yet: one pods list, pins from the tag cache
//   cluster   every pod a new revision whose first pod another replica admitted: one pods list, the
//             pins read from that pod's pullpin.io/pins
//   standalone  a new revision each time, no cluster: memory only, no request
// Latency is the whole review as the client sees it; API requests are counted at the API server.
import { parseArgs } from 'node:util'
import { startPinningEnv } from '../test/support/pinning-env.js'
import { startFakeApiServer } from '../test/support/fake-apiserver.js'
import { startPullpin, type RunningPullpin } from '../test/support/pullpin.js'
import { admissionReview, applyResponsePatch } from '../test/support/pods.js'
import { connectCluster } from '../src/cluster/index.js'
import { staticNamespaceLabels } from '../src/policy/static-namespaces.js'
import { parseConfig } from '../src/policy/config.js'
import { createMetrics } from '../src/metrics.js'
import { CredentialStore, readDockerConfigFiles } from '../src/registry/credential-store.js'
import { benchConfigYaml, benchPod, pushBenchImages } from './fixtures.js'
import { percentile } from './load.js'

const { values: argv } = parseArgs({ options: { reviews: { type: 'string', default: '300' } } })
const REVIEWS = Number(argv.reviews)

const env = await startPinningEnv()
const api = await startFakeApiServer({ namespaces: ['default', 'team-a', 'team-b', 'pullpin-system'] })
const images = await pushBenchImages(env)
const yaml = benchConfigYaml(env)
const credentials = new CredentialStore()
credentials.replace(await readDockerConfigFiles([env.dockerConfigFile]))

async function replica (cluster: boolean): Promise<RunningPullpin> {
  return await startPullpin(yaml, {
    credentials,
    metrics: createMetrics({ defaultMetrics: false }),
    namespaces: staticNamespaceLabels(parseConfig(yaml, 'bench')),
    ...(cluster ? { cluster: connectCluster({ kubeConfig: api.kubeConfig() }), identity: 'bench' } : {}),
  })
}

let n = 0
function pod (hash: string): any {
  const p = benchPod(env.host, 'team-a', `rs-${hash}`)
  p.metadata!.name = `web-${hash}-${++n}`
  p.metadata!.labels = { ...p.metadata!.labels, 'pod-template-hash': hash }
  return p
}

async function review (p: RunningPullpin, body: unknown): Promise<{ ms: number; out: any }> {
  const started = performance.now()
  const res = await p.post('/mutate', body)
  const ms = performance.now() - started
  if (res.status !== 200) throw new Error(`HTTP ${res.status}`)
  return { ms, out: res.json.response }
}

function check (pinned: any, hash: string): void {
  const got = pinned.spec.containers.concat(pinned.spec.initContainers).map((c: any) => c.image).sort()
  const want = [...images.pins.values()].sort()
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`${hash}: pinned ${JSON.stringify(got)}`)
}

async function variant (name: string, p: RunningPullpin, hashOf: (i: number) => string, before?: (hash: string) => void): Promise<Record<string, unknown>> {
  const lists = (): number => api.requests.filter(r => r.path === '/api/v1/namespaces/team-a/pods').length
  // Warm-up: fills the tag cache and the JIT.
  for (let i = 0; i < 50; i++) { const h = `${name}-warm-${i}`; before?.(h); await review(p, admissionReview(pod(h))) }
  if (name === 'memory') await review(p, admissionReview(pod(hashOf(0)))) // the revision this replica knows
  const listsBefore = lists()
  const times: number[] = []
  for (let i = 0; i < REVIEWS; i++) {
    const hash = hashOf(i)
    before?.(hash)
    const body = pod(hash)
    const { ms, out } = await review(p, admissionReview(body))
    if (i === 0) check(applyResponsePatch(body, out), hash)
    times.push(ms)
  }
  times.sort((a, b) => a - b)
  const row = { variant: name, reviews: REVIEWS, p50Ms: percentile(times, 50), p99Ms: percentile(times, 99), apiRequestsPerReview: (lists() - listsBefore) / REVIEWS }
  console.log(JSON.stringify(row))
  return row
}

const clustered = await replica(true)
const standalone = await replica(false)
// Another replica's first pod of each `cluster` revision, as the API server stored it.
const other = await replica(false)
const seedAdmitted = async (hash: string): Promise<void> => {
  const body = pod(hash)
  const { out } = await review(other, admissionReview(body))
  api.seed(applyResponsePatch(body, out))
}
const rows = []
try {
  rows.push(await variant('memory', clustered, () => 'steady'))
  rows.push(await variant('first', clustered, (i) => `first-${i}`))
  // Seed first (outside the timed review): the pods another replica admitted.
  for (let i = 0; i < REVIEWS; i++) await seedAdmitted(`cluster-${i}`)
  for (let i = 0; i < 50; i++) await seedAdmitted(`cluster-warm-${i}`)
  rows.push(await variant('cluster', clustered, (i) => `cluster-${i}`))
  rows.push(await variant('standalone', standalone, (i) => `standalone-${i}`))
} finally {
  await clustered.close()
  await standalone.close()
  await other.close()
  await api.stop()
  await env.stop()
}
console.log('\n| variant | reviews | p50 ms | p99 ms | API requests per review |\n| --- | --- | --- | --- | --- |')
for (const r of rows as any[]) console.log(`| ${r.variant} | ${r.reviews} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${r.apiRequestsPerReview} |`)

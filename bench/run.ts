// `npm run bench`: every pullpin benchmark in one bounded run (about 5 minutes), loopback only.
// Writes bench/results.json and prints the Markdown tables BENCHMARKS.md shows.
//
//  1. Admission throughput, side by side in one run so the ratios hold on a noisy machine: the
//     floor (bench/floor-server.ts, a bare Fastify HTTPS server with a constant answer) vs pullpin
//     enforce and audit with a warm cache. autocannon over HTTPS keep-alive, same connections and
//     duration, rounds interleaved (floor, enforce, audit, floor, …), the median round reported.
//     pullpin is the built CLI (`node dist/cli.js serve`, compiled here into .cache/bench/dist).
//     Each server is a child process pinned to CPU 1, the load generator (this process) to CPU 0.
//     Then the same server with fewer steps configured, to see what each costs per review, and
//     the floor answering pullpin's real response or spending N µs of CPU per request (calibration).
//  2. Cache misses: 1,000 concurrent admissions for one uncached image against the real registry,
//     manifest HEADs counted at the proxy in front of it.
//  3. A 10,000-tag repository: SHA-tag index build time; HEADs of a refresh after 10 new tags.
//  4. Memory: the tag cache with 100,000 entries and a churn soak (bench/memory.ts); the server's
//     RSS across a load soak with varying pods and owners.
//  5. Start to ready: spawn → first 200 from /readyz.
//  6. bench/head-transport.ts (which HTTP transport for manifest HEADs), shortened.
//  7. bench/hot-path.ts: CPU per review of the admission handler alone (no HTTP), warm cache;
//     bench/pieces.ts: the profile findings, each before/now.
//
//   npx tsx bench/run.ts [--duration 8] [--rounds 3] [--connections 16] [--soak 30] [--only throughput,miss,...]
//                        [--out FILE] [--dist DIR: another build of src/, e.g. an older commit] [--strict: exit 1 on a missed target]
//                        [--compare DIR: throughput of another build in the same interleaved rounds, before/after]
import { execFileSync, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import { readdirSync, readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { startPinningEnv, gitSha, type PinningEnv } from '../test/support/pinning-env.js'
import { freePort } from '../test/support/registry.js'
import { admissionReview, decodePatch } from '../test/support/pods.js'
import { createPinningStack } from '../src/pinning.js'
import { CredentialStore, readDockerConfigFiles } from '../src/registry/credential-store.js'
import { parseConfig } from '../src/policy/config.js'
import { benchConfigYaml, benchPod, benchReview, pushBenchImages, writeServingCerts, type PushedImages, type ServingCerts } from './fixtures.js'
import { runLoad, percentile, type LoadResult } from './load.js'
import { HAS_TASKSET, cpuSeconds, pinSelf, rssBytes, spawnServer, trustingAgent, unpinSelf, waitReady, type ServerProcess } from './processes.js'

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)))
const BUILD_DIR = join(ROOT, '.cache', 'bench', 'dist')
const MiB = 1024 * 1024
const SECTIONS = ['hotpath', 'pieces', 'throughput', 'breakdown', 'miss', 'tags', 'memory', 'soak', 'startup', 'transport'] as const
type Section = typeof SECTIONS[number]

const { values: argv } = parseArgs({
  options: {
    duration: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '16' },
    soak: { type: 'string', default: '30' },
    only: { type: 'string' },
    out: { type: 'string', default: join(ROOT, 'bench', 'results.json') },
    strict: { type: 'boolean', default: false },
    // Benchmark another build instead of building this tree (e.g. an older commit, for before/after).
    dist: { type: 'string' },
    // Throughput only: also run another build (an older commit) in the same interleaved rounds, so
    // before and after are measured side by side under the same conditions.
    compare: { type: 'string' },
  },
})
const DIST = argv.dist !== undefined ? resolve(argv.dist) : BUILD_DIR
const COMPARE = argv.compare !== undefined ? resolve(argv.compare) : undefined
const DURATION = Number(argv.duration)
const ROUNDS = Number(argv.rounds)
const CONNECTIONS = Number(argv.connections)
const SOAK_S = Number(argv.soak)
const only = new Set<Section>((argv.only?.split(',') ?? SECTIONS) as Section[])

const log = (s: string): void => { process.stderr.write(`[bench] ${s}\n`) }
const round = (n: number, d = 2): number => Math.round(n * 10 ** d) / 10 ** d

interface Ctx {
  env: PinningEnv
  images: PushedImages
  certs: ServingCerts
  dir: string
  configFile: string
}

// ---------------------------------------------------------------------------------------------
// servers

async function startPullpin (ctx: Ctx, name: string, configFile = ctx.configFile, extraArgs: string[] = [], nodeFlags: string[] = [], dist = DIST): Promise<ServerProcess> {
  const port = await freePort()
  const server = spawnServer({
    name,
    command: process.execPath,
    args: [...nodeFlags, join(dist, 'cli.js'), 'serve', '--config', configFile, '--host', '127.0.0.1', '--port', String(port),
      '--tls-cert', ctx.certs.certFile, '--tls-key', ctx.certs.keyFile, '--namespace', 'pullpin-system', ...extraArgs],
    url: `https://127.0.0.1:${port}`,
    cpu: 1,
    logFile: join(ctx.dir, `${name}.log`),
  })
  await waitReady(server.url, ctx.certs.ca)
  return server
}

async function startFloor (ctx: Ctx, extraArgs: string[] = [], nodeFlags: string[] = []): Promise<ServerProcess> {
  const port = await freePort()
  const server = spawnServer({
    name: 'floor',
    command: process.execPath,
    args: [...nodeFlags, '--import', 'tsx', join(ROOT, 'bench', 'floor-server.ts'), '--port', String(port), '--cert', ctx.certs.certFile, '--key', ctx.certs.keyFile, ...extraArgs],
    url: `https://127.0.0.1:${port}`,
    cpu: 1,
    logFile: join(ctx.dir, 'floor.log'),
  })
  await waitReady(server.url, ctx.certs.ca)
  return server
}

async function post (url: string, ca: string, body: string): Promise<any> {
  const agent = trustingAgent(ca)
  try {
    const res = await request(`${url}/mutate`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body })
    const json = await res.body.json()
    if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}: ${JSON.stringify(json)}`)
    return json
  } finally {
    await agent.close()
  }
}

async function metric (url: string, ca: string, pattern: RegExp): Promise<number> {
  const agent = trustingAgent(ca)
  try {
    const res = await request(`${url}/metrics`, { dispatcher: agent })
    const text = await res.body.text()
    let sum = 0
    for (const line of text.split('\n')) {
      if (pattern.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
    }
    return sum
  } finally {
    await agent.close()
  }
}

// ---------------------------------------------------------------------------------------------
// 1. throughput

interface ThroughputResult {
  connections: number
  durationS: number
  rounds: number
  runs: Record<string, LoadResult[]>
  median: Record<string, LoadResult>
  ratios: Record<string, { rps: number; p99: number }>
  checks: Record<string, unknown>
}

async function throughput (ctx: Ctx): Promise<ThroughputResult> {
  const floor = await startFloor(ctx)
  const pullpin = await startPullpin(ctx, 'pullpin-throughput')
  // The same config with every pull-readiness check off (issue 13: checks must cost ≤ 10 % warm).
  const noChecksFile = join(ctx.dir, 'pullpin-nochecks.yaml')
  await writeFile(noChecksFile, benchConfigYaml(ctx.env, '', '', 'checks: { exists: off, pullAccess: off, platforms: off }'))
  const noChecks = await startPullpin(ctx, 'pullpin-nochecks', noChecksFile)
  const before = COMPARE !== undefined ? await startPullpin(ctx, 'pullpin-before', ctx.configFile, [], [], COMPARE) : undefined
  try {
    const enforceBody = benchReview(ctx.env.host, 'team-a')
    const auditBody = benchReview(ctx.env.host, 'team-b')
    // Fill the cache and check the answers are the real ones before measuring anything.
    const enforced = await post(pullpin.url, ctx.certs.ca, enforceBody)
    const patch = decodePatch(enforced.response)
    const pinnedTo = patch.filter((op: any) => /\/image$/.test(op.path)).map((op: any) => op.value).sort()
    const expected = [...ctx.images.pins.values()].sort()
    if (JSON.stringify(pinnedTo) !== JSON.stringify(expected)) throw new Error(`enforce: pinned ${JSON.stringify(pinnedTo)}, expected ${JSON.stringify(expected)}`)
    const secrets = patch.find((op: any) => op.path === '/spec/imagePullSecrets')?.value
    if (JSON.stringify(secrets) !== JSON.stringify([{ name: 'registry-credentials' }, { name: 'mirror-credentials' }])) throw new Error(`enforce: secrets ${JSON.stringify(secrets)}`)
    const audited = await post(pullpin.url, ctx.certs.ca, auditBody)
    if (audited.response.patch !== undefined || audited.response.warnings?.length !== 6) throw new Error(`audit: unexpected answer ${JSON.stringify(audited.response)}`)

    const targets: Array<{ name: string; url: string; pid: number; body: string }> = [
      { name: 'floor', url: floor.url, pid: floor.pid, body: enforceBody },
      { name: 'enforce', url: pullpin.url, pid: pullpin.pid, body: enforceBody },
      { name: 'audit', url: pullpin.url, pid: pullpin.pid, body: auditBody },
      { name: 'enforce-nochecks', url: noChecks.url, pid: noChecks.pid, body: enforceBody },
      { name: 'audit-nochecks', url: noChecks.url, pid: noChecks.pid, body: auditBody },
    ]
    if (before !== undefined) {
      targets.push(
        { name: 'enforce-before', url: before.url, pid: before.pid, body: enforceBody },
        { name: 'audit-before', url: before.url, pid: before.pid, body: auditBody }
      )
    }
    const registryRequestsBefore = ctx.env.proxy.log.length
    const fromCacheBefore = await metric(pullpin.url, ctx.certs.ca, /^pullpin_images_pinned_total\{format="tag",source="cache"\}/)
    for (const t of targets) {
      log(`warm-up ${t.name}`)
      await runLoad({ url: `${t.url}/mutate`, body: t.body, connections: CONNECTIONS, durationS: 2 })
    }
    const runs: Record<string, LoadResult[]> = Object.fromEntries(targets.map(t => [t.name, []]))
    for (let r = 0; r < ROUNDS; r++) {
      for (const t of targets) {
        const res = await runLoad({ url: `${t.url}/mutate`, body: t.body, connections: CONNECTIONS, durationS: DURATION, serverPid: t.pid })
        runs[t.name]!.push(res)
        log(`round ${r + 1} ${t.name}: ${res.rps.toFixed(0)} req/s, p99 ${res.p99.toFixed(2)} ms, errors ${res.errors}, server CPU ${res.serverCpu?.toFixed(2)}, load CPU ${res.loadCpu.toFixed(2)}`)
      }
    }
    const fromCache = await metric(pullpin.url, ctx.certs.ca, /^pullpin_images_pinned_total\{format="tag",source="cache"\}/) - fromCacheBefore
    const enforceRequests = runs.enforce!.reduce((n, r) => n + r.requests, 0)
    const median: Record<string, LoadResult> = {}
    for (const [name, list] of Object.entries(runs)) median[name] = [...list].sort((a, b) => a.rps - b.rps)[Math.floor(list.length / 2)]!
    const f = median.floor!
    const ratios: Record<string, { rps: number; p99: number }> = {}
    for (const t of targets.slice(1)) ratios[t.name] = { rps: median[t.name]!.rps / f.rps, p99: median[t.name]!.p99 / f.p99 }
    return {
      connections: CONNECTIONS,
      durationS: DURATION,
      rounds: ROUNDS,
      runs,
      median,
      ratios,
      checks: {
        registryRequestsDuringRuns: ctx.env.proxy.log.length - registryRequestsBefore,
        // Counted in the measured runs and the warm-up: 4 images per enforce review.
        pinnedFromCache: fromCache,
        enforceRequestsMeasured: enforceRequests,
      },
    }
  } finally {
    await floor.stop()
    await pullpin.stop()
    await noChecks.stop()
    await before?.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// 1b. where pullpin's CPU per review goes: the same server with less and less to do

interface BreakdownRow { variant: string; rps: number; cpuUsPerReview: number; p99: number }

async function breakdown (ctx: Ctx): Promise<BreakdownRow[]> {
  const base = 'namespaces:\n  labels:\n    team-a: { pullpin.io/inject: enabled }\n'
  const secrets = benchConfigYaml(ctx.env).slice(0, benchConfigYaml(ctx.env).indexOf('pinning:'))
  const files = { none: join(ctx.dir, 'breakdown-none.yaml'), secrets: join(ctx.dir, 'breakdown-secrets.yaml'), response: join(ctx.dir, 'enforce-response.json') }
  await writeFile(files.none, base)
  await writeFile(files.secrets, secrets)
  const body = benchReview(ctx.env.host, 'team-a')
  const out: BreakdownRow[] = []
  const measure = async (variant: string, server: ServerProcess): Promise<void> => {
    try {
      await runLoad({ url: `${server.url}/mutate`, body, connections: CONNECTIONS, durationS: 2 })
      const r = await runLoad({ url: `${server.url}/mutate`, body, connections: CONNECTIONS, durationS: 5, serverPid: server.pid })
      out.push({ variant, rps: r.rps, cpuUsPerReview: (r.serverCpu ?? 0) * 1e6 / r.rps, p99: r.p99 })
      log(`breakdown: ${variant}: ${r.rps.toFixed(0)} req/s, ${((r.serverCpu ?? 0) * 1e6 / r.rps).toFixed(0)} µs CPU per review`)
    } finally {
      await server.stop()
    }
  }
  const variants: Array<[string, string, string[]]> = [
    ['pullpin, no step configured: policy, draft, diff, metrics (no patch)', files.none, []],
    ['pullpin, + 2 pull secrets injected (patch)', files.secrets, []],
    ['pullpin, + 4 images pinned from the warm cache (the enforce benchmark)', ctx.configFile, []],
    ['pullpin, the same with --log-level debug (a log line per mutated pod)', ctx.configFile, ['--log-level', 'debug']],
  ]
  for (const [variant, config, args] of variants) await measure(variant, await startPullpin(ctx, 'pullpin-breakdown', config, args))

  // Calibration: the floor itself, made to answer pullpin's real (bigger) response, or to spend a
  // fixed CPU time per request. What a server doing N µs of work gets here, whatever the work is.
  const pullpin = await startPullpin(ctx, 'pullpin-response')
  try {
    await writeFile(files.response, JSON.stringify(await post(pullpin.url, ctx.certs.ca, body)))
  } finally {
    await pullpin.stop()
  }
  const bytes = (await readFile(files.response)).length
  await measure(`floor, answering pullpin's enforce response (${bytes} bytes, constant)`, await startFloor(ctx, ['--response', files.response]))
  for (const us of [5, 10, 20, 40]) await measure(`floor, + ${us} µs of busy CPU per request`, await startFloor(ctx, ['--work-us', String(us)]))
  // What pullpin's write coalescing (src/server/turn-flush.ts) does for a server that does no work.
  await measure('floor, answers held to the end of the event-loop turn as pullpin holds them', await startFloor(ctx, ['--turn-flush']))
  // A smaller young generation: shorter, more frequent scavenges. Both servers, so the ratio is fair.
  const gc = ['--max-semi-space-size=4']
  await measure('floor, node --max-semi-space-size=4', await startFloor(ctx, [], gc))
  await measure('pullpin enforce, node --max-semi-space-size=4', await startPullpin(ctx, 'pullpin-gc', ctx.configFile, [], gc))
  return out
}

// ---------------------------------------------------------------------------------------------
// 2. 1,000 concurrent admissions for one uncached image

async function cacheMiss (ctx: Ctx): Promise<Record<string, unknown>> {
  const N = 1000
  const sha = gitSha('bench-burst')
  await ctx.env.registry.push({ seed: 'bench-burst' }, 'acme/burst', ['latest', sha, `sha-${sha.slice(0, 7)}`])
  const pullpin = await startPullpin(ctx, 'pullpin-miss')
  const agent = trustingAgent(ctx.certs.ca, N)
  try {
    // Open the 1,000 keep-alive connections first, so the burst measures admission, not handshakes.
    await Promise.all(Array.from({ length: N }, async () => {
      const res = await request(`${pullpin.url}/healthz`, { dispatcher: agent })
      await res.body.dump()
    }))
    const pod = benchPod(ctx.env.host, 'team-a')
    pod.spec!.containers = [{ ...pod.spec!.containers![0]!, image: `${ctx.env.host}/acme/burst:latest` }]
    delete pod.spec!.initContainers
    const bodies = Array.from({ length: N }, () => JSON.stringify(admissionReview(pod)))
    ctx.env.proxy.resetCounts()
    const started = performance.now()
    const latencies = await Promise.all(bodies.map(async (body) => {
      const t0 = performance.now()
      const res = await request(`${pullpin.url}/mutate`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body })
      const json = await res.body.json() as any
      const ms = performance.now() - t0
      const image = decodePatch(json.response).find((op: any) => op.path === '/spec/containers/0/image')?.value
      if (res.statusCode !== 200 || image !== `${ctx.env.host}/acme/burst:${sha}`) throw new Error(`burst: HTTP ${res.statusCode}, pinned ${image}`)
      return ms
    }))
    const wall = performance.now() - started
    const sorted = Float64Array.from(latencies).sort()
    const counts = Object.fromEntries(ctx.env.proxy.counts())
    return {
      admissions: N,
      allPinned: true,
      tagHeads: ctx.env.proxy.count('HEAD /v2/acme/burst/manifests/latest'),
      registryRequests: counts,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      max: sorted[sorted.length - 1],
      wallMs: wall,
    }
  } finally {
    await agent.close()
    await pullpin.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// 3. a 10,000-tag repository

async function tenThousandTags (ctx: Ctx): Promise<Record<string, unknown>> {
  const repo = 'acme/tenk'
  const first = gitSha('tenk-0')
  const t0 = performance.now()
  await ctx.env.registry.push({ seed: 'tenk' }, repo, ['latest', first])
  const shas = Array.from({ length: 9_999 }, (_, i) => gitSha(`tenk-${i + 1}`))
  // registry.tag() PUTs the manifest under each tag with 8 requests in flight; 4 of them at once
  // keep the registry's two cores busy (its bcrypt check of every request is the bottleneck).
  const quarter = Math.ceil(shas.length / 4)
  await Promise.all([0, 1, 2, 3].map(q => ctx.env.registry.tag(repo, 'latest', shas.slice(q * quarter, (q + 1) * quarter))))
  const fixtureMs = performance.now() - t0
  log(`10,000 SHA tags pushed in ${(fixtureMs / 1000).toFixed(1)} s`)

  const config = parseConfig(benchConfigYaml(ctx.env, '', '  cache: { tagListMinIntervalSeconds: 0 }'), 'bench')
  const credentials = new CredentialStore()
  credentials.replace(await readDockerConfigFiles(config.registry.credentials.dockerConfigFiles))
  const stack = await createPinningStack({ config, credentials })
  const ref = { registry: ctx.env.host, repository: repo }
  const manifestHeads = (): number => [...ctx.env.proxy.counts()].filter(([k]) => k.startsWith(`HEAD /v2/${repo}/manifests/`)).reduce((n, [, v]) => n + v, 0)
  try {
    ctx.env.proxy.resetCounts()
    const registryPid = childPid('docker-registry')
    const registryCpu0 = registryPid !== undefined ? cpuSeconds(registryPid) : 0
    const ownCpu0 = process.cpuUsage()
    const b0 = performance.now()
    const indexed = await stack.cache.warm(ref)
    const buildMs = performance.now() - b0
    const ownCpu = process.cpuUsage(ownCpu0)
    const registryCpu = registryPid !== undefined ? cpuSeconds(registryPid) - registryCpu0 : undefined
    const buildHeads = manifestHeads()
    const buildPages = ctx.env.proxy.count(`GET /v2/${repo}/tags/list`)

    // CI pushes a new build under 10 new SHA tags.
    const more = Array.from({ length: 10 }, (_, i) => gitSha(`tenk-new-${i}`))
    const newDigest = await ctx.env.registry.push({ seed: 'tenk-new' }, repo, [more[0]!])
    await ctx.env.registry.tag(repo, more[0]!, more.slice(1))
    ctx.env.proxy.resetCounts()
    const r0 = performance.now()
    const found = await stack.cache.shaTagsFor(ref, newDigest)
    const refreshMs = performance.now() - r0
    return {
      shaTags: indexed,
      fixtureSeconds: fixtureMs / 1000,
      buildMs,
      buildHeads,
      buildTagListPages: buildPages,
      // Where the build's time goes: the registry process, and this process (pullpin's client and the test proxy).
      buildRegistryCpuSeconds: registryCpu,
      buildClientAndProxyCpuSeconds: (ownCpu.user + ownCpu.system) / 1e6,
      refreshHeads: manifestHeads(),
      refreshMs,
      refreshFound: found.length,
      refreshTagListPages: ctx.env.proxy.count(`GET /v2/${repo}/tags/list`),
    }
  } finally {
    await stack.close()
  }
}

/** pid of this process's child running `command` (the registry the test fixture started). */
function childPid (command: string): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (name === command && ppid === process.pid) return Number(entry)
    } catch {
      // gone meanwhile
    }
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// 4. memory

/** Runs a bench script in a fresh process and returns what it prints on stdout. */
function runScript (script: string, nodeArgs: string[] = [], args: string[] = []): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', join(ROOT, 'bench', script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    let text = ''
    child.stdout.on('data', (c: Buffer) => { text += c.toString('utf8') })
    child.once('exit', (code) => code === 0 ? resolve(text.trim()) : reject(new Error(`${script} exited ${code}`)))
  })
}

async function memory (): Promise<Record<string, unknown>> {
  return JSON.parse(await runScript('memory.ts', ['--expose-gc'])) as Record<string, unknown>
}

async function soak (ctx: Ctx): Promise<Record<string, unknown>> {
  const pullpin = await startPullpin(ctx, 'pullpin-soak')
  try {
    // Varying pods: new uid, pod and owner every time (the owner-pin LRU fills up to its bound),
    // mixed enforce and audit namespaces.
    let n = 0
    const makeBody = (): string => benchReview(ctx.env.host, n++ % 4 === 3 ? 'team-b' : 'team-a', `owner-${Math.floor(Math.random() * 1e9)}`)
    await runLoad({ url: `${pullpin.url}/mutate`, makeBody, connections: CONNECTIONS, durationS: 3 })
    const samples: Array<{ s: number; rssMiB: number }> = []
    const started = performance.now()
    const timer = setInterval(() => samples.push({ s: round((performance.now() - started) / 1000, 1), rssMiB: round(rssBytes(pullpin.pid) / MiB, 1) }), 1000)
    samples.push({ s: 0, rssMiB: round(rssBytes(pullpin.pid) / MiB, 1) })
    const load = await runLoad({ url: `${pullpin.url}/mutate`, makeBody, connections: CONNECTIONS, durationS: SOAK_S, serverPid: pullpin.pid })
    clearInterval(timer)
    samples.push({ s: round((performance.now() - started) / 1000, 1), rssMiB: round(rssBytes(pullpin.pid) / MiB, 1) })
    // RSS saws up and down with V8's major collections; what must stay flat is the level it comes
    // back to (the lowest sample of each half) and the height of the peaks.
    const half = Math.floor(samples.length / 2)
    const low = (xs: typeof samples): number => Math.min(...xs.map(x => x.rssMiB))
    const high = (xs: typeof samples): number => Math.max(...xs.map(x => x.rssMiB))
    const ownerPins = await metric(pullpin.url, ctx.certs.ca, /^pullpin_images_pinned_total\{format="tag",source="owner"\}/)
    return {
      durationS: SOAK_S,
      requests: load.requests,
      rps: load.rps,
      errors: load.errors,
      ownerPinned: ownerPins,
      rssStartMiB: samples[0]!.rssMiB,
      rssEndMiB: samples[samples.length - 1]!.rssMiB,
      rssMaxMiB: Math.max(...samples.map(s => s.rssMiB)),
      firstHalfLowMiB: low(samples.slice(0, half)),
      firstHalfHighMiB: high(samples.slice(0, half)),
      secondHalfLowMiB: low(samples.slice(half)),
      secondHalfHighMiB: high(samples.slice(half)),
      samples,
    }
  } finally {
    await pullpin.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// 5. start to ready

async function startup (ctx: Ctx): Promise<Record<string, unknown>> {
  /** ms from spawn to the first 200 from /readyz; `ca` undefined: the server makes its own (not checked). */
  const once = async (name: string, args: string[], ca: string | undefined): Promise<number> => {
    const port = await freePort()
    const t0 = performance.now()
    const server = spawnServer({
      name,
      command: process.execPath,
      args: [join(DIST, 'cli.js'), 'serve', '--config', ctx.configFile, '--host', '127.0.0.1', '--port', String(port), ...args],
      url: `https://127.0.0.1:${port}`,
      cpu: 1,
      logFile: join(ctx.dir, `${name}.log`),
    })
    try {
      await waitReady(server.url, ca, 15_000, 2)
      return performance.now() - t0
    } finally {
      await server.stop()
    }
  }
  const withFiles: number[] = []
  for (let i = 0; i < 5; i++) withFiles.push(await once(`startup-${i}`, ['--tls-cert', ctx.certs.certFile, '--tls-key', ctx.certs.keyFile], ctx.certs.ca))
  // First start ever: pullpin makes its own CA and serving certificate; then a restart reuses them.
  const certsDir = join(ctx.dir, 'fresh-certs')
  const fresh = await once('startup-fresh', ['--certs-dir', certsDir], undefined)
  const reused = await once('startup-reuse', ['--certs-dir', certsDir], readFileSync(join(certsDir, 'ca.crt'), 'utf8'))
  const sorted = [...withFiles].sort((a, b) => a - b)
  return {
    tlsFilesMs: withFiles,
    medianMs: sorted[Math.floor(sorted.length / 2)],
    maxMs: sorted[sorted.length - 1],
    freshSelfSignedMs: fresh,
    reusedSelfSignedMs: reused,
  }
}

// ---------------------------------------------------------------------------------------------
// 6. head-transport

async function headTransport (): Promise<string> {
  return await runScript('head-transport.ts', [], ['500', '3'])
}

// ---------------------------------------------------------------------------------------------
// report

function machine (): Record<string, unknown> {
  const model = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? 'unknown'
  return { nproc: cpus().length, cpu: model, memGiB: round(totalmem() / 1024 ** 3, 1), node: process.version, kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), taskset: HAS_TASKSET, loadavgAtStart: loadavg() }
}

const ms = (n: unknown): string => typeof n === 'number' ? `${n.toFixed(2)} ms` : '-'

function table (results: Record<string, any>): string {
  const out: string[] = []
  const tp = results.throughput as ThroughputResult | undefined
  if (tp !== undefined) {
    out.push(`### Admission throughput (${tp.connections} connections, ${tp.durationS} s per run, median of ${tp.rounds} interleaved rounds)`, '')
    out.push('| server | req/s | p50 | p99 | p99.9 | errors | req/s vs floor | p99 vs floor | server CPU (cores) | server CPU per review | load-generator CPU (cores) |')
    out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for (const name of Object.keys(tp.median)) {
      const m = tp.median[name]!
      const ratio = tp.ratios[name]
      const label = name === 'floor' ? 'floor (bare Fastify)' : name.endsWith('-before') ? `before (--compare): pullpin ${name.slice(0, -7)}` : `pullpin ${name}, warm cache`
      out.push(`| ${label} | ${m.rps.toFixed(0)} | ${ms(m.p50)} | ${ms(m.p99)} | ${ms(m.p999)} | ${m.errors} | ${ratio === undefined ? '1.00×' : `${ratio.rps.toFixed(2)}×`} | ${ratio === undefined ? '1.00×' : `${ratio.p99.toFixed(2)}×`} | ${m.serverCpu?.toFixed(2) ?? '-'} | ${m.serverCpu !== undefined ? `${(m.serverCpu * 1e6 / m.rps).toFixed(0)} µs` : '-'} | ${m.loadCpu.toFixed(2)} |`)
    }
    for (const mode of ['enforce', 'audit']) {
      const on = tp.median[mode]
      const off = tp.median[`${mode}-nochecks`]
      if (on === undefined || off === undefined) continue
      const cpu = (m: LoadResult): number => m.serverCpu !== undefined ? m.serverCpu * 1e6 / m.rps : NaN
      out.push('', `Checks on (\`pullpin ${mode}\`) vs off (\`${mode}-nochecks\`): ${(on.rps / off.rps).toFixed(2)}× req/s, ${(cpu(on) / cpu(off)).toFixed(2)}× server CPU per review.`)
    }
    out.push('', `Images pinned from the cache: ${String(tp.checks.pinnedFromCache)}. Registry requests during the runs: ${String(tp.checks.registryRequestsDuringRuns)} (the background refreshes of the 4 tags each time their 60 s TTL ends; reviews meanwhile get the cached answer).`, '')
  }
  const bd = results.breakdown as BreakdownRow[] | undefined
  if (bd !== undefined) {
    out.push(`### Where the CPU per review goes, and what any server gets here (same bench pod and connections, 5 s each; the floor above: ${tp !== undefined ? `${tp.median.floor!.rps.toFixed(0)} req/s, ${(tp.median.floor!.serverCpu! * 1e6 / tp.median.floor!.rps).toFixed(0)} µs` : 'see above'})`, '')
    out.push('| server | req/s | vs floor | server CPU per review | p99 |', '|---|---:|---:|---:|---:|')
    const floorRps = tp?.median.floor?.rps
    for (const b of bd) out.push(`| ${b.variant} | ${b.rps.toFixed(0)} | ${floorRps !== undefined ? `${(b.rps / floorRps).toFixed(2)}×` : '-'} | ${b.cpuUsPerReview.toFixed(0)} µs | ${ms(b.p99)} |`)
    out.push('')
  }
  const hp = results.hotpath
  if (hp !== undefined) {
    out.push('### Admission hot path without HTTP (bench/hot-path.ts: CPU per review, best / median of 5 rounds of 10,000; bytes allocated per review, JSON.parse included)', '')
    const kib = (bytes: number | undefined): string => bytes === undefined ? '-' : `${(bytes / 1024).toFixed(1)} KiB`
    out.push('| review | CPU per review | allocated per review |', '|---|---:|---:|')
    out.push(`| enforce: 2 secrets added, 4 images pinned from the warm cache, patch, metrics | ${hp.enforce.bestUs.toFixed(1)} / ${hp.enforce.medianUs.toFixed(1)} µs | ${kib(hp.enforce.allocatedBytes)} |`)
    out.push(`| audit: the same findings reported (warnings, log line), no patch | ${hp.audit.bestUs.toFixed(1)} / ${hp.audit.medianUs.toFixed(1)} µs | ${kib(hp.audit.allocatedBytes)} |`)
    out.push(`| (JSON.parse of the ${hp.bodyBytes}-byte body, done by Fastify before the handler) | ${hp.jsonParseUs.toFixed(1)} µs | ${kib(hp.jsonParseBytes)} |`, '')
  }
  if (results.pieces !== undefined) out.push('### Profile findings, each measured alone (bench/pieces.ts; "before" reproduces commit d89ee5e)', '', results.pieces as string, '')
  const rows: string[] = []
  const miss = results.miss
  if (miss !== undefined) {
    rows.push(`| 1,000 concurrent admissions, one uncached image | manifest HEADs for the tag | ${miss.tagHeads} | exactly 1 |`)
    rows.push(`| | p50 / p99 / max | ${ms(miss.p50)} / ${ms(miss.p99)} / ${ms(miss.max)} | |`)
  }
  const tags = results.tags
  if (tags !== undefined) {
    rows.push(`| 10,000-tag repository | SHA-tag index, first build | ${(tags.buildMs / 1000).toFixed(2)} s (${tags.buildHeads} HEADs, ${tags.buildTagListPages} tag-list pages; CPU: registry ${tags.buildRegistryCpuSeconds?.toFixed(1) ?? '?'} s, pullpin + test proxy ${tags.buildClientAndProxyCpuSeconds.toFixed(1)} s) | |`)
    rows.push(`| | HEADs of a refresh after 10 new tags | ${tags.refreshHeads} (${tags.refreshMs.toFixed(0)} ms) | 10 |`)
  }
  const mem = results.memory
  if (mem !== undefined) {
    rows.push(`| tag cache, 100,000 tag entries | RSS over the empty process | ${mem.tagsOverEmptyMiB.toFixed(1)} MiB (heap ${mem.heapBytesPerTag.toFixed(0)} B/entry) | ≤ 100 MiB |`)
    rows.push(`| | + 100 repositories × 1,000 SHA tags indexed | ${mem.indexOverEmptyMiB.toFixed(1)} MiB over empty (heap ${mem.heapBytesPerShaTag.toFixed(0)} B/SHA tag) | |`)
    rows.push(`| | RSS across 500,000 more tags through the 100,000-entry LRU | ${mem.soakMiB.map((x: number) => x.toFixed(0)).join(' → ')} MiB | flat |`)
  }
  const soakR = results.soak
  if (soakR !== undefined) {
    rows.push(`| server soak, ${soakR.durationS} s of varying pods and owners (${soakR.requests} reviews, ${soakR.errors} errors) | RSS lowest–highest, first half → second half (start ${soakR.rssStartMiB}, end ${soakR.rssEndMiB}) | ${soakR.firstHalfLowMiB}–${soakR.firstHalfHighMiB} → ${soakR.secondHalfLowMiB}–${soakR.secondHalfHighMiB} MiB | flat |`)
  }
  const st = results.startup
  if (st !== undefined) {
    rows.push(`| start to ready (\`node dist/cli.js serve\` → /readyz 200) | median / max of 5, TLS files | ${st.medianMs.toFixed(0)} / ${st.maxMs.toFixed(0)} ms | ≤ 1 s |`)
    rows.push(`| | first start, making its CA and certificate / reusing them | ${st.freshSelfSignedMs.toFixed(0)} / ${st.reusedSelfSignedMs.toFixed(0)} ms | ≤ 1 s |`)
  }
  if (rows.length > 0) out.push('### Cache, memory, start', '', '| benchmark | measure | result | target |', '|---|---|---:|---|', ...rows, '')
  if (results.transport !== undefined) out.push('### Manifest HEAD transport (bench/head-transport.ts 500 3)', '', results.transport as string, '')
  return out.join('\n')
}

function targets (results: Record<string, any>): string[] {
  const missed: string[] = []
  const check = (ok: boolean, what: string): void => { if (!ok) missed.push(what) }
  const tp = results.throughput as ThroughputResult | undefined
  if (tp !== undefined) {
    for (const name of ['enforce', 'audit']) {
      check(tp.ratios[name]!.rps >= 0.8, `${name}: req/s ${tp.ratios[name]!.rps.toFixed(2)}× the floor (target ≥ 0.8×)`)
      check(tp.ratios[name]!.p99 <= 2, `${name}: p99 ${tp.ratios[name]!.p99.toFixed(2)}× the floor (target ≤ 2×)`)
      check(tp.median[name]!.errors === 0, `${name}: ${tp.median[name]!.errors} errors`)
    }
  }
  if (results.miss !== undefined) check(results.miss.tagHeads === 1, `cache miss: ${results.miss.tagHeads} manifest HEADs (target 1)`)
  if (results.tags !== undefined) check(results.tags.refreshHeads === 10, `10,000 tags: refresh made ${results.tags.refreshHeads} HEADs (target 10)`)
  if (results.memory !== undefined) check(results.memory.tagsOverEmptyMiB <= 100, `memory: ${results.memory.tagsOverEmptyMiB.toFixed(1)} MiB over empty (target ≤ 100)`)
  if (results.startup !== undefined) check(results.startup.maxMs <= 1000 && results.startup.freshSelfSignedMs <= 1000, 'start to ready over 1 s')
  return missed
}

async function main (): Promise<void> {
  const began = performance.now()
  if (argv.dist === undefined) {
    log(`building pullpin into ${DIST}`)
    try {
      execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.json'), '--outDir', DIST, '--declaration', 'false', '--sourceMap', 'false'], { stdio: 'inherit' })
    } catch {
      // tsc still emits JavaScript when it reports type errors (noEmitOnError is off); say so and go on.
      log('tsc reported errors (see above); benchmarking the emitted JavaScript anyway')
    }
  } else {
    log(`benchmarking the build in ${DIST}`)
  }
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-bench-'))
  const env = await startPinningEnv()
  const results: Record<string, unknown> = { machine: machine(), startedAt: new Date().toISOString() }
  try {
    const images = await pushBenchImages(env)
    const certs = await writeServingCerts(dir)
    const configFile = join(dir, 'pullpin.yaml')
    await writeFile(configFile, benchConfigYaml(env))
    const ctx: Ctx = { env, images, certs, dir, configFile }
    // The registry started before this: it keeps every CPU. Servers go to CPU 1, this process to CPU 0.
    const pinned = pinSelf(0)
    results.placement = pinned
      ? 'load generator (autocannon, this process) pinned to CPU 0 with taskset; each server a child process pinned to CPU 1'
      : 'taskset missing: load generator and server in separate processes, not pinned'
    if (only.has('hotpath')) { log('hot path in process'); results.hotpath = JSON.parse(await runScript('hot-path.ts')) }
    if (only.has('pieces')) { log('profile findings, before and now'); results.pieces = await runScript('pieces.ts', ['--expose-gc']) }
    if (only.has('throughput')) { log('throughput: floor vs enforce vs audit'); results.throughput = await throughput(ctx) }
    if (only.has('breakdown')) { log('breakdown: CPU per review by what pullpin does'); results.breakdown = await breakdown(ctx) }
    if (only.has('miss')) { log('cache miss: 1,000 concurrent admissions'); results.miss = await cacheMiss(ctx) }
    if (only.has('soak')) { log(`server soak: ${SOAK_S} s`); results.soak = await soak(ctx) }
    if (only.has('startup')) { log('start to ready'); results.startup = await startup(ctx) }
    unpinSelf(cpus().length)
    if (only.has('tags')) { log('10,000-tag repository'); results.tags = await tenThousandTags(ctx) }
    if (only.has('memory')) { log('memory: 100,000 tag entries'); results.memory = await memory() }
    if (only.has('transport')) { log('head-transport'); results.transport = await headTransport() }
  } finally {
    await env.stop()
    await rm(dir, { recursive: true, force: true })
  }
  results.totalSeconds = round((performance.now() - began) / 1000, 1)
  // Other work on the machine skews every number: the 1-minute load average before and after says how quiet it was.
  results.loadavgAtEnd = loadavg()
  await writeFile(argv.out, JSON.stringify(results, null, 2) + '\n')
  const m = results.machine as Record<string, unknown>
  const la = (x: unknown): string => (x as number[]).map(v => v.toFixed(2)).join(' ')
  process.stdout.write(`\nMachine: ${String(m.nproc)} × ${String(m.cpu)}, ${String(m.memGiB)} GiB, Node ${String(m.node)}, Linux ${String(m.kernel)}. ${String(results.placement)}. Load average at start ${la(m.loadavgAtStart)}, at end ${la(results.loadavgAtEnd)}.\n\n`)
  process.stdout.write(table(results as Record<string, any>) + '\n')
  const missed = targets(results as Record<string, any>)
  process.stdout.write(missed.length === 0 ? 'Every target met.\n' : `Targets missed:\n${missed.map(x => `  - ${x}`).join('\n')}\n`)
  process.stdout.write(`Results: ${argv.out} (${String(results.totalSeconds)} s)\n`)
  if (argv.strict === true && missed.length > 0) process.exitCode = 1
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})

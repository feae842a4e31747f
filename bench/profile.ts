// Profiles pullpin's hot path: the built CLI (`node --cpu-prof dist/cli.js serve`, pinned to
// CPU 1) answers the warm-cache enforce review under autocannon load (this process, CPU 0); on
// SIGTERM node writes the profile, and the functions pullpin spends its time in are printed.
//
//   npx tsx bench/profile.ts [--duration 10] [--namespace team-a|team-b] [--top 40] [--server pullpin|floor] [--gc]
//
// --gc runs the server with --trace-gc instead of the CPU profiler, and prints what the young
// generation costs: bytes allocated per review, scavenges per second and their pauses.
// The .cpuprofile is kept in .cache/bench/profiles/ (open it in Chrome DevTools → Performance).
import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { startPinningEnv } from '../test/support/pinning-env.js'
import { freePort } from '../test/support/registry.js'
import { benchConfigYaml, benchReview, pushBenchImages, writeServingCerts } from './fixtures.js'
import { runLoad } from './load.js'
import { pinSelf, spawnServer, waitReady } from './processes.js'
import { byOwner, summarize } from './cpuprofile.js'

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)))
const DIST = join(ROOT, '.cache', 'bench', 'dist')
const PROFILES = join(ROOT, '.cache', 'bench', 'profiles')

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    namespace: { type: 'string', default: 'team-a' },
    top: { type: 'string', default: '40' },
    connections: { type: 'string', default: '16' },
    server: { type: 'string', default: 'pullpin' },
    gc: { type: 'boolean', default: false },
  },
})

async function main (): Promise<void> {
  execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.json'), '--outDir', DIST, '--declaration', 'false', '--sourceMap', 'false'], { stdio: 'inherit' })
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-profile-'))
  const env = await startPinningEnv()
  await mkdir(PROFILES, { recursive: true })
  const profileDir = await mkdtemp(join(PROFILES, 'run-'))
  try {
    await pushBenchImages(env)
    const certs = await writeServingCerts(dir)
    const configFile = join(dir, 'pullpin.yaml')
    await writeFile(configFile, benchConfigYaml(env))
    pinSelf(0)
    const port = await freePort()
    const floor = values.server === 'floor'
    const logFile = join(dir, 'server.log')
    const profiler = values.gc ? ['--trace-gc'] : ['--cpu-prof', '--cpu-prof-dir', profileDir]
    const server = spawnServer({
      name: 'profile',
      command: process.execPath,
      args: floor
        ? [...profiler, '--import', 'tsx', join(ROOT, 'bench', 'floor-server.ts'), '--port', String(port), '--cert', certs.certFile, '--key', certs.keyFile]
        : [...profiler, join(DIST, 'cli.js'), 'serve', '--config', configFile, '--host', '127.0.0.1',
            '--port', String(port), '--tls-cert', certs.certFile, '--tls-key', certs.keyFile, '--namespace', 'pullpin-system'],
      url: `https://127.0.0.1:${port}`,
      cpu: 1,
      logFile,
    })
    await waitReady(server.url, certs.ca)
    const body = benchReview(env.host, values.namespace)
    const warm = await runLoad({ url: `${server.url}/mutate`, body, connections: Number(values.connections), durationS: 2 })
    const r = await runLoad({ url: `${server.url}/mutate`, body, connections: Number(values.connections), durationS: Number(values.duration), serverPid: server.pid })
    await server.stop()
    if (values.gc) {
      const gc = gcSummary(await readFile(logFile, 'utf8'), warm.requests + r.requests)
      process.stdout.write(`${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, server CPU ${r.serverCpu?.toFixed(2)}\n` +
        `${(gc.allocatedBytes / 1024).toFixed(1)} KiB allocated per review; ${gc.scavenges} scavenges (${(gc.scavenges / (Number(values.duration) + 2)).toFixed(1)}/s), ` +
        `pause mean ${gc.meanMs.toFixed(2)} ms, max ${gc.maxMs.toFixed(2)} ms; ${gc.others} other GCs\n`)
      return
    }
    const file = (await readdir(profileDir)).find(f => f.endsWith('.cpuprofile'))
    if (file === undefined) throw new Error('no .cpuprofile written')
    const s = summarize(join(profileDir, file), ROOT + '/')
    const reviews = warm.requests + r.requests
    const top = Number(values.top)
    const out: string[] = [
      `${r.rps.toFixed(0)} req/s (profiling slows it down), p99 ${r.p99.toFixed(2)} ms, server CPU ${r.serverCpu?.toFixed(2)}`,
      `profile: ${join(profileDir, file)}: ${s.samples} samples over ${(s.durationMs / 1000).toFixed(1)} s; idle ${s.idlePct}%, GC ${s.gcPct}%`,
      '',
      `self % by owner, and µs of main-thread time per review (${reviews} reviews answered while profiling)`,
      ...byOwner(s).map(o => `${o.selfPct.toFixed(1).padStart(6)}  ${(o.selfPct / 100 * s.durationMs * 1000 / reviews).toFixed(1).padStart(6)} µs  ${o.owner}`),
      '',
      'inclusive % (self %)  function — everything',
      ...s.functions.sort((a, b) => b.totalPct - a.totalPct).slice(0, top).map(f => `${f.totalPct.toFixed(1).padStart(6)} (${f.selfPct.toFixed(1).padStart(5)})  ${f.fn}`),
      '',
      'inclusive % (self %)  function — pullpin code (.cache/bench/dist = src/)',
      ...s.functions.filter(f => f.fn.includes('.cache/bench/dist/')).sort((a, b) => b.totalPct - a.totalPct).slice(0, top)
        .map(f => `${f.totalPct.toFixed(1).padStart(6)} (${f.selfPct.toFixed(1).padStart(5)})  ${f.fn}`),
      '',
      'self %  function — everything',
      ...s.functions.sort((a, b) => b.selfPct - a.selfPct).slice(0, top).map(f => `${f.selfPct.toFixed(1).padStart(6)}  ${f.fn}`),
    ]
    process.stdout.write(out.join('\n') + '\n')
  } finally {
    await env.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

/**
 * Young-generation cost from `--trace-gc` lines such as
 * `[pid:0x…]   1234 ms: Scavenge 20.1 (35.2) -> 5.3 (36.0) MB, 0.81 / 0.00 ms  (average mu = …) allocation failure;`
 * Allocation is the heap growth between one GC's end and the next one's start.
 */
function gcSummary (log: string, reviews: number): { allocatedBytes: number; scavenges: number; meanMs: number; maxMs: number; others: number } {
  const re = /: (Scavenge|Mark-Compact|Mark-sweep|Minor Mark-Compact)[^\d]*([\d.]+) \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB, ([\d.]+) \//g
  let allocatedMb = 0
  let lastAfter: number | undefined
  const pauses: number[] = []
  let others = 0
  for (const m of log.matchAll(re)) {
    const before = Number(m[2])
    const after = Number(m[3])
    if (lastAfter !== undefined) allocatedMb += Math.max(0, before - lastAfter)
    lastAfter = after
    if (m[1] === 'Scavenge') pauses.push(Number(m[4]))
    else others++
  }
  if (pauses.length === 0) throw new Error('no scavenges in the --trace-gc output')
  return {
    allocatedBytes: allocatedMb * 1024 * 1024 / reviews,
    scavenges: pauses.length,
    meanMs: pauses.reduce((a, b) => a + b, 0) / pauses.length,
    maxMs: Math.max(...pauses),
    others,
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})

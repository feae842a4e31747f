// Issue 11: the largest pod the API server can send (about 3 MiB), reviewed through the real HTTPS
// server (the built CLI, a child process) while small reviews run at a steady rate. Reports the
// small reviews' p50/p99/max latency while the big review runs, and the big review's own time.
// Target: small-review max under 50 ms; the big review answered within the review deadline.
//
//   npx tsx bench/huge-pod.ts [--dist DIR: another build, e.g. an older commit] [--old: that build
//                             predates the `limits` config section] [--containers 19000]
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { request } from 'undici'
import { startPinningEnv } from '../test/support/pinning-env.js'
import { freePort } from '../test/support/registry.js'
import { admissionReview } from '../test/support/pods.js'
import { benchConfigYaml, benchPod, benchReview, pushBenchImages, writeServingCerts } from './fixtures.js'
import { spawnServer, trustingAgent, waitReady } from './processes.js'
import { percentile } from './load.js'

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)))
const { values: argv } = parseArgs({
  options: {
    dist: { type: 'string' },
    old: { type: 'boolean', default: false },
    containers: { type: 'string', default: '19000' },
    interval: { type: 'string', default: '10' },
  },
})

const DIST = argv.dist !== undefined ? resolve(argv.dist) : join(ROOT, '.cache', 'bench', 'huge-dist')
if (argv.dist === undefined) {
  execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.json'), '--outDir', DIST, '--declaration', 'false', '--sourceMap', 'false'], { stdio: 'inherit' })
}

const env = await startPinningEnv()
const dir = await mkdtemp(join(tmpdir(), 'pullpin-huge-'))
try {
  await pushBenchImages(env)
  const certs = await writeServingCerts(dir)
  const n = Number(argv.containers)
  // The cap has to let the big pod through to measure its review; the old build has no limits.
  const configFile = join(dir, 'config.yaml')
  await writeFile(configFile, benchConfigYaml(env) + (argv.old ? '' : `limits: { maxImagesPerReview: ${n + 10} }\n`))
  const port = await freePort()
  const server = spawnServer({
    name: 'pullpin',
    command: process.execPath,
    args: [join(DIST, 'cli.js'), 'serve', '--config', configFile, '--host', '127.0.0.1', '--port', String(port),
      '--tls-cert', certs.certFile, '--tls-key', certs.keyFile, '--namespace', 'pullpin-system'],
    url: `https://127.0.0.1:${port}`,
    cpu: 1,
    logFile: join(dir, 'pullpin.log'),
  })
  await waitReady(server.url, certs.ca)
  const agent = trustingAgent(certs.ca, 8)
  const post = async (body: string): Promise<{ ms: number; status: number; bytes: number }> => {
    const started = performance.now()
    const res = await request(`${server.url}/mutate`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body, headersTimeout: 60_000, bodyTimeout: 60_000 })
    const text = await res.body.text()
    return { ms: performance.now() - started, status: res.statusCode, bytes: text.length }
  }
  const small = (): string => benchReview(env.host, 'team-a')
  for (let i = 0; i < 200; i++) await post(small()) // warm: caches filled, code optimized

  const scenarios: Record<string, (i: number) => string> = {
    'distinct invalid images': i => `Bad Image ${i}`,
    'distinct valid images, registry not pinned': i => `ghcr.io/acme/app-${i}:main`,
    'one image repeated (pinned from the cache)': () => benchPod(env.host, 'team-a').spec!.containers![0]!.image!,
  }
  const rows: string[] = []
  for (const [name, image] of Object.entries(scenarios)) {
    const pod = benchPod(env.host, 'team-a')
    const base = pod.spec!.containers![0]!
    pod.spec!.containers = Array.from({ length: n }, (_, i) => ({ name: `c${i}`, image: image(i), resources: base.resources, imagePullPolicy: 'IfNotPresent' }))
    const body = JSON.stringify(admissionReview(pod))
    const latencies: number[] = []
    // Stopped from outside the loop: an AbortController says so to the reader and to the linter.
    const running = new AbortController()
    const ticker = (async () => {
      while (!running.signal.aborted) {
        const wait = new Promise(resolve => setTimeout(resolve, Number(argv.interval)))
        const r = await post(small())
        if (r.status !== 200) throw new Error(`small review: HTTP ${r.status}`)
        latencies.push(r.ms)
        await wait
      }
    })()
    await new Promise(resolve => setTimeout(resolve, 200))
    const before = latencies.length
    const big = await post(body)
    const during = latencies.slice(before)
    running.abort()
    await ticker
    during.sort((a, b) => a - b)
    const row = `| ${name} | ${n} | ${(body.length / 1024 / 1024).toFixed(2)} MiB | ${big.status} | ${big.ms.toFixed(0)} ms | ${during.length} | ${percentile(during, 50).toFixed(1)} ms | ${percentile(during, 99).toFixed(1)} ms | ${(during.at(-1) ?? NaN).toFixed(1)} ms |`
    console.log(row)
    rows.push(row)
  }
  console.log('\n| big pod | containers | body | status | big review | small reviews during it | p50 | p99 | max |\n|---|---|---|---|---|---|---|---|---|\n' + rows.join('\n'))
  await agent.close()
  await server.stop()
} finally {
  await env.stop()
  await rm(dir, { recursive: true, force: true })
}

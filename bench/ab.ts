// Before/after of a few builds over HTTPS, for differences smaller than bench/run.ts's rounds can
// tell apart: every build runs as its own server (pinned to CPU 1, the load generator to CPU 0), and
// the same review is sent to each in many short rounds, alternating the order, so a drift of the
// machine falls on every build alike. Prints the median and the lowest server CPU per review.
//
//   npx tsx bench/ab.ts [--rounds 12] [--duration 3] [--namespace team-a|team-b] [--owner UID] DIST[:nochecks] ...
//
// DIST is a build of src/ (`tsc -p tsconfig.json --outDir DIST`, as bench/run.ts --dist takes);
// ":nochecks" runs that build with every pull-readiness check off. Two copies of one build show
// how far apart two servers of the same code land on this machine.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { startPinningEnv } from '../test/support/pinning-env.js'
import { freePort } from '../test/support/registry.js'
import { benchConfigYaml, benchReview, pushBenchImages, writeServingCerts } from './fixtures.js'
import { runLoad } from './load.js'
import { pinSelf, spawnServer, waitReady, type ServerProcess } from './processes.js'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rounds: { type: 'string', default: '12' },
    duration: { type: 'string', default: '3' },
    namespace: { type: 'string', default: 'team-a' },
    owner: { type: 'string' },
  },
})
if (positionals.length === 0) throw new Error('usage: bench/ab.ts DIST[:nochecks] ...')

const median = (a: readonly number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!

const dir = await mkdtemp(join(tmpdir(), 'pullpin-ab-'))
const env = await startPinningEnv()
const servers: ServerProcess[] = []
try {
  await pushBenchImages(env)
  const certs = await writeServingCerts(dir)
  const configs = { on: join(dir, 'checks-on.yaml'), off: join(dir, 'checks-off.yaml') }
  await writeFile(configs.on, benchConfigYaml(env))
  await writeFile(configs.off, benchConfigYaml(env, '', '', 'checks: { exists: off, pullAccess: off, platforms: off }'))
  pinSelf(0)
  for (const [i, build] of positionals.entries()) {
    const [dist, variant] = build.split(':')
    const port = await freePort()
    const server = spawnServer({
      name: `ab-${i}`,
      command: process.execPath,
      args: [join(resolve(dist!), 'cli.js'), 'serve', '--config', variant === 'nochecks' ? configs.off : configs.on, '--host', '127.0.0.1',
        '--port', String(port), '--tls-cert', certs.certFile, '--tls-key', certs.keyFile, '--namespace', 'pullpin-system'],
      url: `https://127.0.0.1:${port}`,
      cpu: 1,
      logFile: join(dir, `ab-${i}.log`),
    })
    servers.push(server)
    await waitReady(server.url, certs.ca)
  }
  const body = benchReview(env.host, values.namespace, values.owner)
  for (const s of servers) await runLoad({ url: `${s.url}/mutate`, body, connections: 16, durationS: 2 })
  const perReview: number[][] = servers.map(() => [])
  for (let r = 0; r < Number(values.rounds); r++) {
    const order = servers.map((_, i) => r % 2 === 0 ? i : servers.length - 1 - i)
    for (const i of order) {
      const res = await runLoad({ url: `${servers[i]!.url}/mutate`, body, connections: 16, durationS: Number(values.duration), serverPid: servers[i]!.pid })
      if (res.errors > 0) throw new Error(`${positionals[i]!}: ${res.errors} errors`)
      perReview[i]!.push(res.serverCpu! * 1e6 / res.rps)
    }
  }
  for (const [i, build] of positionals.entries()) {
    const us = perReview[i]!
    process.stdout.write(`${build.padEnd(44)} server CPU per review: median ${median(us).toFixed(1)} µs, lowest ${Math.min(...us).toFixed(1)} µs (${us.map(v => v.toFixed(0)).join(' ')})\n`)
  }
} finally {
  for (const s of servers) await s.stop()
  await env.stop()
  await rm(dir, { recursive: true, force: true })
}

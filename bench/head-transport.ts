// Which HTTP transport should pullpin use for manifest HEADs?
//
// undici marks the socket for reset after every HEAD (client-h1.js: "Close after a HEAD request
// to interop with misbehaving servers", nodejs/undici issue 258), so each HEAD through undici
// opens a new TCP connection and pays a full TLS handshake. node:https with a keepAlive Agent
// reuses the socket. This bench measures both against the real test registry (Debian
// docker-registry, TLS, auth none so only the transport is measured) and also GETs, so the
// registry client can pick its transport from numbers rather than folklore.
//
// Every mode does the same fixed number of requests for one manifest, at concurrency 1 and 8, and
// reports requests/s and TLS handshakes. Handshakes are counted on the client as new sockets:
// each new socket to an https origin is exactly one TLS handshake (the connector / the Agent's
// createConnection is the only place a socket is made).
//
// Each row is the median of ROUNDS runs; every run uses a fresh transport (so its handshakes are
// its own), after one warm-up run per row on a throwaway transport (JIT, the registry's caches).
//
//   npx tsx bench/head-transport.ts            # 1000 requests per run, 3 runs per row
//   npx tsx bench/head-transport.ts 3000 5     # other count / rounds
import { Agent as HttpsAgent, request as httpsRequest, type AgentOptions } from 'node:https'
import type { Duplex } from 'node:stream'
import { performance } from 'node:perf_hooks'
import { Agent as UndiciAgent, buildConnector, request as undiciRequest } from 'undici'
import { createRequire } from 'node:module'
import { startRegistry, MANIFEST_ACCEPT } from '../test/support/registry.js'

const UNDICI_VERSION = (createRequire(import.meta.url)('undici/package.json') as { version: string }).version

const COUNT = Number(process.argv[2] ?? 1000)
const ROUNDS = Number(process.argv[3] ?? 3)
const CONCURRENCY = [1, 8]

interface Transport {
  name: string
  method: 'HEAD' | 'GET'
  send: (url: string) => Promise<number>
  handshakes: () => number
  close: () => Promise<void>
}

function undiciTransport (method: 'HEAD' | 'GET', caPem: string): Transport {
  let sockets = 0
  const base = buildConnector({ ca: caPem })
  const connect: buildConnector.connector = (opts, cb) => {
    sockets++
    return base(opts, cb)
  }
  const agent = new UndiciAgent({ connect, keepAliveTimeout: 30_000, connections: 16 })
  return {
    name: `${method} undici`,
    method,
    async send (url) {
      const res = await undiciRequest(url, { method, dispatcher: agent, headers: { accept: MANIFEST_ACCEPT } })
      await res.body.dump()
      return res.statusCode
    },
    handshakes: () => sockets,
    close: () => agent.close()
  }
}

function httpsTransport (method: 'HEAD' | 'GET', caPem: string): Transport {
  let sockets = 0
  const options: AgentOptions = { keepAlive: true, maxSockets: 16, ca: caPem, scheduling: 'lifo' }
  const agent = new HttpsAgent(options)
  // Agent.createConnection is where the Agent makes every new (TLS) socket.
  const create = agent.createConnection.bind(agent) as (...args: unknown[]) => Duplex
  ;(agent as unknown as { createConnection: (...args: unknown[]) => Duplex }).createConnection = (...args: unknown[]) => {
    sockets++
    return create(...args)
  }
  return {
    name: `${method} node:https keepAlive`,
    method,
    send: (url) => new Promise((resolve, reject) => {
      const req = httpsRequest(url, { method, agent, headers: { accept: MANIFEST_ACCEPT } }, (res) => {
        res.on('error', reject)
        res.on('end', () => resolve(res.statusCode ?? 0))
        res.resume()
      })
      req.on('error', reject)
      req.end()
    }),
    handshakes: () => sockets,
    close: () => { agent.destroy(); return Promise.resolve() }
  }
}

async function run (t: Transport, url: string, concurrency: number, count: number): Promise<{ rps: number; handshakes: number }> {
  const before = t.handshakes()
  let left = count
  const started = performance.now()
  const worker = async (): Promise<void> => {
    while (left > 0) {
      left--
      const status = await t.send(url)
      if (status !== 200) throw new Error(`${t.name}: status ${status}`)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const seconds = (performance.now() - started) / 1000
  return { rps: count / seconds, handshakes: t.handshakes() - before }
}

async function main (): Promise<void> {
  const reg = await startRegistry({ auth: 'none' })
  try {
    await reg.push({ seed: 'bench' }, 'bench/app', ['latest'])
    const url = `${reg.url}/v2/bench/app/manifests/latest`
    const makers: Array<() => Transport> = [
      () => undiciTransport('HEAD', reg.caPem),
      () => httpsTransport('HEAD', reg.caPem),
      () => undiciTransport('GET', reg.caPem),
      () => httpsTransport('GET', reg.caPem)
    ]
    console.log(`node ${process.version}, undici ${UNDICI_VERSION}, ${COUNT} requests per run, median of ${ROUNDS} runs, registry ${reg.host} (docker-registry 2.8, TLS, auth none)`)
    console.log('| transport | concurrency | req/s (median) | TLS handshakes per run |')
    console.log('|---|---:|---:|---:|')
    for (const concurrency of CONCURRENCY) {
      for (const make of makers) {
        const warm = make()
        try { await run(warm, url, concurrency, Math.min(100, COUNT)) } finally { await warm.close() }
        const results: Array<{ rps: number; handshakes: number }> = []
        let name = ''
        for (let i = 0; i < ROUNDS; i++) {
          const t = make()
          name = t.name
          try { results.push(await run(t, url, concurrency, COUNT)) } finally { await t.close() }
        }
        results.sort((a, b) => a.rps - b.rps)
        const median = results[Math.floor(results.length / 2)] ?? { rps: 0, handshakes: 0 }
        console.log(`| ${name} | ${concurrency} | ${median.rps.toFixed(0)} | ${median.handshakes} |`)
      }
    }
  } finally {
    await reg.stop()
  }
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})

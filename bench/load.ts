// The load generator: autocannon over HTTPS keep-alive, a fixed number of connections for a fixed
// duration. autocannon's own latency histogram has 1 ms resolution (integer HDR buckets), too
// coarse for sub-millisecond answers, so every response time (float ms, from its 'response'
// event) is also kept and the percentiles are computed exactly from those.
import autocannon, { type AutocannonRequest } from 'autocannon'
import { cpuSeconds } from './processes.js'

export interface LoadOptions {
  readonly url: string
  readonly body?: string
  /** Per-request bodies (a soak varies its pods); overrides body. */
  readonly makeBody?: () => string
  readonly connections: number
  readonly durationS: number
  /** The server's pid, to report its CPU use over the run. */
  readonly serverPid?: number
}

export interface LoadResult {
  readonly requests: number
  readonly rps: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly p999: number
  readonly max: number
  /** Connection errors + timeouts + non-2xx answers. */
  readonly errors: number
  readonly non2xx: number
  readonly durationS: number
  /** CPU used over the run, in cores (1.0 = one core busy all the time). */
  readonly serverCpu?: number
  readonly loadCpu: number
}

export function percentile (sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return 0
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]!
}

export async function runLoad (opts: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = []
  const requests: AutocannonRequest[] | undefined = opts.makeBody === undefined
    ? undefined
    : [{ method: 'POST', setupRequest: (req) => ({ ...req, body: opts.makeBody!() }) }]
  const startCpu = opts.serverPid !== undefined ? cpuSeconds(opts.serverPid) : 0
  const startLoadCpu = process.cpuUsage()
  const started = performance.now()
  const instance = autocannon({
    url: opts.url,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    ...(opts.body !== undefined ? { body: opts.body } : {}),
    ...(requests !== undefined ? { requests } : {}),
    connections: opts.connections,
    pipelining: 1,
    duration: opts.durationS,
    timeout: 10,
    servername: 'localhost',
  })
  instance.on('response', (_client, statusCode, _bytes, ms) => { if (statusCode >= 200 && statusCode < 300) latencies.push(ms) })
  const r = await instance
  const wall = (performance.now() - started) / 1000
  const loadCpu = process.cpuUsage(startLoadCpu)
  const serverCpu = opts.serverPid !== undefined ? (cpuSeconds(opts.serverPid) - startCpu) / wall : undefined
  const sorted = Float64Array.from(latencies).sort()
  const ok = r['2xx']
  return {
    requests: ok,
    rps: ok / r.duration,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    p999: percentile(sorted, 99.9),
    max: sorted.length > 0 ? sorted[sorted.length - 1]! : 0,
    errors: r.errors + r.timeouts + r.non2xx,
    non2xx: r.non2xx,
    durationS: r.duration,
    ...(serverCpu !== undefined ? { serverCpu } : {}),
    loadCpu: (loadCpu.user + loadCpu.system) / 1e6 / wall,
  }
}

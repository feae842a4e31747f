// autocannon 9 ships no type definitions; this declares the slice of its programmatic API the
// benchmarks use (lib/init.js, lib/run.js, lib/aggregateResult.js).
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events'

  export interface AutocannonRequest {
    method?: string
    path?: string
    headers?: Record<string, string>
    body?: string | Buffer
    setupRequest?: (req: AutocannonRequest, context: Record<string, unknown>) => AutocannonRequest
  }

  export interface AutocannonOptions {
    url: string
    method?: string
    headers?: Record<string, string>
    body?: string | Buffer
    requests?: AutocannonRequest[]
    connections?: number
    pipelining?: number
    duration?: number
    amount?: number
    timeout?: number
    servername?: string
    tlsOptions?: Record<string, unknown>
    excludeErrorStats?: boolean
  }

  export interface Histogram {
    average: number
    mean: number
    stddev: number
    min: number
    max: number
    total?: number
    p50: number
    p90: number
    p97_5: number
    p99: number
    p99_9: number
    [k: string]: number | undefined
  }

  export interface AutocannonResult {
    duration: number
    errors: number
    timeouts: number
    non2xx: number
    resets: number
    mismatches: number
    '2xx': number
    latency: Histogram
    requests: Histogram & { sent: number }
    throughput: Histogram
    statusCodeStats: Record<string, { count: number }>
  }

  export interface Instance extends EventEmitter, PromiseLike<AutocannonResult> {
    on (event: 'response', listener: (client: unknown, statusCode: number, resBytes: number, responseTime: number) => void): this
    on (event: 'reqError', listener: (err: Error) => void): this
    on (event: string, listener: (...args: any[]) => void): this
    stop (): void
  }

  function autocannon (opts: AutocannonOptions): Instance
  export default autocannon
}

// The profile findings of BENCHMARKS.md, each measured alone: what pullpin did before (reproduced
// here as it was in the commit named in each row) against what it does now, in CPU time per operation.
//
//   node --expose-gc --import tsx bench/pieces.ts
import { pino, type Logger } from 'pino'
import { LRUCache } from 'lru-cache'
import { createLogger } from '../src/server/logger.js'
import { draftOf } from '../src/mutate/mutator.js'
import type { Pod } from '../src/mutate/pod.js'
import { auditAnnotations } from '../src/admission/handler.js'
import type { Change } from '../src/mutate/mutator.js'
import { benchReview } from './fixtures.js'

const dest = (): pino.DestinationStream => pino.destination({ dest: '/dev/null', sync: true })

/** The logger as it was: pino's redact paths. */
const BEFORE_REDACT_PATHS = [
  'req.headers.authorization', 'req.headers["proxy-authorization"]', 'headers.authorization', 'authorization', 'password',
  'auth', 'token', 'access_token', 'identitytoken', '*.authorization', '*.password', '*.auth', '*.token', '*.access_token',
  '*.identitytoken', '*.data', '*.stringData', '*.*.data', '*.*.stringData', '*.dockerconfigjson', '*[".dockerconfigjson"]',
]
const loggers: Array<[string, Logger]> = [
  ['log line, pino redact paths (d89ee5e)', pino({ level: 'info', redact: { paths: BEFORE_REDACT_PATHS, censor: '[redacted]' }, base: { name: 'pullpin' }, timestamp: pino.stdTimeFunctions.isoTime }, dest())],
  ['log line, createLogger (now)', createLogger({ destination: dest() })],
  ['log line, no censoring at all', pino({ level: 'info', base: { name: 'pullpin' }, timestamp: pino.stdTimeFunctions.isoTime }, dest())],
]

/** The changes of the bench pod's review, as the handler logs them. */
const changes: Change[] = [
  { kind: 'secret' as const, secret: 'registry-credentials' },
  { kind: 'secret' as const, secret: 'mirror-credentials' },
  ...[0, 1, 2, 3].map(i => ({ kind: 'pin' as const, field: 'containers' as const, container: `c${i}`, from: `registry.bench.local:5000/acme/app${i}:latest`, to: `registry.bench.local:5000/acme/app${i}:${'a'.repeat(40)}`, verified: true })),
]

function auditAnnotationsBefore (mode: string, list: typeof changes, prefix: string): Record<string, string> {
  const out: Record<string, string> = { mode }
  const secrets = list.flatMap(c => c.kind === 'secret' ? [c.secret] : [])
  const pins = Object.fromEntries(list.flatMap(c => c.kind === 'pin' ? [[c.container, c.to]] : []))
  if (secrets.length > 0) out[`${prefix}inject-secrets`] = secrets.join(',')
  if (Object.keys(pins).length > 0) out[`${prefix}pin-images`] = JSON.stringify(pins)
  return out
}

/** The draft copy as it was in bf2e8a8 (src/mutate/mutator.ts cloneJson): a deep copy of the whole pod. */
function cloneJson<T> (value: T): T {
  if (value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length)
    for (let i = 0; i < value.length; i++) out[i] = cloneJson(value[i])
    return out as T
  }
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(value)) {
    const v = cloneJson((value as Record<string, unknown>)[key])
    if (key === '__proto__') Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true })
    else out[key] = v
  }
  return out as T
}

let sink = 0
function cpu (name: string, fn: () => unknown, n = 50_000): void {
  for (let i = 0; i < Math.min(5000, n); i++) fn()
  const c0 = process.cpuUsage()
  for (let i = 0; i < n; i++) if (fn() !== undefined) sink++
  const c = process.cpuUsage(c0)
  process.stdout.write(`| ${name} | ${((c.user + c.system) / n).toFixed(2)} µs |\n`)
}

process.stdout.write('| operation | CPU per operation |\n|---|---:|\n')
for (const [name, logger] of loggers) {
  cpu(name, () => logger.child({ uid: '705ab4f5-6393-11e8-b7cc-42010a800002', namespace: 'team-a', pod: 'web-*', operation: 'CREATE' })
    .info({ mode: 'enforce', outcome: 'mutated', dryRun: false, changes, warnings: [], diagnostics: [] }, 'pod mutated'))
}
cpu('deadline signal per review: AbortSignal.any([signal, AbortSignal.timeout(2000)]) (d89ee5e)', () => AbortSignal.any([new AbortController().signal, AbortSignal.timeout(2000)]), 20_000)
const pod = JSON.parse(benchReview('registry.bench.local:5000', 'team-a')).request.object as Pod
cpu('draft copy of the pod, structuredClone (d89ee5e)', () => structuredClone(pod))
cpu('draft copy of the pod, cloneJson (bf2e8a8)', () => cloneJson(pod))
cpu('draft copy of the pod, copies along the paths steps may edit (now)', () => draftOf(pod))
cpu('audit annotations, flatMap/fromEntries (d89ee5e)', () => auditAnnotationsBefore('enforce', changes, ''), 500_000)
cpu('audit annotations, one loop (now)', () => auditAnnotations('enforce', changes, ''), 500_000)

// Tag cache keys: `${registry}/${repository}:${tag}` is a ConsString (a tree of its pieces) that a
// Map keeps whole; a flat copy is what the cache stores now.
const gc = (globalThis as { gc?: () => void }).gc
if (gc !== undefined) {
  const N = 100_000
  const heapPerEntry = (flat: boolean): number => {
    gc(); gc()
    const before = process.memoryUsage().heapUsed
    const lru = new LRUCache<string, number>({ max: N })
    for (let i = 0; i < N; i++) {
      const ref = { registry: 'registry.example.com', repository: `team-${i % 100}/app-${Math.floor(i / 100) % 100}` }
      const key = `${`${ref.registry}/${ref.repository}`}:build-${i}`
      lru.set(flat ? Buffer.from(key, 'utf8').toString('utf8') : key, i)
    }
    gc(); gc()
    const bytes = (process.memoryUsage().heapUsed - before) / N
    sink += lru.size
    return bytes
  }
  process.stdout.write(`| tag cache key in an LRU, concatenated (d89ee5e) | ${heapPerEntry(false).toFixed(0)} bytes of heap |\n`)
  process.stdout.write(`| tag cache key in an LRU, flat copy (now) | ${heapPerEntry(true).toFixed(0)} bytes of heap |\n`)
}
if (sink < 0) process.stdout.write('\n')

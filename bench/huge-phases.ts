// Issue 11: where a huge pod's review spends its synchronous time, phase by phase, in process (no
// HTTP, no registry), and the longest stretch the whole handler keeps the event loop. Complements
// bench/huge-pod.ts (which measures the effect on other reviews through the real server).
//
//   npx tsx bench/huge-phases.ts [--containers 19000] [--rounds 5]
import { parseArgs } from 'node:util'
import { createAdmissionHandler, auditAnnotations } from '../src/admission/handler.js'
import { parseAdmissionReview } from '../src/admission/review.js'
import { limitWarnings } from '../src/admission/warnings.js'
import { addLogList } from '../src/admission/log-fields.js'
import { createMutator, draftOf, podPatch, type MutationStep } from '../src/mutate/mutator.js'
import { forEachChunked } from '../src/mutate/chunks.js'
import { listImages, type Pod } from '../src/mutate/pod.js'
import { createSecretInjectionStep } from '../src/mutate/inject-secrets.js'
import { parseConfig } from '../src/policy/config.js'
import { createNamespacePolicy } from '../src/policy/namespace-mode.js'
import { staticNamespaceLabels } from '../src/policy/static-namespaces.js'
import { createLogger } from '../src/server/logger.js'
import { createMetrics } from '../src/metrics.js'
import { LogCapture } from '../test/support/pullpin.js'
import { admissionReview, podFromWorkload } from '../test/support/pods.js'

const { values: argv } = parseArgs({ options: { containers: { type: 'string', default: '19000' }, rounds: { type: 'string', default: '5' }, 'handler-only': { type: 'boolean', default: false } } })
const n = Number(argv.containers)
const rounds = Number(argv.rounds)

const config = parseConfig(`
namespaces: { labels: { team-a: { pullpin.io/inject: enabled } } }
pullSecrets:
  - { name: a, registries: ["*.example.com", ghcr.io] }
  - { name: b, registries: [docker.io] }
`)

/** Pins every container to a digest, as the pinning step does on a warm cache (no registry). */
const pinAll: MutationStep = {
  name: 'pin-all',
  operations: ['CREATE'],
  run (ctx) {
    const pins: Record<string, { image: string; pin: string }> = Object.create(null) as Record<string, { image: string; pin: string }>
    const one = (i: number): void => {
      const site = ctx.images[i]!
      const to = `${site.image.split(':')[0]!}@sha256:${'a'.repeat(64)}`
      ctx.pod.spec![site.field]![site.index]!.image = to
      pins[site.container] = { image: site.image, pin: to }
      ctx.changes.push({ kind: 'pin', field: site.field, container: site.container, from: site.image, to, verified: true })
    }
    const end = (): void => { (ctx.pod.metadata!.annotations ??= {})['pullpin.io/pins'] = JSON.stringify(pins) }
    return forEachChunked(ctx.images.length, one).then(end)
  },
}

/** A warning per image, as the pinning step gives each invalid one. */
const warnAll: MutationStep = {
  name: 'warn-all',
  operations: ['CREATE'],
  async run (ctx) {
    await forEachChunked(ctx.images.length, i => { ctx.warnings.push(`pullpin: invalid image reference "${ctx.images[i]!.image}": not pinned`) })
  },
}

function podWith (image: (i: number) => string): Pod {
  const pod = podFromWorkload('deployment-web', { namespace: 'team-a' })
  const base = pod.spec!.containers![0]!
  pod.spec!.containers = Array.from({ length: n }, (_, i) => ({ name: `c${i}`, image: image(i), resources: base.resources, imagePullPolicy: 'IfNotPresent' }))
  return pod
}

const scenarios: Record<string, { image: (i: number) => string; steps: MutationStep[] }> = {
  'distinct invalid images': { image: i => `Bad Image ${i}`, steps: [createSecretInjectionStep(config.pullSecrets), warnAll] },
  'distinct valid images, pinned': { image: i => `ghcr.io/acme/app-${i}:main`, steps: [createSecretInjectionStep(config.pullSecrets), pinAll] },
  'one image repeated, pinned': { image: () => 'ghcr.io/acme/web:main', steps: [createSecretInjectionStep(config.pullSecrets), pinAll] },
}

function time<T> (fn: () => T): [T, number] {
  const start = performance.now()
  const out = fn()
  return [out, performance.now() - start]
}

async function timeAsync (fn: () => unknown): Promise<number> {
  const start = performance.now()
  await fn()
  return performance.now() - start
}

/** The synchronous stretches while `work` runs, longest first: the gaps between two turns of a setImmediate ticker. */
async function stretches (work: () => Promise<unknown>): Promise<number[]> {
  let last = performance.now()
  const gaps: number[] = []
  let running = true
  const tick = (): void => {
    const now = performance.now()
    gaps.push(now - last)
    last = now
    if (running) setImmediate(tick)
  }
  setImmediate(tick)
  last = performance.now()
  await work()
  running = false
  tick()
  return gaps.sort((a, b) => b - a).concat(0, 0, 0)
}

for (const [name, s] of Object.entries(scenarios)) {
  const body = JSON.stringify(admissionReview(podWith(s.image)))
  const rows: Record<string, number[]> = {}
  const add = (k: string, ms: number): void => { (rows[k] ??= []).push(ms) }
  const mutate = createMutator(s.steps)
  const handle = createAdmissionHandler({
    policy: createNamespacePolicy(config, 'pullpin-system'),
    namespaces: staticNamespaceLabels(config),
    mutator: mutate,
    logger: createLogger({ level: 'info', destination: new LogCapture() }),
    metrics: createMetrics({ defaultMetrics: false }).admission,
    failOpen: true,
    deadlineMs: 10_000,
  })
  for (let r = 0; r < rounds; r++) {
    if (argv['handler-only']) {
      // For --cpu-prof: only the handler's stretches, no phase timed on its own.
      const gaps = await stretches(() => handle(JSON.parse(body)))
      add('handler: longest stretch (after JSON.parse)', gaps[0]!)
      if (process.env.GAPS !== undefined) console.log(gaps.slice(0, 8).map(g => g.toFixed(1)).join(' '))
      continue
    }
    const [parsed, tParse] = time(() => JSON.parse(body) as unknown)
    add('JSON.parse (Fastify)', tParse)
    const [req, tReview] = time(() => parseAdmissionReview(parsed))
    add('parseAdmissionReview', tReview)
    const pod = req.object as Pod
    add('listImages', time(() => listImages(pod))[1])
    add('draftOf', time(() => draftOf(pod))[1])
    const result = await mutate({ operation: 'CREATE', namespace: 'team-a', mode: 'enforce', dryRun: false, object: pod, deadline: { signal: new AbortController().signal, ms: Infinity, remainingMs: () => Infinity } })
    add('podPatch (projection diff; sliced: all slices)', await timeAsync(() => podPatch(pod, result.pod)))
    const [json, tJson] = time(() => JSON.stringify(result.patch))
    add('JSON.stringify(patch)', tJson)
    const [b64, tB64] = time(() => Buffer.from(json).toString('base64'))
    add('base64', tB64)
    add('auditAnnotations (sliced: all slices)', await timeAsync(() => auditAnnotations('enforce', result.changes, '')))
    add('limitWarnings', time(() => limitWarnings(result.warnings))[1])
    add('log line fields', time(() => {
      const f: Record<string, unknown> = {}
      addLogList(f, 'changes', result.changes); addLogList(f, 'warnings', result.warnings); addLogList(f, 'diagnostics', result.diagnostics)
    })[1])
    add('JSON.stringify(response) (Fastify)', time(() => JSON.stringify({ response: { patch: b64 } }))[1])
    const gaps = await stretches(() => handle(JSON.parse(body)))
    add('handler: longest stretch (after JSON.parse)', gaps[0]!)
    add('handler: 2nd longest stretch', gaps[1]!)
    add('handler: 3rd longest stretch', gaps[2]!)
  }
  console.log(`\n${name}: ${n} containers, body ${(body.length / 1024 / 1024).toFixed(2)} MiB (median of ${rounds})`)
  for (const [k, v] of Object.entries(rows)) {
    v.sort((a, b) => a - b)
    console.log(`  ${k.padEnd(44)} ${v[Math.floor(v.length / 2)]!.toFixed(1).padStart(7)} ms`)
  }
}

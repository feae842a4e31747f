// Cold pinning and the steady-state registry budget (issue 15), against the real test registry
// (Debian docker-registry, TLS, htpasswd) behind the counting proxy: every request is counted at
// the registry side, as a registry's quota would count it.
//
//  1. Cold rows: a 10,000-tag repository whose `latest` moved to build 7777, with the revision as a
//     manifest annotation and without any revision; a fresh pullpin, one pod. Time to the first
//     answer, whether it pinned, requests; without revision, pods are sent until one is pinned.
//  2. Steady state: R pullpin replicas (separate apps, separate caches) × I images, each replica
//     admitting a pod that names all I images every POD_EVERY_MS; registry requests counted over
//     the window after every image is pinned.
//
//   npx tsx bench/cold-pin.ts                 # window 120 s, 3 replicas, 50 images
//   npx tsx bench/cold-pin.ts 300 3 50        # the 5 minutes
import { performance } from 'node:perf_hooks'
import { admissionReview, applyResponsePatch, podFromWorkload } from '../test/support/pods.js'
import { startPullpin, type RunningPullpin } from '../test/support/pullpin.js'
import { gitSha, startPinningEnv } from '../test/support/pinning-env.js'
import { fastStorage, pushManyTags, putManifest } from '../test/support/many-tags.js'
import type { Pod } from '../src/mutate/pod.js'

const WINDOW_S = Number(process.argv[2] ?? 120)
const REPLICAS = Number(process.argv[3] ?? 3)
const IMAGES = Number(process.argv[4] ?? 50)
const POD_EVERY_MS = 5000
const REVISION = 'org.opencontainers.image.revision'

const storage = await fastStorage()
const env = await startPinningEnv({ configOverrides: storage.configOverrides })
const total = (): number => [...env.proxy.counts().values()].reduce((a, b) => a + b, 0)

function podWith (images: string[]): Pod {
  const pod = podFromWorkload('deployment-web', { namespace: 'team-a' })
  pod.spec!.containers = images.map((image, i) => ({ ...pod.spec!.containers![0]!, name: `c${i}`, image }))
  return pod
}
async function review (p: RunningPullpin, images: string[]): Promise<string[]> {
  const pod = podWith(images)
  const res = await p.post('/mutate', admissionReview(pod))
  return (applyResponsePatch(pod, res.json.response) as Pod).spec!.containers!.map(c => c.image!)
}

const results: Record<string, unknown> = {}
try {
  // ---- cold rows ----
  // COLD=0 runs the steady state alone.
  for (const annotated of process.env.COLD === '0' ? [] : [true, false]) {
    const repo = annotated ? 'big/annotated' : 'big/plain'
    let started = performance.now()
    const builds = await pushManyTags(env.registry, repo, { seed: repo }, { seed: repo, count: 10_000, revisionAnnotation: annotated })
    const target = builds[7777]!
    await putManifest(env.registry, repo, target.manifest, ['latest'])
    const setupMs = Math.round(performance.now() - started)
    const p = await startPullpin(env.configYaml())
    env.proxy.resetCounts()
    const image = `${env.host}/${repo}:latest`
    started = performance.now()
    const first = (await review(p, [image]))[0]
    const firstMs = Math.round(performance.now() - started)
    const firstRequests = total()
    let pods = 1
    let pinnedMs: number | undefined = first === `${env.host}/${repo}:${target.tag}` ? firstMs : undefined
    while (pinnedMs === undefined && performance.now() - started < 180_000) {
      pods++
      if ((await review(p, [image]))[0] === `${env.host}/${repo}:${target.tag}`) pinnedMs = Math.round(performance.now() - started)
    }
    const row = { setupMs, firstPinned: pinnedMs === firstMs, firstMs, firstRequests, pinnedMs, pods, requestsToPin: total() }
    results[annotated ? 'cold10kAnnotated' : 'cold10kNoRevision'] = row
    console.log(repo, JSON.stringify(row))
    await p.close()
  }

  // ---- steady state ----
  const images: string[] = []
  for (let i = 0; i < IMAGES; i++) {
    const sha = gitSha(`steady-${i}`)
    await env.registry.push({ seed: `steady-${i}`, labels: { [REVISION]: sha } }, `steady/app-${i}`, ['latest', sha])
    images.push(`${env.host}/steady/app-${i}:latest`)
  }
  const replicas = await Promise.all(Array.from({ length: REPLICAS }, () => startPullpin(env.configYaml())))
  env.proxy.resetCounts()
  // 50 cold images in one pod may outlast the lookup budget on a loaded machine: the lookups go on
  // and fill the cache; the next pods are pinned from it.
  for (const p of replicas) {
    for (let tries = 0; (await review(p, images)).some(x => x.endsWith(':latest')); tries++) {
      if (tries > 20) throw new Error('steady state: not every image pinned at start')
    }
  }
  const coldRequests = total()
  env.proxy.resetCounts()
  const t0 = performance.now()
  const state = { stop: false }
  const loops = replicas.map(async (p, i) => {
    await new Promise(resolve => setTimeout(resolve, (POD_EVERY_MS / REPLICAS) * i))
    let n = 0
    while (!state.stop) {
      await review(p, images)
      n++
      await new Promise(resolve => setTimeout(resolve, POD_EVERY_MS))
    }
    return n
  })
  await new Promise(resolve => setTimeout(resolve, WINDOW_S * 1000))
  const counted = total()
  const byOp: Record<string, number> = {}
  for (const [key, n] of env.proxy.counts()) {
    const kind = `${key.split(' ')[0]} ${key.includes('/manifests/') ? 'manifest' : key.includes('/tags/') ? 'tags' : key.includes('/blobs/') ? 'blob' : 'other'}`
    byOp[kind] = (byOp[kind] ?? 0) + n
  }
  state.stop = true
  const podsReviewed = (await Promise.all(loops)).reduce((a, b) => a + b, 0)
  const seconds = (performance.now() - t0) / 1000
  const row = { replicas: REPLICAS, images: IMAGES, windowS: Math.round(seconds), coldRequests, requests: counted, perMinute: Math.round(counted / seconds * 60 * 10) / 10, byOp, podsReviewed }
  results.steady = row
  console.log('steady', JSON.stringify(row))
  for (const p of replicas) await p.close()
} finally {
  await env.stop()
  await storage.cleanup()
}
console.log(JSON.stringify(results))

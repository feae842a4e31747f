// Cold pinning (issue 15): a real pullpin over TLS, the real registry behind the counting proxy,
// every registry request counted at the proxy.
import t, { type Test } from 'tap'
import { admissionReview, applyResponsePatch, podFromWorkload } from './support/pods.js'
import { startPullpin, type RunningPullpin } from './support/pullpin.js'
import { gitSha, startPinningEnv, type PinningEnv } from './support/pinning-env.js'
import type { Pod } from '../src/mutate/pod.js'

let env: PinningEnv
t.before(async () => { env = await startPinningEnv() })
t.teardown(() => env.stop())
t.afterEach(() => { env.proxy.fault = undefined })

/** pullpin for the test registry; `registries` replaces the pinning.registries entry (the host). */
async function pullpin (t: Test, extra = '', registries?: string[]): Promise<RunningPullpin> {
  let yaml = env.configYaml(extra)
  if (registries !== undefined) yaml = yaml.replace(`\n  registries: ["${env.host}"]`, `\n  registries: ${JSON.stringify(registries)}`)
  const p = await startPullpin(yaml)
  t.teardown(() => p.close())
  return p
}

function podWith (images: string[]): Pod {
  const pod = podFromWorkload('deployment-web', { namespace: 'team-a' })
  pod.spec!.containers = images.map((image, i) => ({ ...pod.spec!.containers![0]!, name: `c${i}`, image }))
  return pod
}

async function review (p: RunningPullpin, pod: Pod) {
  const res = await p.post('/mutate', admissionReview(pod))
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${res.text}`)
  return { response: res.json.response, result: applyResponsePatch(pod, res.json.response) as Pod }
}

t.test('an allowlist entry with a path pins the images under it, and only those', async t => {
  const sha = gitSha('path-entry')
  await env.registry.push({ seed: 'path-entry' }, 'team/app', ['latest', sha])
  await env.registry.push({ seed: 'path-entry-other' }, 'other/app', ['latest', gitSha('path-entry-other')])
  const p = await pullpin(t, '', [`${env.host}/team`])
  const { response, result } = await review(p, podWith([`${env.host}/team/app:latest`, `${env.host}/other/app:latest`]))
  t.same(result.spec!.containers!.map(c => c.image), [`${env.host}/team/app:${sha}`, `${env.host}/other/app:latest`])
  t.match(response.warnings, [/other\/app:latest not pinned: .* is not in pinning.registries/])
  t.equal(env.proxy.count('HEAD /v2/other/app/manifests/latest'), 0, 'nothing asked about the image outside the entry')
})

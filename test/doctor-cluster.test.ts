// `pullpin doctor --namespace --pod` as a process, against the real registry and the in-test API
// server: a missing Secret, a Secret of the wrong type, a namespace not opted in, and a pod in
// ImagePullBackOff whose events are mapped to the failing registry check.
import t from 'tap'
import { startRegistry, type RegistryFixture } from './support/registry.js'
import { checkLine, doctorConfigFor, inProcess, spawnCli, TempFiles, type Ran } from './support/cli.js'
import { startFakeApiServer, type FakeApiServer } from './support/fake-apiserver.js'
import { gitSha } from './support/pinning-env.js'

let files: TempFiles
let basic: RegistryFixture
t.before(async () => {
  files = await TempFiles.create('pullpin-doctor-cluster-')
  basic = await startRegistry()
  await basic.push({ kind: 'index', seed: 'doctor-cluster' }, 'acme/web', ['latest', gitSha('doctor-cluster')])
})
t.teardown(async () => {
  await basic.stop()
  await files.remove()
})
const doctor = (args: string[]): Promise<Ran> => inProcess(args)
const pullpin = (args: string[]): Promise<Ran> => spawnCli(args)
const file = (content: string): Promise<string> => files.file(content)
const configFor = (r: RegistryFixture, opts: Parameters<typeof doctorConfigFor>[2] = {}): Promise<string[]> => doctorConfigFor(files, r, opts)
const line = checkLine

t.test('cluster: a missing Secret, a Secret of the wrong type, an ImagePullBackOff event mapped to its check', async t => {
  const api: FakeApiServer = await startFakeApiServer({ namespaces: ['default'] })
  t.teardown(() => api.stop())
  const kubeconfig = await file(api.kubeconfigYaml())
  api.seed({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a', labels: { 'pullpin.io/inject': 'enabled' } } })
  api.seed({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: 'team-a' } })
  api.seed({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-b' } })
  api.seed({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: 'team-b' } })
  const image = `${basic.host}/acme/web:latest`
  const args = [...await configFor(basic), '--kubeconfig', kubeconfig]

  const missing = await doctor(['doctor', image, ...args, '--namespace', 'team-a'])
  t.equal(missing.code, 1, missing.stdout + missing.stderr)
  t.match(line(missing.stdout, 'namespace team-a'), /^✓ opted in \(pullpin\.io\/inject=enabled\), mode enforce/)
  t.match(line(missing.stdout, 'pull secret local-registry'), /^✗ no Secret local-registry in team-a/)
  t.match(missing.stdout, /fix: kubectl create secret docker-registry local-registry -n team-a --docker-server=127\.0\.0\.1:\d+/)

  const off = await doctor(['doctor', image, ...args, '--namespace', 'team-b'])
  t.match(line(off.stdout, 'namespace team-b'), /^✗ not handled by pullpin: not opted in/)
  t.match(off.stdout, /fix: kubectl label namespace team-b pullpin\.io\/inject=enabled/)

  api.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'local-registry', namespace: 'team-a' }, type: 'Opaque', data: { '.dockerconfigjson': Buffer.from(basic.dockerConfigJson).toString('base64') } })
  const opaque = await doctor(['doctor', image, ...args, '--namespace', 'team-a'])
  t.match(line(opaque.stdout, 'pull secret local-registry'), /^✗ type Opaque, not kubernetes\.io\/dockerconfigjson/)

  // team-c: a dockerconfigjson Secret with an entry for the registry (that check passes), and a pod in ImagePullBackOff.
  const api2 = api
  const kubeconfig2 = kubeconfig
  api2.seed({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-c', labels: { 'pullpin.io/inject': 'audit' } } })
  api2.seed({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'web', namespace: 'team-c' }, imagePullSecrets: [{ name: 'local-registry' }] })
  api2.seed({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'local-registry', namespace: 'team-c' }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': Buffer.from(basic.dockerConfigJson).toString('base64') } })
  api2.seed({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-1', namespace: 'team-c' }, spec: { serviceAccountName: 'web', imagePullSecrets: [{ name: 'local-registry' }], containers: [{ name: 'web', image: `${basic.host}/acme/web:gone` }] } })
  // What the kubelet records for a tag that does not exist.
  const pullEvent = (name: string, reason: string, message: string): object => ({ apiVersion: 'v1', kind: 'Event', metadata: { name, namespace: 'team-c' }, involvedObject: { kind: 'Pod', name: 'web-1', namespace: 'team-c' }, type: 'Warning', reason, message })
  api2.seed(pullEvent('e1', 'Failed', `Failed to pull image "${basic.host}/acme/web:gone": rpc error: code = NotFound desc = failed to pull and unpack image "${basic.host}/acme/web:gone": failed to resolve reference "${basic.host}/acme/web:gone": ${basic.host}/acme/web:gone: not found`))
  api2.seed(pullEvent('e2', 'Failed', 'Error: ErrImagePull'))
  api2.seed(pullEvent('e3', 'BackOff', `Back-off pulling image "${basic.host}/acme/web:gone"`))
  api2.seed(pullEvent('e4', 'Failed', 'Error: ImagePullBackOff'))
  const pod = await pullpin(['doctor', `${basic.host}/acme/web:gone`, ...await configFor(basic), '--kubeconfig', kubeconfig2, '--namespace', 'team-c', '--pod', 'web-1'])
  t.equal(pod.code, 1)
  t.match(line(pod.stdout, 'namespace team-c'), /^✓ .*mode audit/)
  t.match(line(pod.stdout, 'pod web-1'), /^✓ service account web; imagePullSecrets: local-registry/)
  t.match(line(pod.stdout, 'pull secret local-registry'), /^✓ kubernetes\.io\/dockerconfigjson, has an entry for 127\.0\.0\.1:\d+/)
  t.match(line(pod.stdout, 'service account web:'), /^✓ imagePullSecrets: local-registry/)
  t.match(line(pod.stdout, 'tag or digest exists'), /^✗ /)
  t.match(line(pod.stdout, 'pod events'), /^✗ ImagePullBackOff: Failed to pull image .*not found/)
  t.match(pod.stdout, /fix: the kubelet failed at the "exists" check: see that line above/)
  t.notMatch(pod.stdout, basic.password!)
  t.same(api2.requests.filter(r => r.path.endsWith('/events')).map(r => decodeURIComponent(r.query)), ['fieldSelector=involvedObject.name=web-1'])
})

t.test('usage: one IMAGE; --pod needs --namespace; --namespace needs a kubeconfig', async t => {
  const run = async (args: string[]): Promise<{ code: number | null, err: string }> => {
    const r = await inProcess(args)
    return { code: r.code, err: r.stderr }
  }
  t.equal((await run(['doctor'])).code, 2)
  t.match(await run(['doctor', 'nginx', '--pod', 'x']), { code: 2, err: /--pod goes with --namespace/ })
  t.match(await run(['doctor', 'nginx', '--namespace', 'x']), { code: 2, err: /--namespace needs a cluster/ })
  t.match(await run(['doctor', 'nginx', '--platform', 'Linux']), { code: 2, err: /--platform must be os\/architecture/ })
})

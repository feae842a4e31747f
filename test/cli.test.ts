import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, writeFile, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Agent, request } from 'undici'
import { clusterChoice, main } from '../src/cli.js'
import { admissionReview, richPod } from './support/pods.js'

function io () {
  const out: string[] = []
  const err: string[] = []
  return { out, err, io: { out: (s: string) => out.push(s), err: (s: string) => err.push(s), env: {} } }
}

t.test('version and help', async t => {
  const a = io()
  t.equal(await main(['version'], a.io), 0)
  t.match(a.out.join(''), /^pullpin \d+\.\d+\.\d+\n$/)
  const b = io()
  t.equal(await main(['--help'], b.io), 0)
  t.match(b.out.join(''), /Commands:[\s\S]*serve/)
  const c = io()
  t.equal(await main(['serve', '--help'], c.io), 0)
  t.match(c.out.join(''), /--tls-cert FILE/)
  const d = io()
  t.equal(await main([], d.io), 2, 'no command is a usage error')
})

t.test('usage errors exit 2 with a message a person understands', async t => {
  const a = io()
  t.equal(await main(['frobnicate'], a.io), 2)
  t.match(a.err.join(''), /unknown command "frobnicate"/)
  const b = io()
  t.equal(await main(['serve', '--bogus'], b.io), 2)
  t.match(b.err.join(''), /Unknown option '--bogus'[\s\S]*pullpin serve --help/)
  const c = io()
  t.equal(await main(['serve', '--port', 'abc'], c.io), 2)
  t.match(c.err.join(''), /--port must be a whole number from 0 to 65535, got "abc"/)
  const d = io()
  t.equal(await main(['serve', '--tls-cert', 'x.pem'], d.io), 2)
  t.match(d.err.join(''), /--tls-cert and --tls-key go together/)
})

t.test('a bad config stops the start with path and reason (exit 2)', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-cli-'))
  const file = join(dir, 'bad.yaml')
  await writeFile(file, 'mode: enforce\npinnning: {}\n')
  const a = io()
  t.equal(await main(['serve', '--config', file], a.io), 2)
  t.match(a.err.join(''), /invalid config .*bad\.yaml: \/: unknown key "pinnning"/)
  const b = io()
  t.equal(await main(['serve', '--config', join(dir, 'missing.yaml')], b.io), 2)
  t.match(b.err.join(''), /cannot read config file .*missing\.yaml: ENOENT/)
})

interface Served { child: ChildProcess, url: string, exited: Promise<number | null>, stdout: () => string }

/**
 * `pullpin serve ARGS` as a real process, resolved with its URL once it serves. Rejects as soon as
 * it says it is connecting to a cluster (it would then wait for a TLS Secret, not serve) or exits.
 */
async function serveProcess (args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Served> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env })
  let stdout = ''
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString()
      const m = /"url":"(https:\/\/[^"]+)"/.exec(stdout)
      if (m) resolve(m[1]!)
      if (/connecting to the cluster|TLS Secret not available/.test(stdout)) {
        child.kill('SIGKILL')
        reject(new Error(`entered cluster mode instead of serving: ${stdout}`))
      }
    })
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${stdout}`)))
  })
  const exited = new Promise<number | null>(resolve => child.once('exit', resolve))
  return { child, url, exited, stdout: () => stdout }
}

t.test('`pullpin serve` as a process: self-signed certs, a review, SIGTERM exits 0, certs reused', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-serve-'))
  const certs = join(dir, 'certs')
  const run = () => serveProcess(['--port', '0', '--host', '127.0.0.1', '--certs-dir', certs, '--service-name', 'pp', '--namespace', 'infra', '--log-level', 'info'])
  const first = await run()
  const ca = readFileSync(join(certs, 'ca.crt'), 'utf8')
  const certPem = readFileSync(join(certs, 'tls.crt'), 'utf8')
  const leaf = new X509Certificate(certPem)
  t.match(leaf.subjectAltName, /DNS:localhost/)
  t.match(leaf.subjectAltName, /DNS:pp\.infra\.svc/)
  t.match(leaf.subjectAltName, /DNS:pp\.infra\.svc\.cluster\.local/)
  t.match(leaf.subjectAltName, /IP Address:127\.0\.0\.1/)
  const agent = new Agent({ connect: { ca, servername: 'localhost' } })
  const res = await request(first.url + '/mutate', { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body: JSON.stringify(admissionReview(richPod('default'))) })
  const body = await res.body.json() as any
  t.equal(res.statusCode, 200)
  t.equal(body.response.allowed, true)
  t.ok(body.response.patch, 'the example config injects into namespace default')
  await agent.close()
  first.child.kill('SIGTERM')
  t.equal(await first.exited, 0, 'SIGTERM exits 0')
  t.match(first.stdout(), /"msg":"stopped"/)

  const second = await run()
  t.equal(readFileSync(join(certs, 'tls.crt'), 'utf8'), certPem, 'the certificate is reused on the next start')
  t.same((await readdir(certs)).sort(), ['ca.crt', 'ca.key', 'tls.crt', 'tls.key'])
  second.child.kill('SIGTERM')
  t.equal(await second.exited, 0)
})

t.test('`npm start` serves standalone even with KUBECONFIG set: a cluster only when asked for', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-start-'))
  // A platform engineer's shell: KUBECONFIG names a cluster (here one that does not answer).
  const kubeconfig = join(dir, 'kubeconfig')
  await writeFile(kubeconfig, [
    'apiVersion: v1', 'kind: Config', 'current-context: prod',
    'clusters: [{ name: prod, cluster: { server: "https://127.0.0.1:1" } }]',
    'users: [{ name: admin, user: { token: not-a-real-token } }]',
    'contexts: [{ name: prod, context: { cluster: prod, user: admin } }]', '',
  ].join('\n'))
  // The arguments `npm start` gives dist/cli.js, from package.json itself.
  const start = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: { start: string } }).scripts.start
  const startArgs = /\bnode dist\/cli\.js serve (.*)$/.exec(start)?.[1]?.split(/\s+/)
  t.ok(startArgs, `npm start runs dist/cli.js serve: ${start}`)
  const served = await serveProcess([...startArgs!, '--port', '0', '--certs-dir', join(dir, 'certs')], { ...process.env, KUBECONFIG: kubeconfig })
  const ca = readFileSync(join(dir, 'certs', 'ca.crt'), 'utf8')
  const agent = new Agent({ connect: { ca, servername: 'localhost' } })
  const res = await request(served.url + '/mutate', { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body: JSON.stringify(admissionReview(richPod('default'))) })
  t.equal(res.statusCode, 200)
  t.equal(((await res.body.json()) as any).response.allowed, true)
  await agent.close()
  served.child.kill('SIGTERM')
  t.equal(await served.exited, 0)
  t.notMatch(served.stdout(), /cluster/, 'no word of a cluster in the logs')
})

t.test('cluster mode is chosen only by --cluster, PULLPIN_CLUSTER=true or --kubeconfig', async t => {
  const pod = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }
  const token = () => true
  const inCluster = { inCluster: { host: '10.96.0.1', port: '443' } }
  t.equal(clusterChoice({}, pod, token), undefined, 'in a pod, without --cluster: standalone')
  t.equal(clusterChoice({}, { KUBECONFIG: '/home/me/.kube/config' }, token), undefined, 'KUBECONFIG alone: standalone')
  t.equal(clusterChoice({}, { PULLPIN_CLUSTER: 'false', ...pod }, token), undefined)
  t.same(clusterChoice({ cluster: true }, pod, token), inCluster, '--cluster in a pod: its service account')
  t.same(clusterChoice({}, { PULLPIN_CLUSTER: 'true', ...pod }, token), inCluster, 'PULLPIN_CLUSTER=true')
  t.same(clusterChoice({ cluster: true }, { KUBECONFIG: `/a/config${delimiter}/b/config`, ...pod }, token), { kubeconfigFiles: ['/a/config', '/b/config'] }, '--cluster with KUBECONFIG: its files, merged')
  t.same(clusterChoice({ kubeconfig: '/c/config' }, { KUBECONFIG: '/a/config' }, token), { kubeconfigFiles: ['/c/config'] }, '--kubeconfig implies --cluster and wins over KUBECONFIG')
  t.equal(clusterChoice({ standalone: true }, { PULLPIN_CLUSTER: 'true', ...pod }, token), undefined, '--standalone overrides PULLPIN_CLUSTER')
  t.throws(() => clusterChoice({ standalone: true, cluster: true }, {}, token), /--standalone contradicts --cluster/)
  t.throws(() => clusterChoice({ standalone: true, kubeconfig: '/c' }, {}, token), /--standalone contradicts/)
  t.throws(() => clusterChoice({ cluster: true }, pod, () => false), /--cluster needs a cluster/, 'a pod without a token is not a cluster')
  t.throws(() => clusterChoice({}, { PULLPIN_CLUSTER: 'yes' }, token), /PULLPIN_CLUSTER must be true or false, got "yes"/)

  // Through the CLI: a usage error, exit 2, before anything starts.
  const a = io()
  t.equal(await main(['serve', '--cluster'], a.io), 2)
  t.match(a.err.join(''), /--cluster needs a cluster/)
  const b = io()
  t.equal(await main(['serve', '--cluster', '--standalone'], b.io), 2)
  t.match(b.err.join(''), /--standalone contradicts/)
})

import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtemp, writeFile, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Agent, request } from 'undici'
import { main } from '../src/cli.js'
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

t.test('`pullpin serve` as a process: self-signed certs, a review, SIGTERM exits 0, certs reused', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-serve-'))
  const certs = join(dir, 'certs')
  const run = async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve', '--port', '0', '--host', '127.0.0.1',
      '--certs-dir', certs, '--service-name', 'pp', '--namespace', 'infra', '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString()
        const m = /"url":"(https:\/\/[^"]+)"/.exec(stdout)
        if (m) resolve(m[1]!)
      })
      child.once('exit', (code) => reject(new Error(`exited ${code}: ${stdout}`)))
    })
    const exited = new Promise<number | null>(resolve => child.once('exit', resolve))
    return { child, url, exited, stdout: () => stdout }
  }
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

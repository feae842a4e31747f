// Errors about credential files name the file and the position, never any of its text (issue 11):
// a kubeconfig with `token: !SUPERSECRET` printed "unknown tag !<!SUPERSECRET>". Each path is
// driven through the CLI (its stderr) and the logs, with a secret that must appear in neither.
import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { main } from '../src/cli.js'
import { connectCluster } from '../src/cluster/connection.js'
import { FileCertificateSource } from '../src/certs/file-source.js'
import { CredentialStore, readDockerConfigFiles } from '../src/registry/credential-store.js'
import { SelfSignedDirectorySource } from '../src/certs/self-signed.js'

const SECRET = 'SUPERSECRET-c2VjcmV0'

async function serve (args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  let stderr = ''
  let stdout = ''
  const code = await main(['serve', '--port', '0', '--host', '127.0.0.1', ...args], { out: (s) => { stdout += s }, err: (s) => { stderr += s }, env: {} })
  return { code, stderr, stdout }
}

t.test('credential files', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-cred-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = async (name: string, text: string): Promise<string> => { const f = join(dir, name); await writeFile(f, text); return f }
  const config = await file('config.yaml', 'namespaces:\n  labels: {}\n')

  const kubeconfigs: Record<string, [string, RegExp]> = {
    'unknown tag': [`apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    token: !${SECRET}\n`, /line \d+, column \d+/],
    'unterminated quote': [`users:\n- name: u\n  user:\n    token: "${SECRET}\n`, /line \d+, column \d+/],
    'bad indentation': [`users:\n- name: u\n  user:\n    token: ${SECRET}: x\n  bad\n`, /bad indentation of a mapping entry \(line 4, column \d+\)/],
    'duplicate key': [`users:\n- name: u\n  user:\n    token: ${SECRET}\n    token: ${SECRET}\n`, /line 5, column \d+/],
    'flow mapping': [`users: [{ name: u, user: { token: ${SECRET} }\n`, /line \d+, column \d+/],
  }
  for (const [name, [text, position]] of Object.entries(kubeconfigs)) {
    t.test(`kubeconfig: ${name}`, async t => {
      const kc = await file(`kubeconfig-${name.replace(/ /g, '-')}`, text)
      const { code, stderr, stdout } = await serve(['--config', config, '--kubeconfig', kc])
      t.equal(code, 2, 'a configuration error')
      t.match(stderr, kc, 'the file is named')
      t.match(stderr, position, 'with the position')
      t.notMatch(stderr + stdout, 'SUPERSECRET', 'and none of its text')
      t.throws(() => connectCluster({ kubeconfigFiles: [kc] }), { code: 'PULLPIN_CONFIG_KUBECONFIG', message: position })
      try { connectCluster({ kubeconfigFiles: [kc] }) } catch (err) { t.notMatch(String((err as Error).stack), 'SUPERSECRET') }
    })
  }

  t.test('docker config file: not JSON', async t => {
    const dc = await file('docker.json', `{\n  "auths": {\n    "r.example.com": { "auth": ${SECRET} }\n  }\n}\n`)
    const cfg = await file('config-dc.yaml', `namespaces:\n  labels: {}\npinning:\n  enabled: true\nregistry:\n  hosts: [r.example.com]\n  credentials:\n    dockerConfigFiles: [${dc}]\n`)
    const { code, stderr, stdout } = await serve(['--config', cfg, '--standalone', '--certs-dir', join(dir, 'certs')])
    t.equal(code, 2)
    t.match(stderr, dc)
    t.match(stderr, /not valid JSON \(line 3, column 32\)/)
    t.notMatch(stderr + stdout, 'SUPERSECRET')
    const store = new CredentialStore()
    await t.rejects(readDockerConfigFiles([dc]).then(c => store.replace(c)), { message: /line 3, column 32/ })
  })

  t.test('docker config file: a password that is not base64', async t => {
    const dc = await file('docker2.json', JSON.stringify({ auths: { 'r.example.com': { auth: `${SECRET}!!` } } }))
    const store = new CredentialStore()
    await t.rejects(readDockerConfigFiles([dc]).then(c => store.replace(c)), { message: /"auth" must be base64/ })
    try { store.replace(await readDockerConfigFiles([dc])) } catch (err) { t.notMatch(String((err as Error).stack), 'SUPERSECRET') }
  })

  t.test('TLS key, certificate and CA files', async t => {
    const good = await new SelfSignedDirectorySource(join(dir, 'good'), { dnsNames: ['localhost'], ipAddresses: [] }).load()
    const cert = await file('tls.crt', good.cert)
    const key = await file('tls.key', good.key)
    const badKey = await file('bad.key', `-----BEGIN PRIVATE KEY-----\n${SECRET}\n-----END PRIVATE KEY-----\n`)
    const badCert = await file('bad.crt', `-----BEGIN CERTIFICATE-----\n${SECRET}\n-----END CERTIFICATE-----\n`)
    const plain = await file('plain.key', `${SECRET}\n`)
    for (const [c, k, named] of [[cert, badKey, badKey], [cert, plain, plain], [badCert, key, badCert]] as const) {
      const { code, stderr, stdout } = await serve(['--config', config, '--standalone', '--tls-cert', c, '--tls-key', k])
      t.equal(code, 1)
      t.match(stderr, named, 'the bad file is named')
      t.match(stderr, /PULLPIN_TLS_FILES|cannot load TLS/)
      t.notMatch(stderr + stdout, 'SUPERSECRET')
    }
    await t.rejects(new FileCertificateSource(cert, key, badCert).load(), { code: 'PULLPIN_TLS_FILES', message: `${badCert} is not a PEM certificate` })
  })
})

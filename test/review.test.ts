// `pullpin review` as a process, against the real registry and the real helm: a chart whose values
// point at a moved `:latest`, `helm template | pullpin review -`, --fix on the values file, SARIF
// checked against the SARIF 2.1.0 schema, and the input rules (directories, List, JSON, CronJob,
// unknown kinds, invalid YAML with its line).
import t from 'tap'
import { execFile, execFileSync } from 'node:child_process'
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Ajv } from 'ajv'
import { inProcess, spawnCli, type Ran } from './support/cli.js'
import addFormats from 'ajv-formats'
import { gitSha, startPinningEnv, type PinningEnv } from './support/pinning-env.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const run = promisify(execFile)
const bin = execFileSync('bash', [join(root, 'scripts', 'k8s-tools.sh'), 'ensure'], { encoding: 'utf8' }).trim()

let env: PinningEnv
let dir: string
let configFile: string
t.before(async () => {
  env = await startPinningEnv()
  dir = await mkdtemp(join(tmpdir(), 'pullpin-review-'))
  configFile = join(dir, 'pullpin.yaml')
  await writeFile(configFile, env.configYaml())
})
t.teardown(async () => {
  await env.stop()
  await rm(dir, { recursive: true, force: true })
})

const pullpin = (args: string[], stdin = ''): Promise<Ran> => spawnCli(args, stdin, process.env)

const helmHome = (): Record<string, string> => ({
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: dir,
  HELM_CACHE_HOME: join(dir, 'helm-cache'),
  HELM_CONFIG_HOME: join(dir, 'helm-config'),
  HELM_DATA_HOME: join(dir, 'helm-data'),
  KUBECONFIG: join(dir, 'no-kubeconfig'),
})

async function helmTemplate (chart: string, extra: string[] = []): Promise<string> {
  const { stdout } = await run(join(bin, 'helm'), ['template', 'rel', chart, '--namespace', 'team-a', ...extra], { env: helmHome(), maxBuffer: 16 << 20 })
  return stdout
}

/** A copy of test/fixtures/review-chart whose values name the test registry. */
async function chartCopy (name: string): Promise<string> {
  const chart = join(dir, name)
  await cp(join(root, 'test', 'fixtures', 'review-chart'), chart, { recursive: true })
  const values = join(chart, 'values.yaml')
  await writeFile(values, (await readFile(values, 'utf8')).replace('REGISTRY/', `${env.host}/`))
  return chart
}

const common = (): string[] => ['--config', configFile]

t.test('helm template | pullpin review -: a moved :latest is reported as the pin, exit 0; --fix on the values file, helm renders the SHA tag', async t => {
  const first = gitSha('review-web-1')
  const second = gitSha('review-web-2')
  await env.registry.push({ kind: 'image', seed: 'review-web-1' }, 'acme/web', ['latest', first])
  // CI built again: latest moved to the second build.
  await env.registry.push({ kind: 'image', seed: 'review-web-2' }, 'acme/web', ['latest', second])
  const chart = await chartCopy('chart-moved')
  const rendered = await helmTemplate(chart)

  const table = await pullpin(['review', '-', ...common()], rendered)
  t.equal(table.code, 0, table.stderr)
  t.match(table.stdout, new RegExp(`Deployment/rel-web .*would pin ${env.host}/acme/web:latest to ${env.host}/acme/web:${second}`))
  t.match(table.stdout, /CronJob\/rel-nightly .* report +pin: would pin/, 'the CronJob\'s jobTemplate is reviewed')
  t.match(table.stdout, /would add imagePullSecret local-registry/)
  t.match(table.stdout, /skipped 1 other object\(s\) \(ConfigMap 1\)/)
  t.notMatch(table.stdout, first, 'the first build is not what latest names now')

  const json = await inProcess(['review', '-', ...common(), '--output', 'json'], rendered)
  t.equal(json.code, 0, json.stderr)
  const report = JSON.parse(json.stdout)
  const web = report.objects.find((o: any) => o.kind === 'Deployment')
  t.equal(web.namespace, 'default', 'helm template output carries no namespace: default, as kubectl apply would')
  t.same(web.findings.find((f: any) => f.check === 'pin'), {
    check: 'pin',
    severity: 'note',
    image: `${env.host}/acme/web:latest`,
    container: 'web',
    to: `${env.host}/acme/web:${second}`,
    message: `would pin ${env.host}/acme/web:latest to ${env.host}/acme/web:${second}`,
    line: web.images[0].line,
  })
  t.same(report.skipped, { ConfigMap: 1 })
  const inNs = JSON.parse((await inProcess(['review', '-', ...common(), '--output', 'json', '--namespace', 'team-b'], rendered)).stdout)
  t.equal(inNs.objects[0].namespace, 'team-b')
  t.equal(inNs.objects[0].mode, 'audit', 'the namespace mode comes from the config\'s labels')

  // --fix on the values file: only the tag's characters change.
  const valuesFile = join(chart, 'values.yaml')
  const before = await readFile(valuesFile, 'utf8')
  const fixed = await pullpin(['review', '--values', valuesFile, '--image-path', 'image', '--fix', ...common()])
  t.equal(fixed.code, 0, fixed.stderr)
  t.match(fixed.stderr, /--fix wrote 1 pin\(s\) into 1 file\(s\)/)
  const after = await readFile(valuesFile, 'utf8')
  t.equal(after, before.replace('  tag: latest\n', `  tag: ${second}\n`), 'only the tag changed: comments, order and spacing intact')
  t.match(after, /# moved by every build of main/)
  const again = await helmTemplate(chart)
  t.match(again, `image: "${env.host}/acme/web:${second}"`, 'helm template renders the SHA tag')
  t.notMatch(again, /:latest/)
  const clean = await inProcess(['review', '-', ...common(), '--output', 'json'], again)
  t.equal(clean.code, 0)
  t.same(JSON.parse(clean.stdout).objects[0].findings.filter((f: any) => f.check !== 'secret'), [], 'nothing left to pin')
})

t.test('a never-pushed SHA tag exits 1 (missing-image); --fail-on none exits 0', async t => {
  const chart = await chartCopy('chart-missing')
  const never = gitSha('review-never-pushed')
  const rendered = await helmTemplate(chart, ['--set', `image.tag=${never}`])
  const r = await pullpin(['review', '-', ...common()], rendered)
  t.equal(r.code, 1, r.stderr)
  t.match(r.stdout, new RegExp(`error missing-image: web: tag ${never.slice(0, 7)}… not found in ${env.host}/acme/web — not pushed by CI\\?`))
  const none = await inProcess(['review', '-', ...common(), '--fail-on', 'none'], rendered)
  t.equal(none.code, 0)
  // A moved tag that does not exist: the same check.
  const gone = await inProcess(['review', '-', ...common(), '--output', 'json'], await helmTemplate(chart, ['--set', 'image.tag=no-such-branch']))
  t.equal(gone.code, 1)
  t.match(JSON.parse(gone.stdout).objects[0].findings.filter((f: any) => f.check !== 'secret'), [{ check: 'missing-image', severity: 'error', container: 'web' }])
})

t.test('SARIF output validates against the SARIF 2.1.0 schema and locates each finding', async t => {
  const chart = await chartCopy('chart-sarif')
  const never = gitSha('review-sarif-never')
  const file = join(dir, 'rendered.yaml')
  await writeFile(file, await helmTemplate(chart, ['--set', `image.tag=${never}`]))
  const r = await inProcess(['review', file, ...common(), '--output', 'sarif'])
  t.equal(r.code, 1)
  const sarif = JSON.parse(r.stdout)
  // test/fixtures/sarif/sarif-2.1.0-rtm.5.json: the SARIF 2.1.0 (rtm.5) JSON schema as shipped in
  // npm @microsoft/jest-sarif@1.0.0-beta.0, lib/schemas/sarif-2.1.0-rtm.5.json; published at
  // https://raw.githubusercontent.com/schemastore/schemastore/master/src/schemas/json/sarif-2.1.0-rtm.5.json
  // It is a draft-04 schema: its `id` is read as ajv 8's `$id`, and draft-04's `$schema` is dropped
  // (the keywords it uses mean the same in draft-07).
  const { $schema: _draft, id, ...schema } = JSON.parse(readFileSync(join(root, 'test', 'fixtures', 'sarif', 'sarif-2.1.0-rtm.5.json'), 'utf8'))
  // unicodeRegExp off: one `pattern` of rtm.5 (a language tag) is not valid with the u flag.
  const ajv = new Ajv({ strict: false, allErrors: true, unicodeRegExp: false })
  addFormats.default(ajv)
  const validate = ajv.compile({ $id: id, ...schema })
  t.ok(validate(sarif), JSON.stringify(validate.errors?.slice(0, 3)))
  t.notOk(validate({ version: '2.1.0', runs: [{ tool: { driver: {} } }] }), 'the schema does reject a log without a driver name')
  const missing = sarif.runs[0].results.find((x: any) => x.ruleId === 'missing-image')
  t.equal(missing.level, 'error')
  t.equal(missing.locations[0].physicalLocation.artifactLocation.uri, encodeURI(file))
  const line = (await readFile(file, 'utf8')).split('\n').findIndex(l => l.includes(`:${never}`)) + 1
  t.equal(missing.locations[0].physicalLocation.region.startLine, line, 'the line of the image in the file')
})

t.test('input: directories, List, JSON, CronJob, unknown kinds counted; --fix keeps the file\'s bytes but the image', async t => {
  const sha = gitSha('review-input-1')
  await env.registry.push({ kind: 'image', seed: 'review-input-1' }, 'acme/api', ['main', sha])
  const tree = join(dir, 'manifests')
  await mkdir(join(tree, 'nested'), { recursive: true })
  const podYaml = [
    '# a pod',
    'apiVersion: v1',
    'kind: Pod',
    'metadata: { name: single, namespace: team-a }',
    'spec:',
    '  containers:',
    '    - name: api   # the api',
    `      image: '${env.host}/acme/api:main'  # keep this comment`,
    '      args: [--port, "8080"]',
    '',
  ].join('\n')
  await writeFile(join(tree, 'pod.yaml'), podYaml)
  await writeFile(join(tree, 'nested', 'list.json'), JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [
      { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'db' }, spec: { template: { spec: { containers: [{ name: 'db', image: `${env.host}/acme/api:main` }] } } } },
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'db' }, spec: {} },
    ],
  }, null, 2))
  await writeFile(join(tree, 'nested', 'notes.txt'), 'not: [a manifest')
  const r = await inProcess(['review', tree, ...common(), '--output', 'json'])
  t.equal(r.code, 0, r.stderr)
  const report = JSON.parse(r.stdout)
  t.same(report.objects.map((o: any) => `${o.file.slice(tree.length + 1)}:${o.line} ${o.kind}/${o.name}`), ['nested/list.json:5 StatefulSet/db', 'pod.yaml:2 Pod/single'])
  t.same(report.skipped, { Service: 1 })
  for (const o of report.objects) t.match(o.findings.filter((f: any) => f.check === 'pin'), [{ to: `${env.host}/acme/api:${sha}` }])

  const fixed = await inProcess(['review', tree, ...common(), '--fix'])
  t.equal(fixed.code, 0, fixed.stderr)
  t.equal(await readFile(join(tree, 'pod.yaml'), 'utf8'), podYaml.replace(`'${env.host}/acme/api:main'`, `'${env.host}/acme/api:${sha}'`), 'single quotes kept, nothing else touched')
  const json = await readFile(join(tree, 'nested', 'list.json'), 'utf8')
  t.match(json, `"image": "${env.host}/acme/api:${sha}"`)
  t.ok(JSON.parse(json), 'still JSON')
})

t.test('an image the kubelet cannot parse is a reference-error (exit 1), found without asking a registry', async t => {
  const pod = join(dir, 'upper.yaml')
  await writeFile(pod, 'apiVersion: v1\nkind: Pod\nmetadata: { name: upper }\nspec:\n  containers:\n    - name: web\n      image: ghcr.io/Acme/web:1\n')
  const r = await inProcess(['review', pod, ...common(), '--output', 'json'])
  t.equal(r.code, 1, r.stderr)
  t.match(JSON.parse(r.stdout).objects[0].findings, [{ check: 'reference-error', severity: 'error', container: 'web', line: 7, message: /use ghcr\.io\/acme\/web:1: repository names are lowercase/ }])
  t.equal((await inProcess(['review', pod, ...common(), '--fail-on', 'missing-image'])).code, 0, '--fail-on decides')
})

t.test('usage and input errors exit 2: invalid YAML names the file and line', async t => {
  const bad = join(dir, 'bad.yaml')
  await writeFile(bad, 'apiVersion: v1\nkind: Pod\n---\nkind: Deployment\nspec: [\n')
  const r = await pullpin(['review', bad, ...common()])
  t.equal(r.code, 2)
  t.match(r.stderr, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:6: not valid YAML`))
  const missing = await inProcess(['review', join(dir, 'nope.yaml'), ...common()])
  t.equal(missing.code, 2)
  t.match(missing.stderr, /nope\.yaml: cannot read: ENOENT/)
  t.equal((await inProcess(['review'])).code, 2)
  const output = await inProcess(['review', '-', '--output', 'xml'])
  t.equal(output.code, 2)
  t.match(output.stderr, /--output must be table, json or sarif/)
  const failOn = await inProcess(['review', '-', '--fail-on', 'everything'])
  t.equal(failOn.code, 2)
  t.match(failOn.stderr, /unknown check "everything"/)
  const fixStdin = await inProcess(['review', '-', '--fix'])
  t.equal(fixStdin.code, 2)
})

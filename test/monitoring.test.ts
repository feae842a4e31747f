// The chart's monitoring (issue 18 part 4): the Grafana dashboard ConfigMap and the PrometheusRule,
// checked with the real tools: helm renders both opt-ins (scripts/k8s-tools.sh), Debian's promtool
// (scripts/prometheus-tools.sh) checks the rules, runs one unit test per alert that fires and one
// that does not (test/fixtures/monitoring/alerts.test.yaml) and parses every PromQL expression of
// the dashboard; every metric the dashboard names is declared on a real pullpin's /metrics; and a
// real Prometheus scrapes a real pullpin and evaluates every alert and dashboard expression.
import t from 'tap'
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { request } from 'undici'
import { parse as parseYaml, parseAllDocuments, stringify as toYaml } from 'yaml'
import { MUTATE_PATH } from '../src/server/server.js'
import { startPullpin } from './support/pullpin.js'
import { freePort } from './support/registry.js'
import { until } from './support/until.js'

type Obj = Record<string, any>

const root = fileURLToPath(new URL('..', import.meta.url))
const chart = join(root, 'charts', 'pullpin')
const RELEASE = 'pullpin'
const NS = 'pullpin-system'
const run = promisify(execFile)
const bin = execFileSync('bash', [join(root, 'scripts', 'k8s-tools.sh'), 'ensure'], { encoding: 'utf8' }).trim()
execFileSync('bash', [join(root, 'scripts', 'prometheus-tools.sh'), 'ensure'], { stdio: 'ignore' })
const PROMTOOL = '/usr/bin/promtool'
const PROMETHEUS = '/usr/bin/prometheus'

const work = await mkdtemp(join(tmpdir(), 'pullpin-monitoring-'))
t.teardown(() => rm(work, { recursive: true, force: true }))
const helmEnv = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: work,
  HELM_CACHE_HOME: join(work, 'helm-cache'),
  HELM_CONFIG_HOME: join(work, 'helm-config'),
  HELM_DATA_HOME: join(work, 'helm-data'),
  KUBECONFIG: join(work, 'no-kubeconfig'),
}

/** Runs a tool; never throws: the exit code and both streams are what the tests look at. */
async function tool (file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number, out: string }> {
  try {
    const { stdout, stderr } = await run(file, args, { env, maxBuffer: 16 << 20 })
    return { code: 0, out: stdout + stderr }
  } catch (err) {
    const e = err as { code?: number, stdout?: string, stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : 1, out: `${e.stdout ?? ''}${e.stderr ?? String(err)}` }
  }
}

let files = 0
async function render (values: Obj): Promise<Obj[]> {
  const file = join(work, `values-${files++}.yaml`)
  await writeFile(file, toYaml(values))
  const r = await tool(join(bin, 'helm'), ['template', RELEASE, chart, '--namespace', NS, '-f', file], helmEnv)
  if (r.code !== 0) throw new Error(`helm template failed: ${r.out}`)
  return parseAllDocuments(r.out).map(d => d.toJS() as Obj).filter(o => o !== null && typeof o === 'object')
}

const ON = { monitoring: { dashboard: { enabled: true }, prometheusRule: { enabled: true } } }
const [defaults, both, custom, single] = await Promise.all([
  render({}),
  render(ON),
  render({
    monitoring: {
      selector: 'job="webhooks",cluster="prod"',
      dashboard: { enabled: true, namespace: 'monitoring', labels: { grafana_dashboard: 'pullpin' }, annotations: { grafana_folder: 'Admission' } },
      prometheusRule: { enabled: true, namespace: 'monitoring', labels: { release: 'kube-prometheus-stack' }, alertLabels: { team: 'platform' }, disabled: ['ApiserverCallingPullpinFails'] },
    },
    webhook: { timeoutSeconds: 10 },
  }),
  render({ ...ON, replicaCount: 1 }),
])

const find = (objs: Obj[], kind: string, name?: string): Obj | undefined =>
  objs.find(o => o.kind === kind && (name === undefined || o.metadata?.name === name))
const ruleOf = (objs: Obj[]): Obj => {
  const r = find(objs, 'PrometheusRule')
  if (r === undefined) throw new Error('no PrometheusRule rendered')
  return r
}
const dashboardOf = (objs: Obj[]): Obj => {
  const c = find(objs, 'ConfigMap', `${RELEASE}-dashboard`)
  if (c === undefined) throw new Error('no dashboard ConfigMap rendered')
  return c
}
const alerts = (objs: Obj[]): Obj[] => ruleOf(objs).spec.groups.flatMap((g: Obj) => g.rules)
const dashboardFile = JSON.parse(await readFile(join(chart, 'dashboards', 'pullpin.json'), 'utf8')) as Obj

// ---- the dashboard's PromQL ----

// Grafana's variables, replaced by values PromQL accepts (what Grafana does before it queries).
const GRAFANA_VARIABLES: Record<string, string> = { $__rate_interval: '1m', $namespace: NS, $job: RELEASE }
function substitute (expr: string): string {
  let out = expr
  for (const [k, v] of Object.entries(GRAFANA_VARIABLES)) out = out.replaceAll(k, v)
  if (out.includes('$')) throw new Error(`unknown Grafana variable in ${expr}`)
  return out
}

interface Query { where: string, expr: string }
/** Every PromQL expression of the dashboard: panel targets and the template variables' queries. */
function dashboardQueries (d: Obj): Query[] {
  const out: Query[] = []
  const walk = (panels: Obj[]): void => {
    for (const p of panels) {
      for (const tg of p.targets ?? []) out.push({ where: `panel ${p.id} "${p.title}" ${tg.refId}`, expr: tg.expr })
      walk(p.panels ?? [])
    }
  }
  walk(d.panels)
  for (const v of d.templating.list) {
    if (v.type !== 'query') continue
    // label_values(selector, label) is Grafana's, not PromQL: its selector is the expression.
    const m = /^label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$/.exec(v.query.query)
    if (m === null) throw new Error(`variable ${v.name}: unexpected query ${v.query.query}`)
    out.push({ where: `variable ${v.name}`, expr: m[1]! })
  }
  return out
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan'])
/** The metric names a PromQL expression selects: strings, matchers, ranges and grouping labels dropped, functions and keywords skipped. */
export function metricNames (expr: string): string[] {
  let s = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""')
  s = s.replace(/\{[^}]*\}/g, ' ').replace(/\[[^\]]*\]/g, ' ')
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
  const names = new Set<string>()
  for (const m of s.matchAll(/(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    if (KEYWORDS.has(m[0].toLowerCase())) continue
    if (s.slice(m.index + m[0].length).trimStart().startsWith('(')) continue
    names.add(m[0])
  }
  return [...names]
}

// Series no pullpin serves: `up` is written by Prometheus for every target it scrapes.
const NOT_FROM_PULLPIN = new Set(['up'])

/** Metric families declared on /metrics (`# TYPE name kind`), with the sample names each one has. */
function declaredSamples (text: string): Set<string> {
  const out = new Set<string>()
  for (const m of text.matchAll(/^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$/gm)) {
    const [, name, kind] = m as unknown as [string, string, string]
    out.add(name)
    if (kind === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.add(name + s)
    if (kind === 'summary') for (const s of ['_sum', '_count']) out.add(name + s)
  }
  return out
}

t.test('PromQL metric extraction', async t => {
  t.same(metricNames('histogram_quantile(0.99, sum by (le, outcome) (rate(pullpin_a_bucket{job=~"x",le!="1"}[5m]))) / on (job) group_left (pod) max(up{job="pullpin_not_a_metric"}) > bool 1'), ['pullpin_a_bucket', 'up'])
  t.same(metricNames('sum(rate(a_total[1m])) or absent(b) unless c offset 5m'), ['a_total', 'b', 'c'])
})

t.test('helm renders the dashboard and the PrometheusRule only when asked', async t => {
  t.equal(find(defaults, 'PrometheusRule'), undefined, 'no PrometheusRule by default')
  t.equal(find(defaults, 'ConfigMap', `${RELEASE}-dashboard`), undefined, 'no dashboard by default')

  const cm = dashboardOf(both)
  t.equal(cm.metadata.namespace, NS)
  t.equal(cm.metadata.labels.grafana_dashboard, '1', 'the label the Grafana sidecar watches by default')
  t.equal(cm.metadata.labels['app.kubernetes.io/instance'], RELEASE)
  t.same(JSON.parse(cm.data['pullpin.json']), dashboardFile, 'the chart file, unchanged (Grafana legends are not helm templates)')

  const rule = ruleOf(both)
  t.equal(rule.apiVersion, 'monitoring.coreos.com/v1')
  t.equal(rule.metadata.namespace, NS)
  t.equal(rule.metadata.name, RELEASE)
  for (const a of alerts(both)) {
    t.ok(['critical', 'warning'].includes(a.labels.severity), `${a.alert}: a severity`)
    t.type(a.annotations.summary, 'string', `${a.alert}: a summary`)
    if (a.alert !== 'ApiserverCallingPullpinFails') {
      for (const m of metricNames(a.expr)) t.match(a.expr, `${m}{job="${RELEASE}",namespace="${NS}"`, `${a.alert}: ${m} scoped to the release's ServiceMonitor targets`)
    } else {
      t.match(a.expr, 'name="inject.pullpin.io"', 'the API server\'s metric, by webhook name')
    }
  }
  t.match(alerts(both).find(a => a.alert === 'PullpinSlow')?.expr, /> 2\.5$/, 'slow: half of timeoutSeconds (5)')
})

t.test('monitoring values: namespaces, labels, selector, disabled alerts, replicas', async t => {
  const cm = dashboardOf(custom)
  t.equal(cm.metadata.namespace, 'monitoring')
  t.equal(cm.metadata.labels.grafana_dashboard, 'pullpin', 'the sidecar label is configurable')
  t.same(cm.metadata.annotations, { grafana_folder: 'Admission' })
  const rule = ruleOf(custom)
  t.equal(rule.metadata.namespace, 'monitoring')
  t.equal(rule.metadata.labels.release, 'kube-prometheus-stack', 'for the Prometheus ruleSelector')
  const names = alerts(custom).map(a => a.alert)
  t.notOk(names.includes('ApiserverCallingPullpinFails'), 'a disabled alert is left out')
  t.ok(names.includes('PullpinDown'))
  for (const a of alerts(custom)) {
    t.equal(a.labels.team, 'platform', `${a.alert}: alertLabels added`)
    t.notMatch(a.expr, 'namespace="pullpin-system"', `${a.alert}: the custom selector replaces the default`)
  }
  t.match(alerts(custom).find(a => a.alert === 'PullpinDown')?.expr, 'up{job="webhooks",cluster="prod"}')
  t.match(alerts(custom).find(a => a.alert === 'PullpinSlow')?.expr, /> 5$/, 'slow follows webhook.timeoutSeconds')

  t.notOk(alerts(single).some(a => a.alert === 'PullpinDegraded'), 'one replica: "fewer than two" is normal, no PullpinDegraded')
  t.ok(alerts(both).some(a => a.alert === 'PullpinDegraded'), 'three replicas: PullpinDegraded')

  const bad = await tool(join(bin, 'helm'), ['template', RELEASE, chart, '--set', 'monitoring.prometheusRule.disabled[0]=Not-An-Alert'], helmEnv)
  t.not(bad.code, 0, 'the values schema refuses a malformed alert name')
  const typo = await tool(join(bin, 'helm'), ['template', RELEASE, chart, '--set', 'monitoring.dashboard.enable=true'], helmEnv)
  t.match(typo.out, /additional properties 'enable' not allowed/, 'a typo in the monitoring values is refused')
})

t.test('docs/operations.md lists the chart\'s alerts, with their severity and duration', async t => {
  const doc = await readFile(join(root, 'docs', 'operations.md'), 'utf8')
  const rows = [...doc.matchAll(/^\| `([A-Za-z]+)` \| (critical|warning) \| .* \| (\w+) \|$/gm)].map(m => ({ alert: m[1], severity: m[2], for: m[3] }))
  const chartRows = alerts(both).map(a => ({ alert: a.alert, severity: a.labels.severity, for: a.for }))
  t.same(rows, chartRows, 'same alerts, in the same order')
})

t.test('promtool: the rendered rules check, and every alert has unit tests that fire and that do not', async t => {
  const dir = await mkdtemp(join(work, 'rules-'))
  await writeFile(join(dir, 'rules.yaml'), toYaml(ruleOf(both).spec))
  const check = await tool(PROMTOOL, ['check', 'rules', join(dir, 'rules.yaml')])
  t.equal(check.code, 0, check.out)
  t.match(check.out, `SUCCESS: ${alerts(both).length} rules found`)

  const unitFile = join(root, 'test', 'fixtures', 'monitoring', 'alerts.test.yaml')
  const unit = parseYaml(await readFile(unitFile, 'utf8')) as Obj
  for (const a of alerts(both)) {
    const cases = unit.tests.flatMap((c: Obj) => c.alert_rule_test).filter((r: Obj) => r.alertname === a.alert)
    t.ok(cases.some((r: Obj) => r.exp_alerts.length > 0), `${a.alert}: a unit test where it fires`)
    t.ok(cases.some((r: Obj) => r.exp_alerts.length === 0), `${a.alert}: a unit test where it does not fire`)
  }
  const tested = new Set(unit.tests.flatMap((c: Obj) => c.alert_rule_test).map((r: Obj) => r.alertname))
  t.same([...tested].filter(n => !alerts(both).some(a => a.alert === n)), [], 'no unit test for an alert the chart does not have')

  await writeFile(join(dir, 'alerts.test.yaml'), await readFile(unitFile))
  const tests = await tool(PROMTOOL, ['test', 'rules', join(dir, 'alerts.test.yaml')])
  t.equal(tests.code, 0, tests.out)
  t.match(tests.out, 'SUCCESS')

  // The unit tests can fail: the same tests against rules whose PullpinDown never fires.
  const broken = structuredClone(ruleOf(both).spec)
  broken.groups[0].rules.find((r: Obj) => r.alert === 'PullpinDown').expr = 'vector(1) == 0'
  await writeFile(join(dir, 'rules.yaml'), toYaml(broken))
  const failing = await tool(PROMTOOL, ['test', 'rules', join(dir, 'alerts.test.yaml')])
  t.not(failing.code, 0, 'a broken alert fails its unit test')
  t.match(failing.out, 'alertname: PullpinDown')
})

t.test('the dashboard: valid Grafana JSON, and every query parsed by promtool', async t => {
  const d = dashboardFile
  t.equal(d.uid, 'pullpin')
  t.type(d.title, 'string')
  t.type(d.schemaVersion, 'number')
  t.ok(d.templating.list.some((v: Obj) => v.name === 'datasource' && v.type === 'datasource' && v.query === 'prometheus'), 'a Prometheus data source picker')
  const ids = new Set<number>()
  let graphs = 0
  for (const p of d.panels as Obj[]) {
    t.notOk(ids.has(p.id), `panel id ${p.id} unique`)
    ids.add(p.id)
    const g = p.gridPos
    t.ok(Number.isInteger(g.x) && Number.isInteger(g.w) && g.x >= 0 && g.x + g.w <= 24 && g.h > 0, `panel ${p.id} "${p.title}" fits the 24-column grid`)
    if (p.type === 'row') continue
    graphs++
    t.equal(p.datasource.uid, '$' + '{datasource}', `panel ${p.id} uses the picked data source`)
    t.ok(p.targets.length > 0, `panel ${p.id} has queries`)
    const refIds = p.targets.map((x: Obj) => x.refId)
    t.equal(new Set(refIds).size, refIds.length, `panel ${p.id}: distinct refIds`)
  }
  t.ok(graphs >= 20, `${graphs} panels`)
  // Panels must not overlap (Grafana would push them around).
  const cells = new Set<string>()
  const overlaps: string[] = []
  for (const p of d.panels as Obj[]) {
    for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++) {
      for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
        if (cells.has(`${x},${y}`)) overlaps.push(`panel ${p.id} at ${x},${y}`)
        cells.add(`${x},${y}`)
      }
    }
  }
  t.same(overlaps, [], 'no two panels overlap')

  // promtool has no offline "parse this query": one recording rule per expression is checked instead.
  const queries = dashboardQueries(d)
  const groups = [{ name: 'dashboard', rules: queries.map((q, i) => ({ record: `dashboard:query_${i}`, expr: substitute(q.expr) })) }]
  const file = join(work, 'dashboard-queries.yaml')
  await writeFile(file, toYaml({ groups }))
  const check = await tool(PROMTOOL, ['check', 'rules', file])
  t.equal(check.code, 0, check.out)
  t.match(check.out, `SUCCESS: ${queries.length} rules found`)

  // … and it can fail: a query with a syntax error is reported.
  await writeFile(file, toYaml({ groups: [{ name: 'dashboard', rules: [{ record: 'dashboard:bad', expr: 'sum by (outcome (rate(x[1m]))' }] }] }))
  t.not((await tool(PROMTOOL, ['check', 'rules', file])).code, 0, 'promtool refuses a broken query')
})

t.test('every metric the dashboard and the alerts name is on a real pullpin\'s /metrics', async t => {
  const p = await startPullpin('pinning: { enabled: false }')
  t.teardown(() => p.close())
  const res = await p.get('/metrics')
  t.equal(res.status, 200)
  const declared = declaredSamples(res.text)
  t.ok(declared.has('pullpin_admission_duration_seconds_bucket'), 'histograms are expanded to their samples')

  const missing: string[] = []
  for (const q of dashboardQueries(dashboardFile)) {
    const names = metricNames(substitute(q.expr))
    if (names.length === 0) missing.push(`${q.where}: names no metric`)
    for (const n of names) if (!declared.has(n) && !NOT_FROM_PULLPIN.has(n)) missing.push(`${q.where}: ${n}`)
  }
  for (const a of alerts(both)) {
    for (const n of metricNames(a.expr)) {
      if (!declared.has(n) && !NOT_FROM_PULLPIN.has(n) && !n.startsWith('apiserver_')) missing.push(`alert ${a.alert}: ${n}`)
    }
  }
  t.same(missing, [], 'no panel or alert names a metric pullpin does not serve')
  t.notOk(declared.has('pullpin_no_such_metric'), 'the check can fail')
})

t.test('a real Prometheus scrapes a real pullpin and evaluates every alert and dashboard query', async t => {
  const p = await startPullpin(`
namespaces:
  labels:
    default: { pullpin.io/inject: enabled }
pullSecrets:
  - name: ghcr-credentials
    registries: [ghcr.io]
pinning: { enabled: false }
`)
  let pullpinUp = true
  t.teardown(async () => { if (pullpinUp) await p.close() })
  const dir = await mkdtemp(join(work, 'prometheus-'))
  await writeFile(join(dir, 'ca.crt'), p.ca)
  await writeFile(join(dir, 'rules.yaml'), toYaml(ruleOf(both).spec))
  // The labels prometheus-operator gives the ServiceMonitor's targets: job = the Service's name,
  // namespace = its namespace. The chart's default selector picks them.
  await writeFile(join(dir, 'prometheus.yml'), toYaml({
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    rule_files: [join(dir, 'rules.yaml')],
    scrape_configs: [{
      job_name: RELEASE,
      scheme: 'https',
      tls_config: { ca_file: join(dir, 'ca.crt'), server_name: 'localhost' },
      static_configs: [{ targets: [new URL(p.url).host], labels: { namespace: NS, pod: 'pullpin-0' } }],
    }],
  }))

  let prom: ChildProcess | undefined
  let base = ''
  let log = ''
  t.teardown(async () => {
    if (prom !== undefined && prom.exitCode === null && prom.signalCode === null) {
      const child = prom
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
  })
  // A free port can be taken between freePort() and Prometheus' bind: try again with another one.
  for (let attempt = 0; attempt < 3 && base === ''; attempt++) {
    const port = await freePort()
    const child = spawn(PROMETHEUS, [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, `data-${attempt}`)}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ], { stdio: ['ignore', 'ignore', 'pipe'] })
    child.stderr.on('data', (b: Buffer) => { log += b.toString() })
    prom = child
    const ready = await until('Prometheus ready', async () => {
      if (child.exitCode !== null) return true
      try {
        const r = await request(`http://127.0.0.1:${port}/-/ready`)
        await r.body.dump()
        return r.statusCode === 200
      } catch { await new Promise(resolve => setTimeout(resolve, 50)); return false }
    }, 60_000)
    t.comment(`Prometheus ready after ${ready} ms`)
    if (child.exitCode === null) base = `http://127.0.0.1:${port}`
  }
  t.not(base, '', `Prometheus started (${log})`)

  const query = async (expr: string): Promise<{ status: string, error?: string, result: Obj[] }> => {
    const r = await request(`${base}/api/v1/query?query=${encodeURIComponent(expr)}`)
    const body = await r.body.json() as Obj
    return { status: body.status, error: body.error, result: body.data?.result ?? [] }
  }
  const poll = (what: string, cond: () => Promise<boolean>): Promise<number> =>
    until(what, async () => {
      if (await cond()) return true
      await new Promise(resolve => setTimeout(resolve, 100))
      return false
    }, 60_000)

  // Reviews pullpin mutates, seen by Prometheus through the dashboard's "Reviews by outcome" query.
  // It is a rate: the first review's count is scraped, then the second review's increase.
  const mutated = `pullpin_admission_duration_seconds_count{job="${RELEASE}",namespace="${NS}",outcome="mutated"}`
  const review = JSON.parse(await readFile(join(root, 'examples', 'admission-review.json'), 'utf8'))
  t.equal((await p.post(MUTATE_PATH, review)).json?.response?.allowed, true)
  await poll('a scrape with the first review', async () => (await query(mutated)).result.length > 0)
  t.equal((await p.post(MUTATE_PATH, review)).json?.response?.allowed, true)
  const byOutcome = dashboardQueries(dashboardFile).find(q => /sum by \(outcome\) \(rate\(pullpin_admission_duration_seconds_count/.test(q.expr))
  t.ok(byOutcome, 'the dashboard has a reviews-by-outcome query')
  await poll('the dashboard query to see the mutated reviews', async () => {
    const r = await query(substitute(byOutcome!.expr))
    return r.result.some(s => s.metric.outcome === 'mutated' && Number(s.value[1]) > 0)
  })
  t.pass('the dashboard\'s reviews-by-outcome query sees the mutated review')

  // Every dashboard query and alert expression evaluates without error on what was scraped.
  for (const q of dashboardQueries(dashboardFile)) {
    const r = await query(substitute(q.expr))
    t.equal(r.status, 'success', `${q.where}${r.error !== undefined ? `: ${r.error}` : ''}`)
  }
  for (const a of alerts(both)) {
    const r = await query(a.expr)
    t.equal(r.status, 'success', `${a.alert}${r.error !== undefined ? `: ${r.error}` : ''}`)
  }
  // The rules are loaded and evaluated by Prometheus itself, without errors.
  await poll('every rule evaluated', async () => {
    const r = await request(`${base}/api/v1/rules`)
    const rules = ((await r.body.json()) as Obj).data.groups.flatMap((g: Obj) => g.rules) as Obj[]
    return rules.length === alerts(both).length && rules.every(x => x.health === 'ok' && !String(x.lastEvaluation).startsWith('0001'))
  })
  const down = alerts(both).find(a => a.alert === 'PullpinDown')!.expr
  t.same((await query(down)).result, [], 'PullpinDown: nothing while pullpin is scraped')
  // Standalone pullpin never leads (the chart runs --cluster): PullpinNoLeader's expression sees it.
  t.ok((await query(alerts(both).find(a => a.alert === 'PullpinNoLeader')!.expr)).result.length > 0, 'PullpinNoLeader: a standalone replica holds no Lease')

  await p.close()
  pullpinUp = false
  await poll('PullpinDown\'s expression to see the stopped pullpin', async () => (await query(down)).result.length > 0)
  t.pass('PullpinDown\'s expression holds once the target stops answering')
})

// The chart's ValidatingAdmissionPolicy on Secret writes (charts/pullpin/templates/secret-write-policy.yaml),
// evaluated with a CEL interpreter (@bufbuild/cel) exactly as rendered by the real `helm template`:
// - every Secret write pullpin really makes, recorded by the in-test API server while the real cluster
//   integration (configured from the rendered ConfigMap) creates, rotates and removes copies, fills
//   Carvel placeholders, removes retired copies, and while the TLS Secret is created and renewed, passes;
// - the escalation attempts (a service-account-token Secret under a copy name, other types, a missing
//   label, a wrong name, taking over a foreign Secret) are refused;
// - nobody but pullpin's ServiceAccount is matched.
// The evaluator follows the admission semantics of the Kubernetes docs ("Validating Admission Policy"):
// matchConstraints, then every matchCondition must be true, then every validation must be true; an
// evaluation error counts as false under failurePolicy: Fail.
import t, { type Test } from 'tap'
import { execFile, execFileSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { run, type CelError } from '@bufbuild/cel'
import { CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node'
import { parseAllDocuments, stringify as toYaml } from 'yaml'
import { startFakeApiServer, type FakeApiServer, type LoggedRequest } from './support/fake-apiserver.js'
import { LogCapture } from './support/pullpin.js'
import { until } from './support/until.js'
import { connectCluster, createClusterIntegration, SecretCertificateSource } from '../src/cluster/index.js'
import { parseConfig, type Config } from '../src/policy/config.js'
import { createLogger } from '../src/server/logger.js'
import { createMetrics } from '../src/metrics.js'
import { CredentialStore } from '../src/registry/credential-store.js'

type Obj = Record<string, any>

const root = fileURLToPath(new URL('..', import.meta.url))
const chart = join(root, 'charts', 'pullpin')
const NS = 'pullpin'
const RELEASE = 'rel'
const PULLPIN = `system:serviceaccount:${NS}:${RELEASE}-pullpin`
const bin = execFileSync('bash', [join(root, 'scripts', 'k8s-tools.sh'), 'ensure'], { encoding: 'utf8' }).trim()
const helmHome = await mkdtemp(join(tmpdir(), 'pullpin-policy-'))
t.teardown(() => rm(helmHome, { recursive: true, force: true }))

let files = 0
async function render (values: Obj): Promise<Obj[]> {
  const file = join(helmHome, `values-${files++}.yaml`)
  await writeFile(file, toYaml(values))
  const { stdout } = await promisify(execFile)(join(bin, 'helm'), ['template', RELEASE, chart, '--namespace', NS, '-f', file], {
    env: { PATH: process.env.PATH ?? '', HOME: helmHome, HELM_CACHE_HOME: join(helmHome, 'c'), HELM_CONFIG_HOME: join(helmHome, 'g'), HELM_DATA_HOME: join(helmHome, 'd'), KUBECONFIG: join(helmHome, 'none') },
    maxBuffer: 16 << 20,
  })
  return parseAllDocuments(stdout).map(d => d.toJS() as Obj).filter(o => o !== null && typeof o === 'object')
}

// ---- the evaluator ----

interface AdmissionRequest {
  operation: 'CREATE' | 'UPDATE' | 'DELETE'
  namespace: string
  name: string
  object: Obj | null
  oldObject: Obj | null
  username: string
  /** The resource written: a core/v1 Secret unless said otherwise. */
  resource?: { group: string; resource: string; kind: string }
}

type Verdict = { kind: 'not-matched' } | { kind: 'allowed' } | { kind: 'denied', message: string }

const isCelError = (v: unknown): v is CelError => v instanceof Error || (typeof v === 'object' && v !== null && Object.getOwnPropertySymbols(v).some(s => s.description === '@bufbuild/cel/error'))

function evaluate (policy: Obj, req: AdmissionRequest): Verdict {
  const spec = policy.spec
  const { group, resource, kind } = req.resource ?? { group: '', resource: 'secrets', kind: 'Secret' }
  const rule = spec.matchConstraints.resourceRules.find((r: Obj) => r.apiGroups.includes(group) && r.apiVersions.includes('v1') && r.resources.includes(resource) && r.operations.includes(req.operation))
  if (rule === undefined) return { kind: 'not-matched' }
  const request = { operation: req.operation, namespace: req.namespace, name: req.name, userInfo: { username: req.username, groups: [] }, kind: { group, version: 'v1', kind }, resource: { group, version: 'v1', resource } }
  const variables = new Map<string, unknown>()
  const bindings = (): Obj => ({ request, object: req.object, oldObject: req.oldObject, params: null, variables })
  const failClosed = spec.failurePolicy !== 'Ignore'
  for (const c of spec.matchConditions ?? []) {
    const v = run(c.expression, bindings())
    if (isCelError(v)) {
      if (failClosed) return { kind: 'denied', message: `matchCondition ${c.name}: ${String(v)}` }
      return { kind: 'not-matched' }
    }
    if (v !== true) return { kind: 'not-matched' }
  }
  for (const v of spec.variables ?? []) variables.set(v.name, run(v.expression, bindings()))
  for (const v of spec.validations) {
    const out = run(v.expression, bindings())
    if (out !== true) {
      const message = v.messageExpression !== undefined ? run(v.messageExpression, bindings()) : v.message
      return { kind: 'denied', message: isCelError(out) ? `error: ${String(out)}` : String(message) }
    }
  }
  return { kind: 'allowed' }
}

// ---- what pullpin writes, from the in-test API server's request log ----

const SECRET_PATH = /^\/api\/v1\/namespaces\/([^/]+)\/secrets(?:\/([^/]+))?$/

/**
 * The Secret writes in the log, as admission requests: the old object of an update or delete is the
 * last state the log (or a seed) gave that Secret.
 */
function secretWrites (log: LoggedRequest[], known: Map<string, Obj>): AdmissionRequest[] {
  const out: AdmissionRequest[] = []
  for (const r of log) {
    const m = SECRET_PATH.exec(r.path)
    if (m === null || !['POST', 'PUT', 'DELETE'].includes(r.method)) continue
    const namespace = m[1]!
    const body = r.body as Obj
    const name = m[2] ?? body.metadata.name
    const key = `${namespace}/${name}`
    const object = r.method === 'DELETE' ? null : { ...body, metadata: { ...body.metadata, namespace } }
    const oldObject = r.method === 'POST' ? null : known.get(key) ?? null
    // A DELETE of a Secret already gone (two reconciles of one namespace, the second from an
    // informer cache that had not seen the first's DELETE yet) is a 404 at the API server, which
    // answers it before admission: no policy sees it.
    if (r.method === 'DELETE' && oldObject === null) continue
    out.push({ operation: r.method === 'POST' ? 'CREATE' : r.method === 'PUT' ? 'UPDATE' : 'DELETE', namespace, name, object, oldObject, username: PULLPIN })
    if (object === null) known.delete(key)
    else known.set(key, object)
  }
  return out
}

/** pullpin's real cluster integration on `server`, leader-to-be, with a CA to write into the webhooks' caBundle. */
function leaderWithCaBundle (t: Test, server: FakeApiServer, config: Config): void {
  const integration = createClusterIntegration({
    connection: connectCluster({ kubeConfig: server.kubeConfig() }),
    config,
    ownNamespace: NS,
    identity: 'replica-1',
    logger: createLogger({ level: 'silent' }),
    metrics: createMetrics({ defaultMetrics: false }).cluster,
    credentials: new CredentialStore(),
    backoff: { initialMs: 20, maxMs: 200 },
    leaderElection: { leaseDurationMs: 10_000, renewDeadlineMs: 8000, retryPeriodMs: 100 },
  })
  t.teardown(() => integration.stop())
  integration.setCaBundle('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')
  integration.start()
}

const b64 = (s: string): string => Buffer.from(s).toString('base64')
const dockerConfig = (registry: string, password: string): string => b64(JSON.stringify({ auths: { [registry]: { auth: b64(`bot:${password}`) } } }))
const policyOf = (objs: Obj[], which = 'secret-writes'): Obj => {
  const p = objs.find(o => o.kind === 'ValidatingAdmissionPolicy' && o.metadata.name === `${RELEASE}-pullpin-${which}`)
  if (p === undefined) throw new Error(`no ValidatingAdmissionPolicy ${which} rendered`)
  return p
}

const VALUES = {
  rbac: { cleanupRetiredCopies: true },
  config: {
    pullSecrets: [
      { name: 'ghcr-credentials', registries: ['ghcr.io'], source: { namespace: NS, name: 'ghcr-source' } },
      { name: 'hub-credentials', registries: ['docker.io'] },
    ],
    cluster: { placeholderSecrets: true },
  },
}
const rendered = await render(VALUES)
const policy = policyOf(rendered)

t.test('the binding denies through the rendered policy', async t => {
  for (const p of [policy, policyOf(rendered, 'webhook-writes')]) {
    const binding = rendered.find(o => o.kind === 'ValidatingAdmissionPolicyBinding' && o.metadata.name === p.metadata.name)
    t.same(binding?.spec, { policyName: p.metadata.name, validationActions: ['Deny'] })
    t.equal(p.spec.failurePolicy, 'Fail')
  }
  const sa = rendered.find(o => o.kind === 'ServiceAccount')
  t.equal(`system:serviceaccount:${sa?.metadata.namespace as string}:${sa?.metadata.name as string}`, PULLPIN, 'matched on the ServiceAccount the Deployment runs as')
})

t.test('every Secret write pullpin makes during a real reconcile passes the policy', async t => {
  const configMap = rendered.find(o => o.kind === 'ConfigMap')!
  const config: Config = parseConfig(configMap.data['config.yaml'], 'rendered ConfigMap')
  const server = await startFakeApiServer({ namespaces: ['default', 'kube-system', NS, 'team-a', 'team-b'] })
  t.teardown(() => server.stop())
  const known = new Map<string, Obj>()
  const seed = (s: FakeApiServer, obj: Obj): void => {
    const stored = s.seed(obj)
    known.set(`${stored.metadata.namespace as string}/${stored.metadata.name as string}`, stored)
  }
  seed(server, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'ghcr-source', namespace: NS }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': dockerConfig('ghcr.io', 'pw-1') } })
  seed(server, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'reg-creds', namespace: 'team-a', annotations: { 'secretgen.carvel.dev/image-pull-secret': '' } }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': b64('{}') } })
  // A copy of an entry no longer in the config (rbac.cleanupRetiredCopies removes it).
  seed(server, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'old-credentials', namespace: 'team-b', labels: { 'app.kubernetes.io/managed-by': 'pullpin' }, annotations: { 'pullpin.io/source': `${NS}/old-source` } }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': dockerConfig('old.io', 'x') } })

  const logs = new LogCapture()
  const logger = createLogger({ level: 'debug', destination: logs })
  const connection = connectCluster({ kubeConfig: server.kubeConfig() })
  const integration = createClusterIntegration({
    connection,
    config,
    ownNamespace: NS,
    identity: 'replica-1',
    logger,
    metrics: createMetrics({ defaultMetrics: false }).cluster,
    credentials: new CredentialStore(),
    backoff: { initialMs: 20, maxMs: 200 },
    leaderElection: { leaseDurationMs: 10_000, renewDeadlineMs: 8000, retryPeriodMs: 100 },
  })
  t.teardown(() => integration.stop())
  integration.start()
  await integration.waitForSync()
  await until('leadership', () => integration.isLeader())
  const core = server.kubeConfig().makeApiClient(CoreV1Api)
  const label = async (ns: string, value: string | null): Promise<void> => {
    await core.patchNamespace({ name: ns, body: { metadata: { labels: { [config.namespaces.optInLabel]: value } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
  }
  const secret = (ns: string, name: string): Obj | undefined => server.get({ resource: 'secrets', namespace: ns, name })

  await until('retired copy removed', () => secret('team-b', 'old-credentials') === undefined)
  await label('team-a', 'enabled')
  await until('copy created', () => secret('team-a', 'ghcr-credentials') !== undefined)
  await until('placeholder filled', () => secret('team-a', 'reg-creds')?.data['.dockerconfigjson'] !== b64('{}'))
  // Rotation (seeded: the test's own write is not pullpin's) updates the copy and the placeholder.
  seed(server, { ...secret(NS, 'ghcr-source'), data: { '.dockerconfigjson': dockerConfig('ghcr.io', 'pw-2') } })
  await until('copy rotated', () => secret('team-a', 'ghcr-credentials')?.data['.dockerconfigjson'] === dockerConfig('ghcr.io', 'pw-2'))
  await until('placeholder rotated', () => Buffer.from(secret('team-a', 'reg-creds')?.data['.dockerconfigjson'], 'base64').toString().includes(b64('bot:pw-2')))
  await label('team-a', null)
  await until('copy removed on opt-out', () => secret('team-a', 'ghcr-credentials') === undefined)
  await integration.idle()

  // Self-managed certificates: created at the first start, renewed later (a clock past renewal).
  const tls = (now: () => Date): SecretCertificateSource => new SecretCertificateSource({
    connection,
    namespace: NS,
    secretName: config.cluster.certificateSecret,
    dnsNames: ['rel-pullpin.pullpin.svc'],
    ipAddresses: [],
    validityDays: 1,
    renewBeforeDays: 0.5,
    logger,
    informer: { backoff: { initialMs: 20, maxMs: 200 } },
    now,
  })
  const first = await tls(() => new Date()).load()
  const renewed = await tls(() => new Date(Date.now() + 0.6 * 86_400_000)).load()
  t.not(renewed.cert, first.cert, 'the TLS Secret was renewed')

  const writes = secretWrites(server.requests, known)
  const seen = writes.map(w => `${w.operation} ${w.namespace}/${w.name}`)
  for (const expected of ['DELETE team-b/old-credentials', 'CREATE team-a/ghcr-credentials', 'UPDATE team-a/ghcr-credentials', 'DELETE team-a/ghcr-credentials', 'UPDATE team-a/reg-creds', `CREATE ${NS}/${RELEASE}-pullpin-tls`, `UPDATE ${NS}/${RELEASE}-pullpin-tls`]) {
    t.ok(seen.includes(expected), `pullpin made the write ${expected}`)
  }
  for (const w of writes) {
    t.same(evaluate(policy, w), { kind: 'allowed' }, `${w.operation} ${w.namespace}/${w.name} (${(w.object ?? w.oldObject)?.type as string}) is allowed`)
  }
})

t.test('escalation attempts are refused', async t => {
  const copyMeta = { name: 'ghcr-credentials', namespace: 'team-a', labels: { 'app.kubernetes.io/managed-by': 'pullpin' }, annotations: { 'pullpin.io/source': `${NS}/ghcr-source` } }
  const copy = { apiVersion: 'v1', kind: 'Secret', metadata: copyMeta, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': dockerConfig('ghcr.io', 'pw') } }
  const create = (object: Obj, namespace = 'team-a', username = PULLPIN): AdmissionRequest => ({ operation: 'CREATE', namespace, name: object.metadata.name, object, oldObject: null, username })
  const update = (oldObject: Obj, object: Obj): AdmissionRequest => ({ operation: 'UPDATE', namespace: object.metadata.namespace, name: object.metadata.name, object, oldObject, username: PULLPIN })
  const del = (oldObject: Obj): AdmissionRequest => ({ operation: 'DELETE', namespace: oldObject.metadata.namespace, name: oldObject.metadata.name, object: null, oldObject, username: PULLPIN })
  const token = { apiVersion: 'v1', kind: 'Secret', metadata: { ...copyMeta, annotations: { 'kubernetes.io/service-account.name': 'cluster-admin-sa' } }, type: 'kubernetes.io/service-account-token' }

  t.same(evaluate(policy, create(copy)), { kind: 'allowed' }, 'the copy itself (control)')
  const denied: Array<[string, AdmissionRequest]> = [
    ['a service-account-token Secret under a copy name', create(token)],
    ['a service-account-token Secret under the TLS Secret name', create({ ...token, metadata: { ...token.metadata, name: `${RELEASE}-pullpin-tls`, namespace: NS } }, NS)],
    ['an Opaque Secret under a copy name', create({ ...copy, type: 'Opaque' })],
    ['a Secret without a type', create({ ...copy, type: undefined })],
    ['a copy without the managed-by label', create({ ...copy, metadata: { ...copyMeta, labels: {} } })],
    ['a copy without any label', create({ ...copy, metadata: { name: copyMeta.name, namespace: 'team-a' } })],
    ['a copy with another managed-by value', create({ ...copy, metadata: { ...copyMeta, labels: { 'app.kubernetes.io/managed-by': 'Helm' } } })],
    ['a copy under a name that is not a copy name', create({ ...copy, metadata: { ...copyMeta, name: 'payments-db' } })],
    ['a copy of an entry without a source', create({ ...copy, metadata: { ...copyMeta, name: 'hub-credentials' } })],
    ['a Secret without a name (generateName)', create({ ...copy, metadata: { generateName: 'x-', namespace: 'team-a', labels: copyMeta.labels } })],
    ['the TLS Secret name in another namespace', create({ apiVersion: 'v1', kind: 'Secret', metadata: { name: `${RELEASE}-pullpin-tls`, namespace: 'team-a' }, type: 'kubernetes.io/tls' })],
    ['a foreign Secret of a copy name taken over by adding the label', update({ ...copy, metadata: { name: copyMeta.name, namespace: 'team-a' } }, copy)],
    ['a plain dockerconfigjson Secret made a placeholder', update({ ...copy, metadata: { name: 'plain', namespace: 'team-a' } }, { ...copy, metadata: { name: 'plain', namespace: 'team-a', annotations: { 'secretgen.carvel.dev/image-pull-secret': '' } } })],
    ['a placeholder created (placeholders are only filled)', create({ ...copy, metadata: { name: 'reg-creds', namespace: 'team-a', annotations: { 'secretgen.carvel.dev/image-pull-secret': '' } } })],
    ['a foreign Secret deleted', del({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'payments-db', namespace: 'team-a' }, type: 'Opaque' })],
    ['a foreign Secret of a copy name deleted', del({ ...copy, metadata: { name: copyMeta.name, namespace: 'team-a' } })],
    ['the TLS Secret deleted', del({ apiVersion: 'v1', kind: 'Secret', metadata: { name: `${RELEASE}-pullpin-tls`, namespace: NS, labels: copyMeta.labels }, type: 'kubernetes.io/tls' })],
  ]
  for (const [what, req] of denied) {
    const v = evaluate(policy, req)
    t.equal(v.kind, 'denied', `refused: ${what}`)
    if (v.kind === 'denied') t.match(v.message, /^pullpin may not (CREATE|UPDATE|DELETE) Secret /, `a clear message: ${what}`)
  }

  // Nobody else is matched: the same requests from other users are not the policy's business.
  for (const username of ['kubernetes-admin', `system:serviceaccount:${NS}:default`, `system:serviceaccount:team-a:${RELEASE}-pullpin`, 'system:kube-controller-manager']) {
    t.same(evaluate(policy, create(token, 'team-a', username)), { kind: 'not-matched' }, `${username} is not affected`)
  }
})

t.test('the policy follows the values', async (t: Test) => {
  const [narrow, off] = await Promise.all([
    render({ config: { pullSecrets: VALUES.config.pullSecrets } }),
    render({ ...VALUES, rbac: { secretWritePolicy: false } }),
  ])
  t.same(off.filter(o => /ValidatingAdmissionPolicy/.test(o.kind) && o.metadata.name === `${RELEASE}-pullpin-secret-writes`), [], 'rbac.secretWritePolicy: false renders none (clusters older than 1.30)')
  const p = policyOf(narrow)
  const placeholder = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'reg-creds', namespace: 'team-a', annotations: { 'secretgen.carvel.dev/image-pull-secret': '' } }, type: 'kubernetes.io/dockerconfigjson', data: {} }
  const retired = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'old-credentials', namespace: 'team-a', labels: { 'app.kubernetes.io/managed-by': 'pullpin' }, annotations: { 'pullpin.io/source': `${NS}/old` } }, type: 'kubernetes.io/dockerconfigjson' }
  t.equal(evaluate(p, { operation: 'UPDATE', namespace: 'team-a', name: 'reg-creds', object: placeholder, oldObject: placeholder, username: PULLPIN }).kind, 'denied', 'placeholders off: not even a placeholder')
  t.equal(evaluate(policy, { operation: 'UPDATE', namespace: 'team-a', name: 'reg-creds', object: placeholder, oldObject: placeholder, username: PULLPIN }).kind, 'allowed', 'placeholders on (control)')
  t.equal(evaluate(p, { operation: 'DELETE', namespace: 'team-a', name: 'old-credentials', object: null, oldObject: retired, username: PULLPIN }).kind, 'denied', 'cleanupRetiredCopies off: only current copy names')
  t.equal(evaluate(policy, { operation: 'DELETE', namespace: 'team-a', name: 'old-credentials', object: null, oldObject: retired, username: PULLPIN }).kind, 'allowed', 'cleanupRetiredCopies on (control)')
  const certManager = policyOf(await render({ ...VALUES, certs: { mode: 'cert-manager' } }))
  const tls = { apiVersion: 'v1', kind: 'Secret', metadata: { name: `${RELEASE}-pullpin-tls`, namespace: NS, labels: { 'app.kubernetes.io/managed-by': 'pullpin' } }, type: 'kubernetes.io/tls' }
  t.equal(evaluate(certManager, { operation: 'CREATE', namespace: NS, name: tls.metadata.name, object: tls, oldObject: null, username: PULLPIN }).kind, 'denied', 'cert-manager writes the TLS Secret, pullpin does not')
  const renamed = policyOf(await render({ ...VALUES, serviceAccount: { create: true, name: 'webhook' } }))
  t.match(renamed.spec.matchConditions[0].expression, `'system:serviceaccount:${NS}:webhook'`, 'follows serviceAccount.name')
})

// ---- the webhook-write policy (charts/pullpin/templates/webhook-write-policy.yaml) ----

const WEBHOOKS = { group: 'admissionregistration.k8s.io', resource: 'mutatingwebhookconfigurations', kind: 'MutatingWebhookConfiguration' }
const webhookPolicy = policyOf(rendered, 'webhook-writes')
const hookConfig = rendered.find(o => o.kind === 'MutatingWebhookConfiguration')!
const hookUpdate = (object: Obj, oldObject: Obj = hookConfig, username = PULLPIN): AdmissionRequest =>
  ({ operation: 'UPDATE', namespace: '', name: oldObject.metadata.name, object, oldObject, username, resource: WEBHOOKS })
const withWebhook = (change: (w: Obj) => Obj): Obj => ({ ...hookConfig, webhooks: hookConfig.webhooks.map(change) })

t.test('the caBundle patch the leader really makes passes the webhook-write policy', async t => {
  const server = await startFakeApiServer({ namespaces: ['default', NS] })
  t.teardown(() => server.stop())
  const { apiVersion, kind, metadata, webhooks } = hookConfig
  const before = server.seed({ apiVersion, kind, metadata: { name: metadata.name, labels: metadata.labels }, webhooks })
  const config: Config = parseConfig(rendered.find(o => o.kind === 'ConfigMap')!.data['config.yaml'], 'rendered ConfigMap')
  t.equal(config.cluster.webhookConfigurationName, metadata.name, 'the leader patches the rendered configuration')
  leaderWithCaBundle(t, server, config)
  const current = (): Obj => server.get({ group: WEBHOOKS.group, resource: WEBHOOKS.resource, name: metadata.name })
  await until('caBundle patched', () => current().webhooks.every((w: Obj) => typeof w.clientConfig.caBundle === 'string'))
  t.same(evaluate(webhookPolicy, hookUpdate(current(), before)), { kind: 'allowed' }, 'the leader\'s patch is allowed')
})

t.test('the webhook-write policy refuses every other change to webhook configurations', async t => {
  const caBundle = b64('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')
  const patched = withWebhook(w => ({ ...w, clientConfig: { ...w.clientConfig, caBundle } }))
  t.same(evaluate(webhookPolicy, hookUpdate(patched)), { kind: 'allowed' }, 'a new caBundle (control)')
  const attempts: Array<[string, AdmissionRequest]> = [
    ['rules widened to Secrets', hookUpdate(withWebhook(w => ({ ...w, rules: [...w.rules, { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE', 'UPDATE'], resources: ['secrets'], scope: '*' }] })))],
    ['namespaceSelector opened to every namespace', hookUpdate(withWebhook(w => ({ ...w, namespaceSelector: {} })))],
    ['another service', hookUpdate(withWebhook(w => ({ ...w, clientConfig: { ...w.clientConfig, service: { ...w.clientConfig.service, name: 'evil' } } })))],
    ['a URL instead of the service', hookUpdate(withWebhook(w => ({ ...w, clientConfig: { url: 'https://evil.example.com/mutate', caBundle } })))],
    ['failurePolicy Fail (blocks every pod when pullpin is down)', hookUpdate(withWebhook(w => ({ ...w, failurePolicy: 'Fail' })))],
    ['matchConditions added', hookUpdate(withWebhook(w => ({ ...w, matchConditions: [{ name: 'x', expression: 'true' }] })))],
    ['objectSelector added', hookUpdate(withWebhook(w => ({ ...w, objectSelector: { matchLabels: { a: 'b' } } })))],
    ['timeoutSeconds changed', hookUpdate(withWebhook(w => ({ ...w, timeoutSeconds: 30 })))],
    ['a second webhook', hookUpdate({ ...hookConfig, webhooks: [...hookConfig.webhooks, { ...hookConfig.webhooks[0], name: 'second.pullpin.io' }] })],
    ['a webhook removed', hookUpdate({ ...hookConfig, webhooks: [] })],
    ['a webhook renamed', hookUpdate(withWebhook(w => ({ ...w, name: 'renamed.pullpin.io' })))],
    ['labels changed', hookUpdate({ ...hookConfig, metadata: { ...hookConfig.metadata, labels: { ...hookConfig.metadata.labels, x: 'y' } } })],
    ['annotations added', hookUpdate({ ...hookConfig, metadata: { ...hookConfig.metadata, annotations: { a: 'b' } } })],
    ['another configuration', { ...hookUpdate({ ...patched, metadata: { ...patched.metadata, name: 'someone-else' } }, { ...hookConfig, metadata: { ...hookConfig.metadata, name: 'someone-else' } }) }],
    ['a new configuration', { operation: 'CREATE', namespace: '', name: 'new', object: { ...hookConfig, metadata: { name: 'new' } }, oldObject: null, username: PULLPIN, resource: WEBHOOKS }],
    ['deleting its own', { operation: 'DELETE', namespace: '', name: hookConfig.metadata.name, object: null, oldObject: hookConfig, username: PULLPIN, resource: WEBHOOKS }],
    ['a ValidatingWebhookConfiguration', { operation: 'CREATE', namespace: '', name: 'v', object: { kind: 'ValidatingWebhookConfiguration', metadata: { name: 'v' }, webhooks: [] }, oldObject: null, username: PULLPIN, resource: { group: WEBHOOKS.group, resource: 'validatingwebhookconfigurations', kind: 'ValidatingWebhookConfiguration' } }],
  ]
  for (const [what, req] of attempts) {
    const v = evaluate(webhookPolicy, req)
    t.equal(v.kind, 'denied', `${what}: denied`)
    if (v.kind === 'denied') t.match(v.message, /^pullpin may not (CREATE|UPDATE|DELETE) \w+ [\w.-]+: it only writes the caBundle of its webhook configurations$/, `${what}: says why`)
  }
  for (const username of ['kubernetes-admin', 'system:serviceaccount:cert-manager:cert-manager-cainjector']) {
    t.same(evaluate(webhookPolicy, hookUpdate(withWebhook(w => ({ ...w, namespaceSelector: {} })), hookConfig, username)), { kind: 'not-matched' }, `${username} is not affected`)
  }
  const none = await Promise.all([render({ ...VALUES, rbac: { webhookWritePolicy: false } }), render({ ...VALUES, certs: { mode: 'cert-manager' } })])
  t.notOk(none[0].some(o => o.metadata?.name === `${RELEASE}-pullpin-webhook-writes`), 'rbac.webhookWritePolicy: false renders none')
  t.notOk(none[1].some(o => o.metadata?.name === `${RELEASE}-pullpin-webhook-writes`), 'cert-manager: pullpin has no patch right, no policy needed')
})

t.test('the workload webhook\'s ValidatingWebhookConfiguration: the leader\'s real caBundle patch passes, anything else does not', async t => {
  const VALIDATING = { group: WEBHOOKS.group, resource: 'validatingwebhookconfigurations', kind: 'ValidatingWebhookConfiguration' }
  const vConfig = rendered.find(o => o.kind === 'ValidatingWebhookConfiguration')!
  const vUpdate = (object: Obj, oldObject: Obj = vConfig): AdmissionRequest => ({ operation: 'UPDATE', namespace: '', name: oldObject.metadata.name, object, oldObject, username: PULLPIN, resource: VALIDATING })
  const server = await startFakeApiServer({ namespaces: ['default', NS] })
  t.teardown(() => server.stop())
  const before = server.seed({ apiVersion: vConfig.apiVersion, kind: vConfig.kind, metadata: { name: vConfig.metadata.name, labels: vConfig.metadata.labels }, webhooks: vConfig.webhooks })
  const config: Config = parseConfig(rendered.find(o => o.kind === 'ConfigMap')!.data['config.yaml'], 'rendered ConfigMap')
  t.equal(config.cluster.validatingWebhookConfigurationName, vConfig.metadata.name)
  leaderWithCaBundle(t, server, config)
  const current = (): Obj => server.get({ group: VALIDATING.group, resource: VALIDATING.resource, name: vConfig.metadata.name })
  await until('caBundle patched', () => current().webhooks.every((w: Obj) => typeof w.clientConfig.caBundle === 'string'))
  t.same(evaluate(webhookPolicy, vUpdate(current(), before)), { kind: 'allowed' }, 'the leader\'s patch is allowed')
  const widened = { ...vConfig, webhooks: vConfig.webhooks.map((w: Obj) => ({ ...w, rules: [...w.rules, { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['secrets'], scope: '*' }] })) }
  t.equal(evaluate(webhookPolicy, vUpdate(widened)).kind, 'denied', 'rules widened: denied')
  t.equal(evaluate(webhookPolicy, vUpdate({ ...current(), metadata: { ...vConfig.metadata, name: 'other' } }, { ...vConfig, metadata: { ...vConfig.metadata, name: 'other' } })).kind, 'denied', 'another ValidatingWebhookConfiguration: denied')
})

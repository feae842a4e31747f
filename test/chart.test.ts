// The Helm chart, checked with the real helm binary (scripts/k8s-tools.sh): lint, template with
// the defaults and each certificate mode, every rendered object validated against the Kubernetes
// schema of its kind, the ConfigMap accepted by pullpin's own config validator, and the rendered
// container command started for real and called on the webhook's path and the probes' paths.
//
// Offline schema validation: kubectl cannot validate without an API server (create/apply
// --dry-run=client both need discovery, and --validate downloads /openapi from the server), so
// objects are checked against the OpenAPI-generated models of @kubernetes/client-node (v1.34):
// each model's attributeTypeMap gives the fields and their types, its .d.ts the required ones.
// Unknown fields, wrong types and missing required fields are errors. The cert-manager and
// prometheus-operator CRDs have no models there: they are checked against closed JSON Schemas
// transcribed from their CRDs, for the fields the chart uses.
import t, { type Test } from 'tap'
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import * as k8s from '@kubernetes/client-node'
import { Ajv } from 'ajv'
import { Agent, request } from 'undici'
import { parse as parseYaml, parseAllDocuments, stringify as toYaml } from 'yaml'
import { parseConfig, type Config } from '../src/policy/config.js'
import { configSchema } from '../src/policy/config-schema.js'
import { MUTATE_PATH, VALIDATE_PATH } from '../src/server/server.js'
import { clusterChoice, main as cliMain } from '../src/cli.js'
import { renderValuesSchema, VALUES_SCHEMA_PATH } from '../scripts/gen-chart-schema.js'

type Obj = Record<string, any>

const root = fileURLToPath(new URL('..', import.meta.url))
const chart = join(root, 'charts', 'pullpin')
const NS = 'platform'
const RELEASE = 'rel'
const run = promisify(execFile)
const bin = execFileSync('bash', [join(root, 'scripts', 'k8s-tools.sh'), 'ensure'], { encoding: 'utf8' }).trim()
const helmHome = await mkdtemp(join(tmpdir(), 'pullpin-helm-'))
t.teardown(() => rm(helmHome, { recursive: true, force: true }))
const helmEnv = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: helmHome,
  HELM_CACHE_HOME: join(helmHome, 'cache'),
  HELM_CONFIG_HOME: join(helmHome, 'config'),
  HELM_DATA_HOME: join(helmHome, 'data'),
  KUBECONFIG: join(helmHome, 'no-kubeconfig'),
}

async function helm (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  try {
    const { stdout, stderr } = await run(join(bin, 'helm'), args, { env: helmEnv, maxBuffer: 16 << 20 })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code?: number, stdout?: string, stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) }
  }
}

let valuesFiles = 0
async function valuesArgs (values: Obj | undefined): Promise<string[]> {
  if (values === undefined) return []
  const file = join(helmHome, `values-${valuesFiles++}.yaml`)
  await writeFile(file, toYaml(values))
  return ['-f', file]
}

/** `helm template` → the rendered objects, in order. Throws with helm's message on failure. */
async function render (values?: Obj, namespace = NS): Promise<Obj[]> {
  const r = await helm(['template', RELEASE, chart, '--namespace', namespace, ...await valuesArgs(values)])
  if (r.code !== 0) throw new Error(`helm template failed: ${r.stderr}`)
  const docs = parseAllDocuments(r.stdout)
  for (const d of docs) if (d.errors.length > 0) throw new Error(`rendered YAML does not parse: ${d.errors[0]!.message}`)
  return docs.map(d => d.toJS() as Obj).filter(o => o !== null && typeof o === 'object')
}

const find = (objs: Obj[], kind: string, name?: string): Obj | undefined =>
  objs.find(o => o.kind === kind && (name === undefined || o.metadata?.name === name))
function get (objs: Obj[], kind: string, name?: string): Obj {
  const o = find(objs, kind, name)
  if (o === undefined) throw new Error(`no ${kind}${name !== undefined ? ` ${name}` : ''} rendered`)
  return o
}

// ---- Kubernetes schema validation from @kubernetes/client-node's generated models ----

interface Attribute { name: string, baseName: string, type: string, format: string }
const modelsDir = join(dirname(createRequire(import.meta.url).resolve('@kubernetes/client-node')), 'gen', 'models')
const models = k8s as unknown as Record<string, { getAttributeTypeMap?: () => Attribute[] } | undefined>
const requiredCache = new Map<string, Set<string>>()

/** Required JSON fields of a model: the non-optional properties of its declaration file. */
function requiredFields (type: string, attributes: Attribute[]): Set<string> {
  let req = requiredCache.get(type)
  if (req === undefined) {
    const dts = readFileSync(join(modelsDir, `${type}.d.ts`), 'utf8')
    const names = new Set([...dts.matchAll(/^\s+'([^']+)': /gm)].map(m => m[1]!))
    req = new Set(attributes.filter(a => names.has(a.name)).map(a => a.baseName))
    requiredCache.set(type, req)
  }
  return req
}

const isPlainObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)

function checkType (value: unknown, type: string, format: string, path: string, errors: string[]): void {
  const fail = (what: string): void => { errors.push(`${path}: ${what}, got ${JSON.stringify(value)}`) }
  const array = /^Array<(.+)>$/.exec(type)
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type)
  if (array !== null) {
    if (!Array.isArray(value)) return fail(`expected an array of ${array[1]}`)
    value.forEach((v, i) => checkType(v, array[1]!, '', `${path}[${i}]`, errors))
  } else if (map !== null) {
    if (!isPlainObject(value)) return fail(`expected a map of ${map[1]}`)
    for (const [k, v] of Object.entries(value)) checkType(v, map[1]!, '', `${path}.${k}`, errors)
  } else if (type === 'string') {
    if (typeof value !== 'string') return fail('expected a string')
    if (format === 'byte' && !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) fail('expected base64')
  } else if (type === 'number') {
    if (typeof value !== 'number') return fail('expected a number')
    if ((format === 'int32' || format === 'int64') && !Number.isInteger(value)) fail('expected an integer')
  } else if (type === 'boolean') {
    if (typeof value !== 'boolean') fail('expected a boolean')
  } else if (type === 'Date') {
    if (typeof value !== 'string' || Number.isNaN(Date.parse(value))) fail('expected an RFC 3339 time')
  } else if (type === 'IntOrString') {
    if (typeof value !== 'string' && !Number.isInteger(value)) fail('expected an integer or a string')
  } else if (type === 'any' || type === 'object') {
    // free-form (e.g. RawExtension)
  } else {
    const attributes = models[type]?.getAttributeTypeMap?.()
    if (attributes === undefined) throw new Error(`no model ${type} in @kubernetes/client-node`)
    if (!isPlainObject(value)) return fail(`expected an object (${type})`)
    const byName = new Map(attributes.map(a => [a.baseName, a]))
    for (const [k, v] of Object.entries(value)) {
      const attr = byName.get(k)
      if (attr === undefined) errors.push(`${path}.${k}: unknown field in ${type}`)
      else if (v !== null) checkType(v, attr.type, attr.format, `${path}.${k}`, errors)
    }
    for (const r of requiredFields(type, attributes)) if (value[r] === undefined || value[r] === null) errors.push(`${path}.${r}: required in ${type}`)
  }
}

const BUILTIN_KINDS: Record<string, string> = {
  'v1/ConfigMap': 'V1ConfigMap',
  'v1/Service': 'V1Service',
  'v1/ServiceAccount': 'V1ServiceAccount',
  'apps/v1/Deployment': 'V1Deployment',
  'policy/v1/PodDisruptionBudget': 'V1PodDisruptionBudget',
  'admissionregistration.k8s.io/v1/MutatingWebhookConfiguration': 'V1MutatingWebhookConfiguration',
  'admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration': 'V1ValidatingWebhookConfiguration',
  'admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy': 'V1ValidatingAdmissionPolicy',
  'admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding': 'V1ValidatingAdmissionPolicyBinding',
  'rbac.authorization.k8s.io/v1/ClusterRole': 'V1ClusterRole',
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': 'V1ClusterRoleBinding',
  'rbac.authorization.k8s.io/v1/Role': 'V1Role',
  'rbac.authorization.k8s.io/v1/RoleBinding': 'V1RoleBinding',
  'networking.k8s.io/v1/NetworkPolicy': 'V1NetworkPolicy',
}
const CLUSTER_SCOPED = new Set(['ClusterRole', 'ClusterRoleBinding', 'MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding'])

// CRD schemas (cert-manager.io/v1 from cert-manager v1.16's CRDs, monitoring.coreos.com/v1 from
// prometheus-operator v0.7x's), closed to the fields the chart may render.
const str = { type: 'string' }
const strList = { type: 'array', items: str }
const labelSelector = {
  type: 'object',
  additionalProperties: false,
  properties: {
    matchLabels: { type: 'object', additionalProperties: str },
    matchExpressions: { type: 'array', items: { type: 'object', additionalProperties: false, required: ['key', 'operator'], properties: { key: str, operator: { enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'] }, values: strList } } },
  },
}
const issuerRef = { type: 'object', additionalProperties: false, required: ['name'], properties: { name: str, kind: str, group: str } }
const KEY_USAGES = ['signing', 'digital signature', 'content commitment', 'key encipherment', 'key agreement', 'data encipherment', 'cert sign', 'crl sign', 'encipher only', 'decipher only', 'any', 'server auth', 'client auth', 'code signing', 'email protection', 's/mime', 'ipsec end system', 'ipsec tunnel', 'ipsec user', 'timestamping', 'ocsp signing', 'microsoft sgc', 'netscape sgc']
const goDuration = { type: 'string', pattern: '^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$' }
const CRD_SPECS: Record<string, object> = {
  'cert-manager.io/v1/Certificate': {
    type: 'object',
    additionalProperties: false,
    required: ['secretName', 'issuerRef'],
    properties: {
      secretName: str,
      issuerRef,
      commonName: str,
      dnsNames: strList,
      ipAddresses: strList,
      duration: goDuration,
      renewBefore: goDuration,
      isCA: { type: 'boolean' },
      usages: { type: 'array', items: { enum: KEY_USAGES } },
      privateKey: {
        type: 'object',
        additionalProperties: false,
        properties: {
          algorithm: { enum: ['RSA', 'ECDSA', 'Ed25519'] },
          size: { type: 'integer' },
          encoding: { enum: ['PKCS1', 'PKCS8'] },
          rotationPolicy: { enum: ['Never', 'Always'] },
        },
      },
      secretTemplate: { type: 'object', additionalProperties: false, properties: { annotations: { type: 'object' }, labels: { type: 'object' } } },
    },
  },
  'cert-manager.io/v1/Issuer': {
    type: 'object',
    additionalProperties: false,
    minProperties: 1,
    maxProperties: 1,
    properties: {
      selfSigned: { type: 'object', additionalProperties: false, properties: { crlDistributionPoints: strList } },
      ca: { type: 'object', additionalProperties: false, required: ['secretName'], properties: { secretName: str, crlDistributionPoints: strList, ocspServers: strList, issuingCertificateURLs: strList } },
    },
  },
  'monitoring.coreos.com/v1/ServiceMonitor': {
    type: 'object',
    additionalProperties: false,
    required: ['selector', 'endpoints'],
    properties: {
      selector: labelSelector,
      namespaceSelector: { type: 'object', additionalProperties: false, properties: { any: { type: 'boolean' }, matchNames: strList } },
      jobLabel: str,
      endpoints: {
        type: 'array',
        items: {
          type: 'object',
          additionalProperties: false,
          properties: {
            port: str,
            path: str,
            scheme: { enum: ['http', 'https', 'HTTP', 'HTTPS'] },
            interval: { type: 'string', pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$' },
            scrapeTimeout: str,
            honorLabels: { type: 'boolean' },
            tlsConfig: {
              type: 'object',
              additionalProperties: false,
              properties: { insecureSkipVerify: { type: 'boolean' }, serverName: str, caFile: str, certFile: str, keyFile: str, ca: { type: 'object' }, cert: { type: 'object' }, keySecret: { type: 'object' }, minVersion: str, maxVersion: str },
            },
          },
        },
      },
    },
  },
}
CRD_SPECS['monitoring.coreos.com/v1/PrometheusRule'] = {
  type: 'object',
  additionalProperties: false,
  properties: {
    groups: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: {
          name: { type: 'string', minLength: 1 },
          interval: str,
          rules: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['expr'],
              properties: {
                alert: str,
                record: str,
                expr: { anyOf: [{ type: 'string' }, { type: 'integer' }] },
                for: { type: 'string', pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$' },
                keep_firing_for: str,
                labels: { type: 'object', additionalProperties: str },
                annotations: { type: 'object', additionalProperties: str },
              },
            },
          },
        },
      },
    },
  },
}
const ajv = new Ajv({ allErrors: true, strict: false })
const crdValidators = new Map(Object.entries(CRD_SPECS).map(([k, s]) => [k, ajv.compile(s)]))

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const LABEL_NAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/

/** Every problem with one rendered object: its kind's schema, names, namespace and the chart's labels. */
/** `sourceNamespaces`: where the pull-secret sources live; only the chart's `-sources` Roles go there. */
function validateObject (o: Obj, namespace = NS, sourceNamespaces: readonly string[] = []): string[] {
  const errors: string[] = []
  const key = `${o.apiVersion}/${o.kind}`
  const where = `${o.kind}/${o.metadata?.name}`
  const model = BUILTIN_KINDS[key]
  const crd = crdValidators.get(key)
  if (model !== undefined) {
    checkType(o, model, '', where, errors)
  } else if (crd !== undefined) {
    const { apiVersion: _a, kind: _k, metadata, spec, ...rest } = o
    for (const k of Object.keys(rest)) errors.push(`${where}.${k}: unknown top-level field`)
    checkType(metadata, 'V1ObjectMeta', '', `${where}.metadata`, errors)
    if (!crd(spec)) for (const e of crd.errors ?? []) errors.push(`${where}.spec${e.instancePath.replaceAll('/', '.')}: ${e.message ?? e.keyword}${e.params !== undefined ? ` ${JSON.stringify(e.params)}` : ''}`)
  } else {
    errors.push(`${where}: unexpected apiVersion/kind ${key}`)
  }
  const name = o.metadata?.name
  if (typeof name !== 'string' || !DNS_SUBDOMAIN.test(name) || name.length > 253) errors.push(`${where}: invalid name`)
  if (CLUSTER_SCOPED.has(o.kind)) {
    if (o.metadata?.namespace !== undefined) errors.push(`${where}: cluster-scoped object with a namespace`)
  } else if (o.metadata?.namespace !== namespace && !(/^Role(Binding)?$/.test(o.kind) && /-sources$/.test(name) && sourceNamespaces.includes(o.metadata?.namespace))) {
    errors.push(`${where}: namespace ${o.metadata?.namespace} is not the release namespace ${namespace}`)
  }
  const labels: Obj = o.metadata?.labels ?? {}
  for (const l of ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/version', 'app.kubernetes.io/managed-by', 'helm.sh/chart']) {
    if (labels[l] === undefined) errors.push(`${where}: label ${l} missing`)
  }
  const allLabels = [labels, o.spec?.template?.metadata?.labels ?? {}]
  for (const set of allLabels) {
    for (const [k, v] of Object.entries(set)) {
      if (!LABEL_NAME.test(k) || k.split('/').at(-1)!.length > 63) errors.push(`${where}: invalid label key ${k}`)
      if (typeof v !== 'string' || !LABEL_VALUE.test(v) || v.length > 63) errors.push(`${where}: invalid label value ${k}=${String(v)}`)
    }
  }
  return errors
}

function validateAll (t: Test, objs: Obj[], namespace = NS, sourceNamespaces: readonly string[] = []): void {
  t.ok(objs.length > 0, 'objects rendered')
  for (const o of objs) t.same(validateObject(o, namespace, sourceNamespaces), [], `${o.kind}/${o.metadata?.name} is a valid ${o.apiVersion} ${o.kind}`)
  const ids = objs.map(o => `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`)
  t.same(ids.filter((id, i) => ids.indexOf(id) !== i), [], 'no two objects share kind, namespace and name')
}

/** metav1.LabelSelector semantics (apimachinery labels.Selector): every term must hold. */
function selects (selector: Obj, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key)
    const value = labels[e.key]
    if (e.operator === 'In' && !(has && e.values.includes(value))) return false
    if (e.operator === 'NotIn' && has && e.values.includes(value)) return false
    if (e.operator === 'Exists' && !has) return false
    if (e.operator === 'DoesNotExist' && has) return false
  }
  return true
}

/** `--name=value` and `--name value` args → map (the chart always uses the first form). */
function flags (args: string[]): Map<string, string> {
  const out = new Map<string, string>()
  for (const a of args) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a)
    if (m !== null) out.set(m[1]!, m[2] ?? 'true')
  }
  return out
}

const container = (objs: Obj[]): Obj => get(objs, 'Deployment').spec.template.spec.containers[0]
const flag = (objs: Obj[], name: string): string | undefined => flags(container(objs).args).get(name)

// ---- renders shared by the tests (helm runs in parallel) ----

const CUSTOM_CONFIG = {
  mode: 'enforce',
  failOpen: true,
  namespaces: { selection: 'optIn', optInLabel: 'pullpin.io/inject', exclude: ['kube-*', 'legacy'], labels: { default: { 'pullpin.io/inject': 'enabled' } } },
  pullSecrets: [{ name: 'ghcr-credentials', registries: ['ghcr.io'] }],
  registry: { hosts: ['ghcr.io'] },
  checks: { exists: 'warn', pullAccess: 'warn', platforms: 'warn' },
  pinning: { enabled: false },
}
const CLUSTER_CONFIG = {
  injection: 'both',
  serviceAccounts: ['default', 'builder'],
  pullSecrets: [
    { name: 'ghcr-credentials', registries: ['ghcr.io'], source: { namespace: 'registry-credentials', name: 'ghcr' } },
    { name: 'ecr-credentials', source: { namespace: 'registry-credentials', name: 'ecr' } },
    { name: 'quay-credentials', source: { namespace: 'team-secrets', name: 'quay' } },
    { name: 'unmanaged' },
  ],
  cluster: { placeholderSecrets: true },
}
const [defaults, certManager, certManagerIssuer, provided, everything, cluster] = await Promise.all([
  render(),
  render({ certs: { mode: 'cert-manager' }, config: CUSTOM_CONFIG }),
  render({ certs: { mode: 'cert-manager', secretName: 'pullpin-serving', certManager: { issuerRef: { name: 'corp-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' } } } }),
  render({ certs: { mode: 'provided', secretName: 'my-webhook-tls', caBundle: Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n').toString('base64') } }),
  render({
    replicaCount: 1,
    image: { repository: 'registry.example.com/pullpin', tag: 'abc1234', digest: `sha256:${'a'.repeat(64)}` },
    imagePullSecrets: [{ name: 'regcred' }],
    priorityClassName: 'system-cluster-critical',
    extraVolumes: [{ name: 'registry-ca', configMap: { name: 'corp-registry-ca' } }],
    extraVolumeMounts: [{ name: 'registry-ca', mountPath: '/etc/pullpin/registry-ca', readOnly: true }],
    podAnnotations: { 'example.com/team': 'platform' },
    podLabels: { team: 'platform' },
    nodeSelector: { 'kubernetes.io/os': 'linux' },
    tolerations: [{ key: 'CriticalAddonsOnly', operator: 'Exists' }],
    affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/arch', operator: 'In', values: ['amd64', 'arm64'] }] }] } } },
    topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'DoNotSchedule', labelSelector: { matchLabels: { 'app.kubernetes.io/name': 'pullpin' } } }],
    serviceAccount: { create: true, name: 'webhook', annotations: { 'iam.gke.io/gcp-service-account': 'pullpin@proj.iam.gserviceaccount.com' } },
    webhook: {
      configurationName: 'pullpin-webhook',
      failurePolicy: 'Fail',
      timeoutSeconds: 10,
      matchConditions: [{ name: 'not-node-users', expression: "!request.userInfo.username.startsWith('system:node:')" }],
      objectSelector: { matchExpressions: [{ key: 'pullpin.io/skip', operator: 'DoesNotExist' }] },
      excludeNamespaces: ['monitoring'],
      annotations: { 'example.com/owner': 'platform' },
    },
    shutdown: { preStopSleepSeconds: 0, delayMs: 0, terminationGracePeriodSeconds: 15 },
    logLevel: 'debug',
    config: { ...CUSTOM_CONFIG, namespaces: { ...CUSTOM_CONFIG.namespaces, optInLabel: 'example.com/pullpin' }, mode: 'audit', failOpen: false },
    serviceMonitor: { enabled: true, interval: '15s', labels: { release: 'kube-prometheus-stack' } },
    monitoring: { dashboard: { enabled: true }, prometheusRule: { enabled: true } },
    networkPolicy: {
      enabled: true,
      ingressFrom: [{ ipBlock: { cidr: '10.0.0.0/8' } }],
      egress: [{ ports: [{ port: 53, protocol: 'UDP' }, { port: 443, protocol: 'TCP' }] }],
    },
  }),
  render({ config: CLUSTER_CONFIG, rbac: { cleanupRetiredCopies: true } }),
])

t.test('the validator rejects unknown fields, wrong types and missing required fields', async t => {
  const bad = structuredClone(get(defaults, 'Deployment'))
  bad.spec.template.spec.containers[0].imagePullPolicy = 3
  bad.spec.template.spec.containers[0].ports[0].containerPort = '8443'
  bad.spec.template.spec.containers[0].readinessProbe.httpGet.paht = '/readyz'
  delete bad.spec.selector
  bad.spec.template.spec.volumes[0].configMap = ['x']
  bad.spec.strategy.rollingUpdate.maxUnavailable = 0.5
  const errors = validateObject(bad)
  for (const re of [/imagePullPolicy: expected a string/, /containerPort: expected a number/, /httpGet\.paht: unknown field in V1HTTPGetAction/, /volumes\[0\]\.configMap: expected an object/, /maxUnavailable: expected an integer or a string/, /spec\.selector: required in V1DeploymentSpec/]) {
    t.ok(errors.some(e => re.test(e)), `reported: ${re.source}`)
  }
  const webhook = structuredClone(get(defaults, 'MutatingWebhookConfiguration'))
  delete webhook.webhooks[0].sideEffects
  webhook.webhooks[0].clientConfig.caBundle = 'not base64!'
  webhook.metadata.namespace = NS
  const werrors = validateObject(webhook)
  t.ok(werrors.some(e => /sideEffects: required in V1MutatingWebhook/.test(e)), 'missing sideEffects')
  t.ok(werrors.some(e => /caBundle: expected base64/.test(e)), 'caBundle format')
  t.ok(werrors.some(e => /cluster-scoped object with a namespace/.test(e)), 'namespace on a cluster-scoped kind')
  const cert = structuredClone(get(certManager, 'Certificate', `${RELEASE}-pullpin-serving`))
  cert.spec.usages = ['server-auth']
  delete cert.spec.issuerRef
  cert.spec.dnsName = ['x']
  const cerrors = validateObject(cert)
  t.ok(cerrors.some(e => /usages\.0: must be equal to one of the allowed values/.test(e)), 'cert-manager usages enum')
  t.ok(cerrors.some(e => /must have required property/.test(e) && /issuerRef/.test(e)), 'issuerRef required')
  t.ok(cerrors.some(e => /additional properties/.test(e) && /dnsName/.test(e)), 'unknown Certificate field')
  const noLabels = structuredClone(get(defaults, 'Service'))
  delete noLabels.metadata.labels['app.kubernetes.io/instance']
  t.ok(validateObject(noLabels).some(e => /label app.kubernetes.io\/instance missing/.test(e)), 'labels are required')
})

t.test('helm lint passes for the defaults and each certificate mode', async t => {
  const modes: Array<[string, string[]]> = [
    ['defaults', []],
    ['cert-manager', ['--set', 'certs.mode=cert-manager']],
    ['provided', ['--set', 'certs.mode=provided', '--set', 'certs.secretName=tls', '--set', 'certs.caBundle=QUJD']],
  ]
  const results = await Promise.all(modes.map(([, args]) => helm(['lint', '--strict', chart, '--namespace', NS, ...args])))
  results.forEach((r, i) => {
    t.equal(r.code, 0, `helm lint --strict (${modes[i]![0]}): ${r.stdout}${r.stderr}`)
    t.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/)
  })
})

t.test('every rendered object is valid for its kind', async t => {
  t.test('defaults (self-managed certificates)', async t => validateAll(t, defaults))
  t.test('cert-manager', async t => validateAll(t, certManager))
  t.test('cert-manager with an existing issuer', async t => validateAll(t, certManagerIssuer))
  t.test('provided', async t => validateAll(t, provided))
  t.test('every option on', async t => validateAll(t, everything))
  t.test('cluster integration: sources, ServiceAccount injection, placeholders', async t => validateAll(t, cluster, NS, ['registry-credentials', 'team-secrets']))
  t.test('kinds rendered by default', async t => {
    t.same(defaults.map(o => o.kind).sort(), ['ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'Deployment', 'MutatingWebhookConfiguration', 'PodDisruptionBudget', 'Role', 'RoleBinding', 'Service', 'ServiceAccount', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding', 'ValidatingAdmissionPolicyBinding', 'ValidatingWebhookConfiguration'])
    t.same(everything.map(o => o.kind).filter(k => ['ServiceMonitor', 'NetworkPolicy', 'PodDisruptionBudget', 'PrometheusRule'].includes(k)).sort(), ['NetworkPolicy', 'PrometheusRule', 'ServiceMonitor'], 'optional objects on; no PDB with one replica')
  })
})

t.test('the Deployment is highly available and locked down', async t => {
  const d = get(defaults, 'Deployment')
  const pod = d.spec.template.spec
  const c = pod.containers[0]
  t.equal(d.spec.replicas, 3)
  t.same(d.spec.strategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } })
  t.ok(selects(d.spec.selector, d.spec.template.metadata.labels), 'the selector matches the pod template')
  const podLabels = d.spec.template.metadata.labels
  t.same(pod.topologySpreadConstraints.map((c: Obj) => c.topologyKey), ['kubernetes.io/hostname', 'topology.kubernetes.io/zone'])
  for (const tsc of pod.topologySpreadConstraints) t.ok(selects(tsc.labelSelector, podLabels), 'spread over its own pods')
  const anti = pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm
  t.equal(anti.topologyKey, 'kubernetes.io/hostname')
  t.ok(selects(anti.labelSelector, podLabels))
  const pdb = get(defaults, 'PodDisruptionBudget')
  t.equal(pdb.spec.minAvailable, 1)
  t.ok(selects(pdb.spec.selector, podLabels))

  t.same(pod.securityContext, { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } })
  t.same(c.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false, capabilities: { drop: ['ALL'] } })
  t.match(c.resources, { requests: { cpu: String, memory: String }, limits: { memory: String } })
  t.equal(c.image, 'ghcr.io/pullpin/pullpin:0.1.0', 'tag defaults to appVersion')
  t.equal(pod.priorityClassName, undefined)
  t.equal(pod.imagePullSecrets, undefined)

  // Probes hit the server's own health paths on the serving port.
  t.same(c.readinessProbe.httpGet, { path: '/readyz', port: 'https', scheme: 'HTTPS' })
  t.same(c.livenessProbe.httpGet, { path: '/healthz', port: 'https', scheme: 'HTTPS' })
  // Drain: preStop sleep, then SIGTERM → unready for --shutdown-delay-ms → in-flight reviews finish.
  t.same(c.lifecycle, { preStop: { sleep: { seconds: 5 } } })
  t.equal(flag(defaults, 'shutdown-delay-ms'), '2000')
  const deadlineMs = Number(flag(defaults, 'review-deadline-ms'))
  t.ok(pod.terminationGracePeriodSeconds * 1000 >= 5000 + 2000 + deadlineMs, 'the grace period covers preStop + shutdown delay + one review')

  const e = get(everything, 'Deployment').spec.template.spec
  t.equal(e.containers[0].image, `registry.example.com/pullpin:abc1234@sha256:${'a'.repeat(64)}`)
  t.same(e.imagePullSecrets, [{ name: 'regcred' }])
  t.equal(e.priorityClassName, 'system-cluster-critical')
  t.same(e.nodeSelector, { 'kubernetes.io/os': 'linux' })
  t.same(e.tolerations, [{ key: 'CriticalAddonsOnly', operator: 'Exists' }])
  t.ok(e.affinity.nodeAffinity !== undefined && e.affinity.podAntiAffinity === undefined, 'affinity replaces the default')
  t.equal(e.topologySpreadConstraints.length, 1)
  t.equal(e.containers[0].lifecycle, undefined, 'preStopSleepSeconds 0: no preStop hook')
  t.equal(get(everything, 'Deployment').spec.template.metadata.annotations['example.com/team'], 'platform')
  t.equal(get(everything, 'Deployment').spec.template.metadata.labels.team, 'platform')
  t.equal(e.serviceAccountName, 'webhook')
  t.same(e.volumes.at(-1), { name: 'registry-ca', configMap: { name: 'corp-registry-ca' } }, 'extraVolumes')
  t.same(e.containers[0].volumeMounts.at(-1), { name: 'registry-ca', mountPath: '/etc/pullpin/registry-ca', readOnly: true }, 'extraVolumeMounts')
})

t.test('the container is started with flags and environment pullpin serve understands', async t => {
  for (const [name, objs] of [['defaults', defaults], ['cert-manager', certManager], ['provided', provided], ['everything', everything]] as const) {
    const c = container(objs)
    t.equal(c.args[0], 'serve', `${name}: runs serve`)
    const out: string[] = []
    const err: string[] = []
    // parseArgs is strict: an unknown flag fails before --help is honoured.
    const code = await cliMain([...c.args, '--help'], { out: s => out.push(s), err: s => err.push(s), env: {} })
    t.equal(code, 0, `${name}: every flag is known: ${err.join('')}`)
    const help = out.join('')
    for (const env of c.env) t.match(help, new RegExp(`\\b${env.name}\\b`), `${name}: ${env.name} is read by pullpin serve`)
    t.notOk(c.args.some((a: string) => /^--(standalone|kubeconfig)\b/.test(a)) || c.env.some((e: Obj) => e.name === 'KUBECONFIG'), `${name}: nothing keeps pullpin from the in-cluster config`)
    t.ok(c.args.includes('--cluster'), `${name}: cluster mode is asked for (pullpin serve is standalone by default)`)
  }
  const env = Object.fromEntries(container(defaults).env.map((e: Obj) => [e.name, e]))
  t.same(env.POD_NAMESPACE.valueFrom, { fieldRef: { fieldPath: 'metadata.namespace' } }, 'namespace from the downward API')
  t.same(env.POD_NAME.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } }, 'the replica\'s Lease identity from the downward API')
  // In the pod: the kubelet sets KUBERNETES_SERVICE_HOST/PORT and mounts the token (automount on).
  t.equal(get(defaults, 'Deployment').spec.template.spec.automountServiceAccountToken, true)
  t.match(clusterChoice({ cluster: container(defaults).args.includes('--cluster') }, { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, () => true), { inCluster: { host: '10.96.0.1', port: '443' } }, 'pullpin serve connects to the cluster from the pod')
  t.equal(env.PULLPIN_SERVICE_NAME.value, get(defaults, 'Service').metadata.name, 'the certificate names the Service')
  t.equal(flag(defaults, 'log-level'), 'info')
  t.equal(flag(everything, 'log-level'), 'debug')
})

t.test('the webhook calls the server on its path and port', async t => {
  for (const objs of [defaults, certManager, provided, everything]) {
    const svc = get(objs, 'Service')
    const hook = get(objs, 'MutatingWebhookConfiguration').webhooks[0]
    const c = container(objs)
    t.same(hook.clientConfig.service, { name: svc.metadata.name, namespace: NS, path: MUTATE_PATH, port: svc.spec.ports[0].port })
    const target = svc.spec.ports[0].targetPort
    const port = c.ports.find((p: Obj) => p.name === target || p.containerPort === target)
    t.ok(port !== undefined, 'the Service targets a container port')
    t.equal(Number(flag(objs, 'port')), port.containerPort, '--port is the container port')
    t.ok(selects({ matchLabels: svc.spec.selector }, get(objs, 'Deployment').spec.template.metadata.labels), 'the Service selects the pods')
  }
})

t.test('webhook registration', async t => {
  const w = get(defaults, 'MutatingWebhookConfiguration')
  const hook = w.webhooks[0]
  t.equal(w.webhooks.length, 1)
  t.same(hook.admissionReviewVersions, ['v1'])
  t.same(hook.rules, [
    { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE', 'UPDATE'], resources: ['pods'], scope: 'Namespaced' },
    { apiGroups: [''], apiVersions: ['v1'], operations: ['UPDATE'], resources: ['pods/ephemeralcontainers'], scope: 'Namespaced' },
  ])
  t.equal(hook.failurePolicy, 'Ignore')
  t.equal(hook.sideEffects, 'NoneOnDryRun')
  t.equal(hook.timeoutSeconds, 5)
  t.equal(hook.reinvocationPolicy, 'IfNeeded')
  t.equal(hook.matchConditions, undefined)
  t.equal(flag(defaults, 'review-deadline-ms'), '4500', 'deadline = timeoutSeconds*1000 - 500')

  const e = get(everything, 'MutatingWebhookConfiguration')
  t.equal(e.metadata.name, 'pullpin-webhook')
  t.equal(e.metadata.annotations['example.com/owner'], 'platform')
  t.equal(e.webhooks[0].failurePolicy, 'Fail')
  t.equal(e.webhooks[0].timeoutSeconds, 10)
  t.equal(flag(everything, 'review-deadline-ms'), '9500')
  t.same(e.webhooks[0].matchConditions, [{ name: 'not-node-users', expression: "!request.userInfo.username.startsWith('system:node:')" }])
  t.same(e.webhooks[0].objectSelector, { matchExpressions: [{ key: 'pullpin.io/skip', operator: 'DoesNotExist' }] })
})

t.test('the workload webhook: Deployments, StatefulSets, DaemonSets, Jobs, CronJobs; Ignore, no side effects, the pod webhook\'s namespaces', async t => {
  for (const objs of [defaults, certManager, provided, everything]) {
    const v = get(objs, 'ValidatingWebhookConfiguration')
    const m = get(objs, 'MutatingWebhookConfiguration')
    const hook = v.webhooks[0]
    t.equal(v.metadata.name, m.metadata.name, 'same name as the MutatingWebhookConfiguration (another kind)')
    t.same(hook.clientConfig.service, { ...m.webhooks[0].clientConfig.service, path: VALIDATE_PATH })
    t.same(hook.clientConfig.caBundle, m.webhooks[0].clientConfig.caBundle)
    t.same(v.metadata.annotations?.['cert-manager.io/inject-ca-from'], m.metadata.annotations?.['cert-manager.io/inject-ca-from'])
    t.same(hook.rules, [
      { apiGroups: ['apps'], apiVersions: ['v1'], operations: ['CREATE', 'UPDATE'], resources: ['deployments', 'statefulsets', 'daemonsets'], scope: 'Namespaced' },
      { apiGroups: ['batch'], apiVersions: ['v1'], operations: ['CREATE', 'UPDATE'], resources: ['jobs', 'cronjobs'], scope: 'Namespaced' },
    ])
    t.same(hook.namespaceSelector, m.webhooks[0].namespaceSelector, 'the same namespaces (and self-exclusion)')
    t.equal(hook.failurePolicy, 'Ignore', 'never in the way, whatever the pod webhook\'s policy')
    t.equal(hook.sideEffects, 'None')
    t.equal(hook.timeoutSeconds, m.webhooks[0].timeoutSeconds)
  }
  const config = (objs: Obj[]): Config => parseConfig(get(objs, 'ConfigMap').data['config.yaml'], 'rendered')
  t.equal(config(defaults).cluster.validatingWebhookConfigurationName, get(defaults, 'ValidatingWebhookConfiguration').metadata.name, 'self-managed: the leader keeps its caBundle')
  t.equal(config(certManager).cluster.validatingWebhookConfigurationName, '', 'cert-manager injects it')
  const off = await render({ webhook: { workloads: { enabled: false } } })
  t.same(off.filter(o => o.kind === 'ValidatingWebhookConfiguration'), [], 'webhook.workloads.enabled: false')
  t.equal(config(off).cluster.validatingWebhookConfigurationName, '')
  t.same(get(off, 'ClusterRole').rules.filter((r: Obj) => r.resources.includes('validatingwebhookconfigurations')), [], 'and no rights on it')
})

t.test('the namespace selector takes opted-in namespaces and never the release namespace', async t => {
  const nsLabels = (name: string, extra: Record<string, string> = {}): Record<string, string> => ({ 'kubernetes.io/metadata.name': name, ...extra })
  for (const [objs, label, namespace] of [[defaults, 'pullpin.io/inject', NS], [everything, 'example.com/pullpin', NS]] as const) {
    const sel = get(objs, 'MutatingWebhookConfiguration').webhooks[0].namespaceSelector
    t.ok(selects(sel, nsLabels('team-a', { [label]: 'enabled' })), 'enabled is sent')
    t.ok(selects(sel, nsLabels('team-a', { [label]: 'audit' })), 'audit is sent')
    t.notOk(selects(sel, nsLabels('team-a', { [label]: 'disabled' })), 'disabled is not')
    t.notOk(selects(sel, nsLabels('team-a')), 'unlabelled is not')
    t.notOk(selects(sel, nsLabels(namespace, { [label]: 'enabled' })), 'the release namespace is never sent, even labelled')
    t.notOk(selects(sel, nsLabels('kube-system', { [label]: 'enabled' })), 'kube-system is never sent')
  }
  const other = await render(undefined, 'pullpin-system')
  const sel = get(other, 'MutatingWebhookConfiguration').webhooks[0].namespaceSelector
  t.notOk(selects(sel, nsLabels('pullpin-system', { 'pullpin.io/inject': 'enabled' })), 'follows --namespace')
  t.ok(selects(sel, nsLabels(NS, { 'pullpin.io/inject': 'enabled' })))
  validateAll(t, other, 'pullpin-system')
  const e = get(everything, 'MutatingWebhookConfiguration').webhooks[0].namespaceSelector
  t.notOk(selects(e, nsLabels('monitoring', { 'example.com/pullpin': 'enabled' })), 'webhook.excludeNamespaces')
  t.notOk(selects(e, nsLabels('legacy', { 'example.com/pullpin': 'enabled' })), 'literal names from config.namespaces.exclude')
  t.ok(selects(e, nsLabels('kube-flannel', { 'example.com/pullpin': 'enabled' })), 'globs stay with pullpin (selectors have no wildcard)')
})

t.test('namespaces.selection: all sends every namespace but the disabled and excluded ones', async t => {
  const all = await render({ config: { namespaces: { selection: 'all' }, registry: { hosts: ['ghcr.io'] }, checks: { platforms: 'off' } } })
  validateAll(t, all, NS)
  const sel = get(all, 'MutatingWebhookConfiguration').webhooks[0].namespaceSelector
  const ns = (name: string, extra: Record<string, string> = {}): Record<string, string> => ({ 'kubernetes.io/metadata.name': name, ...extra })
  t.ok(selects(sel, ns('team-a')), 'an unlabelled namespace is sent')
  t.ok(selects(sel, ns('team-a', { 'pullpin.io/inject': 'audit' })), 'audit is sent')
  t.notOk(selects(sel, ns('team-a', { 'pullpin.io/inject': 'disabled' })), 'disabled opts out')
  t.notOk(selects(sel, ns('kube-system')), 'kube-system is never sent')
  t.notOk(selects(sel, ns(NS)), 'nor the release namespace')
  const rules = get(all, 'ClusterRole').rules
  t.notOk(rules.some((r: Obj) => r.resources.includes('nodes')), 'checks.platforms off: no right to read Nodes')
  t.ok(get(defaults, 'ClusterRole').rules.every((r: Obj) => !r.resources.includes('nodes')), 'no registry.hosts: none either')
  const platforms = await render({ config: { registry: { hosts: ['ghcr.io'] } } })
  t.same(get(platforms, 'ClusterRole').rules.find((r: Obj) => r.resources.includes('nodes')), { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] }, 'the platform check reads Nodes')
})

t.test('the ConfigMap holds a config pullpin accepts, mounted where --config points', async t => {
  const defaultValues = parseYaml(readFileSync(join(chart, 'values.yaml'), 'utf8')).config
  const lease = (objs: Obj[]): string => get(objs, 'Role', `${RELEASE}-pullpin`).rules.find((r: Obj) => r.resources.includes('leases') && r.resourceNames !== undefined).resourceNames[0]
  for (const [name, objs, values] of [['defaults', defaults, defaultValues], ['cert-manager', certManager, CUSTOM_CONFIG], ['cluster', cluster, { ...defaultValues, ...CLUSTER_CONFIG }], ['everything', everything, undefined]] as const) {
    const cm = get(objs, 'ConfigMap', `${RELEASE}-pullpin`)
    const text = cm.data['config.yaml']
    const config = parseConfig(text, `${name} ConfigMap`) as unknown as Obj
    const { cluster: chosen, ...rest } = parseYaml(text)
    if (values !== undefined) {
      const { cluster: given = {}, ...restValues } = values as Obj
      t.same(rest, restValues, `${name}: .Values.config rendered as is`)
      t.match(chosen, given, `${name}: cluster settings from values are kept`)
    }
    // The names only the chart knows, filled in so pullpin and its RBAC agree.
    const hook = get(objs, 'MutatingWebhookConfiguration').metadata.name
    t.equal(config.cluster.webhookConfigurationName, objs === certManager ? '' : hook, `${name}: the leader patches the caBundle of this webhook configuration (none with cert-manager)`)
    t.equal(config.cluster.leaderElection.leaseName, lease(objs), `${name}: the Lease RBAC allows`)
    if (objs !== certManager) {
      t.equal(config.cluster.certificateSecret, `${RELEASE}-pullpin-tls`)
      t.same(get(objs, 'Role', `${RELEASE}-pullpin`).rules.find((r: Obj) => r.resources.includes('secrets') && r.resourceNames !== undefined)?.resourceNames, [config.cluster.certificateSecret], `${name}: the certificate Secret RBAC allows`)
    }
    const d = get(objs, 'Deployment').spec.template.spec
    const vol = d.volumes.find((v: Obj) => v.configMap?.name === cm.metadata.name)
    t.ok(vol !== undefined, 'the ConfigMap is a volume')
    const mount = d.containers[0].volumeMounts.find((m: Obj) => m.name === vol.name)
    t.equal(flag(objs, 'config'), `${mount.mountPath}/config.yaml`)
    t.equal(mount.readOnly, true)
  }
  t.equal(lease(defaults), `${RELEASE}-pullpin-leader`, 'one Lease per release')
  const overridden = await render({ config: { cluster: { webhookConfigurationName: '', leaderElection: { leaseName: 'shared' } } } })
  const o = parseYaml(get(overridden, 'ConfigMap').data['config.yaml']).cluster
  t.same([o.webhookConfigurationName, o.leaderElection.leaseName], ['', 'shared'], 'explicit values win')
  t.equal(lease(overridden), 'shared')
  t.notOk(get(overridden, 'ClusterRole').rules.some((r: Obj) => r.resources.includes('mutatingwebhookconfigurations')), 'no caBundle patching: no right to')
  t.not(get(defaults, 'Deployment').spec.template.metadata.annotations['checksum/config'],
    get(certManager, 'Deployment').spec.template.metadata.annotations['checksum/config'], 'a config change rolls the pods')
  const refused = await helm(['template', RELEASE, chart, '--set', 'config.registry.lookupBudgetMs=10'])
  t.not(refused.code, 0, 'a config the server would refuse is refused by helm')
  t.match(refused.stderr, /\/config\/registry\/lookupBudgetMs/)
})

t.test('certificate modes', async t => {
  t.test('self-managed: pullpin makes the certificate; the caBundle is left to its leader', async t => {
    const hook = get(defaults, 'MutatingWebhookConfiguration')
    t.equal(hook.webhooks[0].clientConfig.caBundle, undefined)
    t.equal(hook.metadata.annotations, undefined)
    t.equal(find(defaults, 'Certificate'), undefined)
    t.equal(flag(defaults, 'tls-cert'), undefined)
    t.equal(flag(defaults, 'certs-dir'), undefined, 'in a pod the certificate lives in a Secret, not on disk')
    const pod = get(defaults, 'Deployment').spec.template.spec
    t.same(pod.volumes.filter((v: Obj) => v.secret !== undefined), [], 'nothing to mount')
    t.equal(parseYaml(get(defaults, 'ConfigMap').data['config.yaml']).cluster.certificateSecret, `${RELEASE}-pullpin-tls`)
    const rule = get(defaults, 'ClusterRole').rules.find((r: Obj) => r.resources.includes('mutatingwebhookconfigurations'))
    t.same(rule.resourceNames, [hook.metadata.name], 'may patch its own webhook configuration only')
  })

  const tlsFiles = (objs: Obj[]): { secret: string, cert: string | undefined, key: string | undefined } => {
    const pod = get(objs, 'Deployment').spec.template.spec
    const cert = flag(objs, 'tls-cert')
    const mount = pod.containers[0].volumeMounts.find((m: Obj) => cert?.startsWith(`${m.mountPath}/`))
    const vol = pod.volumes.find((v: Obj) => v.name === mount?.name)
    t.equal(cert, `${mount?.mountPath}/tls.crt`, 'kubernetes.io/tls key tls.crt')
    t.equal(flag(objs, 'tls-key'), `${mount?.mountPath}/tls.key`, 'kubernetes.io/tls key tls.key')
    t.equal(flag(objs, 'certs-dir'), undefined)
    return { secret: vol?.secret?.secretName, cert, key: flag(objs, 'tls-key') }
  }

  t.test('cert-manager: a Certificate for the Service names, mounted, and the cainjector annotation', async t => {
    const svc = get(certManager, 'Service').metadata.name
    const serving = get(certManager, 'Certificate', `${RELEASE}-pullpin-serving`)
    t.equal(tlsFiles(certManager).secret, serving.spec.secretName)
    t.same(serving.spec.dnsNames, [svc, `${svc}.${NS}`, `${svc}.${NS}.svc`, `${svc}.${NS}.svc.cluster.local`])
    t.ok(serving.spec.usages.includes('server auth'))
    const hook = get(certManager, 'MutatingWebhookConfiguration')
    t.equal(hook.metadata.annotations['cert-manager.io/inject-ca-from'], `${NS}/${serving.metadata.name}`)
    t.equal(hook.webhooks[0].clientConfig.caBundle, undefined)
    // The issuer chain: self-signed root → CA Certificate → CA Issuer → serving Certificate.
    const caIssuer = get(certManager, 'Issuer', serving.spec.issuerRef.name)
    const ca = certManager.find(o => o.kind === 'Certificate' && o.spec.secretName === caIssuer.spec.ca.secretName)
    t.equal(ca?.spec.isCA, true)
    t.ok(get(certManager, 'Issuer', ca?.spec.issuerRef.name).spec.selfSigned !== undefined)
    t.notOk(get(certManager, 'ClusterRole').rules.some((r: Obj) => r.resources.includes('mutatingwebhookconfigurations')), 'no caBundle patching rights')

    t.same(certManagerIssuer.filter(o => o.kind === 'Issuer'), [], 'an existing issuer: none rendered')
    const c2 = get(certManagerIssuer, 'Certificate')
    t.same(c2.spec.issuerRef, { name: 'corp-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' })
    t.equal(c2.spec.secretName, 'pullpin-serving')
    t.equal(tlsFiles(certManagerIssuer).secret, 'pullpin-serving')
  })

  t.test('provided: the named Secret is mounted and the caBundle set', async t => {
    t.equal(tlsFiles(provided).secret, 'my-webhook-tls')
    t.equal(find(provided, 'Certificate'), undefined)
    t.equal(find(provided, 'Issuer'), undefined)
    const hook = get(provided, 'MutatingWebhookConfiguration').webhooks[0]
    t.match(Buffer.from(hook.clientConfig.caBundle, 'base64').toString(), /BEGIN CERTIFICATE/)
    const noSecret = await helm(['template', RELEASE, chart, '--set', 'certs.mode=provided'])
    t.not(noSecret.code, 0)
    t.match(noSecret.stderr, /certs.mode=provided needs certs.secretName/)
    const noCa = await helm(['template', RELEASE, chart, '--set', 'certs.mode=provided', '--set', 'certs.secretName=x'])
    t.not(noCa.code, 0)
    t.match(noCa.stderr, /needs certs.caBundle/)
  })
})

t.test('RBAC is least privilege, follows the config, and is bound to pullpin\'s ServiceAccount', async t => {
  for (const objs of [defaults, certManager, everything, cluster]) {
    const sa = objs.find(o => o.kind === 'ServiceAccount')?.metadata.name
    t.equal(get(objs, 'Deployment').spec.template.spec.serviceAccountName, sa)
    for (const b of objs.filter(o => o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding')) {
      t.same(b.subjects, [{ kind: 'ServiceAccount', name: sa, namespace: NS }], `${b.kind}/${b.metadata.name} binds pullpin`)
      const role = objs.find(o => o.kind === b.roleRef.kind && o.metadata.name === b.roleRef.name && o.metadata.namespace === b.metadata.namespace)
      t.ok(role !== undefined, `${b.kind}/${b.metadata.name} refers to a rendered ${b.roleRef.kind}`)
    }
    for (const role of objs.filter(o => o.kind === 'ClusterRole' || o.kind === 'Role')) {
      for (const r of role.rules) {
        for (const field of ['apiGroups', 'resources', 'verbs']) t.notOk(r[field].includes('*'), `${role.kind} ${role.metadata.name}: no wildcard ${field}`)
        t.notOk(['escalate', 'bind', 'impersonate'].some(v => r.verbs.includes(v)))
      }
    }
  }
  const grants = (objs: Obj[], kind: string, resource: string, name = `${RELEASE}-pullpin`, namespace?: string): Array<[string, string[] | undefined]> =>
    get(objs.filter(o => namespace === undefined || o.metadata.namespace === namespace), kind, name).rules
      .filter((r: Obj) => r.resources.includes(resource))
      .map((r: Obj) => [[...r.verbs].sort().join(','), r.resourceNames])

  // Defaults: no pull-secret sources, pod injection, self-managed certificates.
  t.same(grants(defaults, 'ClusterRole', 'namespaces'), [['get,list,watch', undefined]])
  t.same(grants(defaults, 'ClusterRole', 'secrets'), [], 'no pull-secret sources: no Secret rights cluster-wide')
  t.same(grants(defaults, 'ClusterRole', 'serviceaccounts'), [], 'pod injection: no ServiceAccount rights')
  t.same(grants(defaults, 'ClusterRole', 'mutatingwebhookconfigurations'), [['get,list,patch,watch', [`${RELEASE}-pullpin`]]], 'its own webhook configuration only')
  t.same(grants(defaults, 'Role', 'leases'), [['get,update', [`${RELEASE}-pullpin-leader`]], ['create', undefined]])
  t.same(grants(defaults, 'Role', 'secrets'), [['get,list,update,watch', [`${RELEASE}-pullpin-tls`]], ['create', undefined]])
  t.equal(get(defaults, 'Role').metadata.namespace, NS)
  t.same(defaults.filter(o => o.metadata.name.endsWith('-sources')), [])
  t.same(grants(certManager, 'ClusterRole', 'mutatingwebhookconfigurations'), [], 'cert-manager injects the CA: no webhook rights')
  t.same(grants(certManager, 'Role', 'secrets'), [], 'cert-manager: no certificate Secret rights')
  t.same(grants(everything, 'ClusterRole', 'mutatingwebhookconfigurations'), [['get,list,patch,watch', ['pullpin-webhook']]])
  t.same(grants(defaults, 'ClusterRole', 'pods'), [], 'pinning off: no pod rights')
  t.same(grants(await render({ config: { pinning: { enabled: true } } }), 'ClusterRole', 'pods'), [['list', undefined]], 'pinning: list pods (pins of a rollout revision already admitted)')
  t.same(grants(defaults, 'ClusterRole', 'validatingwebhookconfigurations'), [['get,list,patch,watch', [`${RELEASE}-pullpin`]]], 'the workload webhook\'s configuration only')
  t.same(grants(certManager, 'ClusterRole', 'validatingwebhookconfigurations'), [])
  // Findings: Events by default (create, and patch of a series), PolicyReports only when asked for.
  t.same(grants(defaults, 'ClusterRole', 'events'), [['create,patch', undefined]])
  t.same(grants(defaults, 'ClusterRole', 'policyreports'), [])
  t.same(grants(defaults, 'ClusterRole', 'deployments'), [])
  const reports = await render({ config: { reports: { events: false, policyReports: true } } })
  t.same(grants(reports, 'ClusterRole', 'events'), [], 'reports.events: false')
  t.same(grants(reports, 'ClusterRole', 'policyreports'), [['create,get,list,update', undefined]])
  for (const r of ['deployments', 'replicasets', 'statefulsets', 'daemonsets', 'jobs', 'cronjobs']) t.same(grants(reports, 'ClusterRole', r), [['get', undefined]], `${r}: read by name (is it gone?)`)

  // Sources, ServiceAccount injection, placeholders and cleanup.
  t.same(grants(cluster, 'ClusterRole', 'secrets'), [
    ['delete,get,list,update,watch', ['ghcr-credentials', 'ecr-credentials', 'quay-credentials']],
    ['create', undefined],
    ['list,update,watch', undefined],
    ['delete,list', undefined],
  ], 'copies by name; placeholders and retired-copy cleanup need Secrets cluster-wide, and only when turned on')
  t.same(grants(cluster, 'ClusterRole', 'serviceaccounts'), [['get,list,patch,watch', ['default', 'builder']]])
  t.same(grants(cluster, 'Role', 'secrets', `${RELEASE}-pullpin-sources`, 'registry-credentials'), [['get,list,watch', ['ghcr', 'ecr']]], 'sources are read-only, by name')
  t.same(grants(cluster, 'Role', 'secrets', `${RELEASE}-pullpin-sources`, 'team-secrets'), [['get,list,watch', ['quay']]])

  const off = await render({ rbac: { create: false }, serviceAccount: { create: false, name: 'existing' } })
  t.same(off.filter(o => /Role|ServiceAccount/.test(o.kind)).map(o => o.kind), [])
  t.equal(get(off, 'Deployment').spec.template.spec.serviceAccountName, 'existing')
})

t.test('ServiceMonitor and NetworkPolicy', async t => {
  const sm = get(everything, 'ServiceMonitor')
  const svc = get(everything, 'Service')
  t.ok(selects(sm.spec.selector, svc.metadata.labels), 'selects the Service')
  t.same(sm.spec.namespaceSelector, { matchNames: [NS] })
  t.match(sm.spec.endpoints[0], { port: svc.spec.ports[0].name, scheme: 'https', path: '/metrics', interval: '15s' })
  t.equal(sm.metadata.labels.release, 'kube-prometheus-stack')
  const np = get(everything, 'NetworkPolicy')
  t.ok(selects(np.spec.podSelector, get(everything, 'Deployment').spec.template.metadata.labels))
  t.same(np.spec.policyTypes, ['Ingress', 'Egress'])
  t.same(np.spec.ingress, [{ ports: [{ port: 'https', protocol: 'TCP' }], from: [{ ipBlock: { cidr: '10.0.0.0/8' } }] }])
  t.equal(find(defaults, 'ServiceMonitor'), undefined)
  t.equal(find(defaults, 'NetworkPolicy'), undefined)
})

t.test('values.schema.json', async t => {
  t.equal(readFileSync(VALUES_SCHEMA_PATH, 'utf8'), renderValuesSchema(), 'up to date with src/policy/config-schema.ts: run npx tsx scripts/gen-chart-schema.ts')
  const schema = JSON.parse(readFileSync(VALUES_SCHEMA_PATH, 'utf8'))
  const { $id: _id, ...serverSchema } = configSchema
  const { description: _d, ...embedded } = schema.properties.config
  t.same(embedded, JSON.parse(JSON.stringify(serverSchema)), '`config` is the server\'s schema')

  // Every value in values.yaml is declared, down to the leaves of closed objects.
  const undeclared: string[] = []
  const walk = (value: unknown, s: Obj | undefined, path: string): void => {
    if (s === undefined) { undeclared.push(path); return }
    if (!isPlainObject(value) || s.properties === undefined) return
    for (const [k, v] of Object.entries(value)) {
      const sub = s.properties[k] ?? (isPlainObject(s.additionalProperties) ? s.additionalProperties : undefined)
      walk(v, sub, `${path}.${k}`)
    }
  }
  walk(parseYaml(readFileSync(join(chart, 'values.yaml'), 'utf8')), schema, '')
  t.same(undeclared, [])
  const closedMissing: string[] = []
  const closed = (s: Obj, path: string): void => {
    if (s.properties !== undefined && s.additionalProperties !== false && path !== '.config.namespaces.labels') closedMissing.push(path)
    for (const [k, v] of Object.entries(s.properties ?? {})) closed(v as Obj, `${path}.${k}`)
  }
  closed(schema, '')
  t.same(closedMissing, [], 'every object with declared keys refuses unknown keys')

  const bad: Array<[string[], RegExp]> = [
    [['--set', 'replicaCount=three'], /replicaCount/],
    [['--set', 'certs.mode=vault'], /certs\/mode/],
    [['--set', 'webhook.timeoutSeconds=31'], /timeoutSeconds/],
    [['--set', 'webhook.failurePolicy=ignore'], /failurePolicy/],
    [['--set', 'replicas=2'], /replicas/],
    [['--set', 'config.mode=block'], /config\/mode/],
    [['--set', 'config.namespaces.optinLabel=x'], /optinLabel/],
  ]
  const results = await Promise.all(bad.map(([args]) => helm(['template', RELEASE, chart, ...args])))
  results.forEach((r, i) => {
    t.not(r.code, 0, `refused: ${bad[i]![0].join(' ')}`)
    t.match(r.stderr, bad[i]![1])
  })
})

// ---- the rendered command, run for real ----

interface Started { proc: ChildProcess, port: number, logs: string[] }

/** Runs `pullpin serve` with the container's args and env, with in-pod paths mapped to local files. */
async function startRendered (objs: Obj[], files: Record<string, string>, dir: string): Promise<Started> {
  const c = container(objs)
  // No cluster here: the rendered flags minus --cluster, the rest exactly as the pod gets them.
  const args = (c.args as string[]).filter(a => a !== '--cluster').map(a => {
    const m = /^--([a-z-]+)=(.*)$/.exec(a)
    if (m === null) return a
    if (m[1] === 'port') return '--port=0'
    if (m[1] === 'shutdown-delay-ms') return '--shutdown-delay-ms=100'
    return files[m[2]!] !== undefined ? `--${m[1]}=${files[m[2]!]}` : a
  })
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: dir }
  const downward: Record<string, string> = { 'metadata.namespace': NS, 'metadata.name': `${RELEASE}-pullpin-7d9f8c6b5-x2x4q` }
  for (const e of c.env as Obj[]) env[e.name] = e.value ?? downward[e.valueFrom?.fieldRef?.fieldPath] ?? ''
  const proc = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(root, 'src', 'cli.ts'), ...args, '--host=127.0.0.1'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
  const logs: string[] = []
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pullpin did not start: ${logs.join('\n')}`)), 30_000)
    let buf = ''
    proc.stdout.on('data', (chunk: Buffer) => {
      buf += chunk.toString()
      let nl
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        logs.push(line)
        const url = /"url":"https:\/\/[^"]*:(\d+)"/.exec(line)
        if (url !== null) { clearTimeout(timer); resolve(Number(url[1])) }
      }
    })
    proc.stderr.on('data', (chunk: Buffer) => logs.push(chunk.toString()))
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`pullpin exited ${code}: ${logs.join('\n')}`)) })
  })
  return { proc, port, logs }
}

async function stop (s: Started): Promise<number | null> {
  if (s.proc.exitCode !== null) return s.proc.exitCode
  const exited = new Promise<number | null>(resolve => s.proc.once('exit', code => resolve(code)))
  s.proc.kill('SIGTERM')
  return await exited
}

t.test('the rendered container starts and serves the webhook, probes and metrics', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-chart-run-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const review = await readFile(join(root, 'examples', 'admission-review.json'), 'utf8')
  const svc = get(certManager, 'Service').metadata.name
  const serverName = `${svc}.${NS}.svc`

  // Self-managed: the certificate pullpin makes must carry the Service's in-cluster name.
  const selfManaged = await render({ config: CUSTOM_CONFIG })
  const configFile = join(dir, 'config.yaml')
  await writeFile(configFile, get(selfManaged, 'ConfigMap').data['config.yaml'])
  const certsDir = join(dir, 'certs')
  const exercise = async (t: Test, objs: Obj[], s: Started, ca: string): Promise<void> => {
    const agent = new Agent({ connect: { ca, servername: serverName } })
    t.teardown(() => agent.close())
    const base = `https://127.0.0.1:${s.port}`
    const c = container(objs)
    for (const probe of [c.readinessProbe, c.livenessProbe]) {
      const res = await request(base + probe.httpGet.path, { dispatcher: agent })
      t.equal(res.statusCode, 200, `${probe.httpGet.path} over TLS verified for ${serverName}`)
      await res.body.dump()
    }
    const hook = get(objs, 'MutatingWebhookConfiguration').webhooks[0]
    const res = await request(base + hook.clientConfig.service.path, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body: review })
    const body = await res.body.json() as Obj
    t.equal(res.statusCode, 200)
    t.equal(body.response.uid, JSON.parse(review).request.uid)
    t.same(JSON.parse(Buffer.from(body.response.patch, 'base64').toString()), [{ op: 'add', path: '/spec/imagePullSecrets', value: [{ name: 'ghcr-credentials' }] }], 'the ConfigMap\'s config is the one served')
    const metrics = await request(`${base}/metrics`, { dispatcher: agent })
    t.match(await metrics.body.text(), /pullpin_secrets_injected_total\{secret="ghcr-credentials",dry_run="false"\} 1/)
    const wrong = new Agent({ connect: { ca, servername: `other.${NS}.svc` } })
    await t.rejects(request(`${base}/healthz`, { dispatcher: wrong }), 'another name is not in the certificate')
    await wrong.close()
  }

  // No cluster here (no KUBERNETES_SERVICE_HOST): standalone, the certificate is made in <cwd>/certs.
  const first = await startRendered(selfManaged, { '/etc/pullpin/config/config.yaml': configFile }, dir)
  try {
    await exercise(t, selfManaged, first, await readFile(join(certsDir, 'ca.crt'), 'utf8'))
  } finally {
    t.equal(await stop(first), 0, 'SIGTERM: clean exit')
  }

  // cert-manager / provided: the mounted kubernetes.io/tls Secret, played by the files above.
  const tlsDir = join(dir, 'tls')
  await mkdir(tlsDir)
  await copyFile(join(certsDir, 'tls.crt'), join(tlsDir, 'tls.crt'))
  await copyFile(join(certsDir, 'tls.key'), join(tlsDir, 'tls.key'))
  const second = await startRendered(certManager, { '/etc/pullpin/config/config.yaml': configFile, '/etc/pullpin/tls/tls.crt': join(tlsDir, 'tls.crt'), '/etc/pullpin/tls/tls.key': join(tlsDir, 'tls.key') }, dir)
  try {
    t.match(second.logs.join('\n'), /certificate files/, 'serves the mounted files')
    await exercise(t, certManager, second, await readFile(join(certsDir, 'ca.crt'), 'utf8'))
  } finally {
    t.equal(await stop(second), 0)
  }
})

t.test('budgets: helm refuses a webhook timeout the review budgets cannot fit (issue 11 item 6)', async t => {
  const refuse = async (values: Obj, why: RegExp) => {
    const r = await helm(['template', RELEASE, chart, '--namespace', NS, ...await valuesArgs(values)])
    t.not(r.code, 0, `refused: ${JSON.stringify(values)}`)
    t.match(r.stderr, why)
  }
  // The issue's case: timeoutSeconds 2 → a 1500 ms review deadline, shorter than the 2000 ms lookup budget.
  await refuse({ webhook: { timeoutSeconds: 2 }, config: { registry: { hosts: ['ghcr.io'] }, pinning: { enabled: true } } },
    /webhook\.timeoutSeconds 2 gives a review deadline of 1500 ms, too short for .*lookupBudgetMs \(2000 ms/)
  // Copy creation (3 s) then lookups (2 s) in the default 4.5 s deadline.
  const source = { pullSecrets: [{ name: 'ghcr', registries: ['ghcr.io'], source: { namespace: 'platform', name: 'ghcr' } }] }
  await refuse({ config: { ...source, registry: { hosts: ['ghcr.io'] }, cluster: { copyCreateBudgetMs: 3000 } } },
    /copyCreateBudgetMs \(3000 ms.*lookupBudgetMs \(2000 ms/)
  // What fits renders, with the deadline the server checks against.
  const fits = await render({ webhook: { timeoutSeconds: 3 }, config: { registry: { hosts: ['ghcr.io'] }, pinning: { enabled: true } } })
  t.equal(flag(fits, 'review-deadline-ms'), '2500')
  const defaultsWithCopies = await render({ config: { ...source, registry: { hosts: ['ghcr.io'] }, pinning: { enabled: true } } })
  t.equal(flag(defaultsWithCopies, 'review-deadline-ms'), '4500', 'the default budgets fit the default timeout')
  const tight = await render({ webhook: { timeoutSeconds: 2 }, config: { registry: { hosts: ['ghcr.io'], lookupBudgetMs: 1000 }, pinning: { enabled: true } } })
  t.equal(flag(tight, 'review-deadline-ms'), '1500', 'a smaller lookup budget fits a 2 s timeout')
  // No registry contacted (no hosts, or pinning and every check off): no registry budget.
  t.equal(flag(await render({ webhook: { timeoutSeconds: 2 } }), 'review-deadline-ms'), '1500')
  t.equal(flag(await render({ webhook: { timeoutSeconds: 2 }, config: { registry: { hosts: ['ghcr.io'] }, checks: { exists: 'off', pullAccess: 'off', platforms: 'off' } } }), 'review-deadline-ms'), '1500')
})

t.test('fetched credentials (issue 17): ecr/exec sources get copy rights but no source Role; IRSA, Workload Identity, plugin volume', async t => {
  const objs = await render({
    serviceAccount: { awsRoleArn: 'arn:aws:iam::123456789012:role/pullpin-ecr', gcpServiceAccount: 'pullpin@proj.iam.gserviceaccount.com', annotations: { extra: 'kept' } },
    credentialProviders: { volume: { hostPath: { path: '/etc/kubernetes/credential-providers' } }, mountPath: '/plugins' },
    config: {
      pullSecrets: [
        { name: 'ecr-credentials', registries: ['*.dkr.ecr.*.amazonaws.com'], source: { ecr: { region: 'eu-west-1', registryIds: ['123456789012'] } } },
        { name: 'acr-credentials', registries: ['*.azurecr.io'], source: { exec: { command: '/plugins/acr-credential-provider', images: ['myreg.azurecr.io/x'] } } },
      ],
    },
  })
  validateAll(t, objs)
  t.same(get(objs, 'ServiceAccount').metadata.annotations, {
    extra: 'kept',
    'eks.amazonaws.com/role-arn': 'arn:aws:iam::123456789012:role/pullpin-ecr',
    'iam.gke.io/gcp-service-account': 'pullpin@proj.iam.gserviceaccount.com',
  })
  const pod = get(objs, 'Deployment').spec.template.spec
  t.same(pod.volumes.find((v: Obj) => v.name === 'credential-providers'), { name: 'credential-providers', hostPath: { path: '/etc/kubernetes/credential-providers' } })
  t.same(pod.containers[0].volumeMounts.find((v: Obj) => v.name === 'credential-providers'), { name: 'credential-providers', mountPath: '/plugins', readOnly: true })
  const secretRules = get(objs, 'ClusterRole').rules.filter((r: Obj) => r.resources.includes('secrets'))
  t.same(secretRules[0].resourceNames, ['ecr-credentials', 'acr-credentials'], 'the copies are written by name')
  t.same(objs.filter(o => o.metadata.name.endsWith('-sources')), [], 'no source Secret to read')

  const plain = await render()
  t.notOk(get(plain, 'Deployment').spec.template.spec.volumes.some((v: Obj) => v.name === 'credential-providers'), 'no plugin volume by default')
  const bad = await helm(['template', RELEASE, chart, ...await valuesArgs({ serviceAccount: { awsRoleArn: 'not-an-arn' } })])
  t.not(bad.code, 0, 'a malformed role ARN is refused')
})

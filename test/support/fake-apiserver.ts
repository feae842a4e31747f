// In-test Kubernetes API server for the cluster code's tests: no kube-apiserver can run on the test
// machines, so this speaks the real REST paths, list/watch protocol and optimistic-concurrency rules
// for the handful of resources pullpin touches. Rules follow the Kubernetes API concepts page
// ("Efficient detection of changes", "Resource versions", "Retrieving large results sets in chunks",
// "Dry-run") and the API conventions (Status objects, 409/410 semantics). Where the real server is
// more elaborate (strategic merge, server-side apply, namespace finalization) the simplification is
// written next to the code.
import { randomBytes, randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { KubeConfig } from '@kubernetes/client-node'
import jsonpatch from 'fast-json-patch'
import type { Operation } from 'fast-json-patch'
import YAML from 'yaml'

// ---------------------------------------------------------------------------------------------
// Public API

export interface ObjectPath {
  group?: string
  version?: string
  resource: string
  namespace?: string
  name: string
}

export interface LoggedRequest {
  method: string
  path: string
  /** raw query string without the leading '?' */
  query: string
  /** Content-Type header as sent, if any */
  contentType?: string
  /** parsed request body (JSON or YAML), if any */
  body?: unknown
}

export interface FakeApiServerOptions {
  /** bearer token every request must carry; kubeConfig()/kubeconfigYaml() embed it. Default 'fake-apiserver-token'. */
  token?: string
  /** namespaces that exist at start, like a fresh cluster. Default ['default', 'kube-public', 'kube-system']. */
  namespaces?: string[]
  /** how often a watch with allowWatchBookmarks=true gets a BOOKMARK (the real server: about a minute). Default 1000. */
  bookmarkIntervalMs?: number
}

export interface FakeApiServer {
  /** http://127.0.0.1:PORT; stays the same across pause()/resume() */
  url: string
  /** a KubeConfig (cluster with insecure-skip-tls-verify, token user, context) pointing at the server */
  kubeConfig(): KubeConfig
  /** the same as a kubeconfig file body */
  kubeconfigYaml(): string
  /** store an object directly, bypassing validation (defaults still apply); emits ADDED/MODIFIED to watchers */
  seed(obj: object): any
  get(path: ObjectPath): any | undefined
  list(resource: string, namespace?: string): any[]
  /** every request received, in order */
  requests: LoggedRequest[]
  /** current global resourceVersion */
  resourceVersion(): string
  /** forget the event history: a watch from an older resourceVersion gets a 410 Expired ERROR event,
   *  an exact list or a continue token from before it gets HTTP 410 */
  compact(): void
  /** end every open watch stream cleanly (as the real server does at its request timeout) */
  closeWatches(): void
  /** number of open watch streams, optionally for one resource */
  watchCount(resource?: string): number
  /** resolves once at least `count` watches on `resource` are open */
  waitForWatches(resource: string, count?: number, timeoutMs?: number): Promise<void>
  /** close the listener and every socket; resume() listens again on the same port */
  pause(): Promise<void>
  resume(): Promise<void>
  /** answer the next `times` requests whose method matches (or '*') and whose path starts with
   *  pathPrefix with a Status error of that HTTP code */
  failNext(method: string, pathPrefix: string, status: number, times?: number): void
  stop(): Promise<void>
}

// ---------------------------------------------------------------------------------------------
// Resource types

type KObj = { apiVersion?: string; kind?: string; metadata: Record<string, any>; [key: string]: any }

interface ResourceDef {
  group: string
  version: string
  resource: string
  singular: string
  kind: string
  namespaced: boolean
  shortNames?: string[]
  /** metadata.name rule: DNS-1123 subdomain for most kinds, DNS-1123 label for namespaces */
  nameRule: 'subdomain' | 'label'
  /** extra fieldSelector fields besides metadata.name / metadata.namespace */
  fields?: Record<string, (obj: KObj) => string | undefined>
  /** decode-level checks (the real server answers these with 400 BadRequest) */
  decode?: (obj: KObj) => string | undefined
  /** server-side defaulting and conversion, mutates obj */
  defaults?: (obj: KObj) => void
  /** validation; returns field errors (422 Invalid) */
  validate?: (obj: KObj, old: KObj | undefined) => FieldError[]
}

interface FieldError {
  type: 'FieldValueRequired' | 'FieldValueInvalid' | 'FieldValueNotSupported' | 'FieldValueForbidden' | 'FieldValueTooLong' | 'FieldValueDuplicate'
  field: string
  message: string
}

const apiVersionOf = (def: ResourceDef): string => (def.group ? `${def.group}/${def.version}` : def.version)
const qualifiedResource = (def: ResourceDef): string => (def.group ? `${def.resource}.${def.group}` : def.resource)
const qualifiedKind = (def: ResourceDef): string => (def.group ? `${def.kind}.${def.group}` : def.kind)

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/
// ConfigMap/Secret keys: k8s.io/apimachinery validation IsConfigMapKey
const DATA_KEY = /^[-._a-zA-Z0-9]+$/
// Secrets and ConfigMaps are capped at 1 MiB (validation.MaxSecretSize)
const MAX_DATA_BYTES = 1024 * 1024

function checkDataMaps(obj: KObj, fields: string[]): FieldError[] {
  const errs: FieldError[] = []
  let total = 0
  const seen = new Set<string>()
  for (const f of fields) {
    const m = obj[f]
    if (m === undefined || m === null) continue
    for (const [k, v] of Object.entries(m as Record<string, unknown>)) {
      if (!DATA_KEY.test(k)) {
        errs.push({ type: 'FieldValueInvalid', field: `${f}[${k}]`, message: `Invalid value: "${k}": a valid config key must consist of alphanumeric characters, '-', '_' or '.'` })
      }
      if (seen.has(k)) errs.push({ type: 'FieldValueInvalid', field: `${f}[${k}]`, message: `Invalid value: "${k}": duplicate of key present in ${fields[0]}` })
      seen.add(k)
      total += typeof v === 'string' ? (f === 'data' && obj.kind === 'Secret' ? Math.floor((v.length * 3) / 4) : Buffer.byteLength(v)) : 0
    }
  }
  if (total > MAX_DATA_BYTES) errs.push({ type: 'FieldValueTooLong', field: fields[0] ?? 'data', message: `Too long: must have at most ${MAX_DATA_BYTES} bytes` })
  return errs
}

// metav1.MicroTime is marshalled and parsed with the layout 2006-01-02T15:04:05.000000Z07:00: the real
// server refuses a JSON Date with millisecond precision (what a plain JS Date serialises to).
const MICROTIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$/

const RESOURCES: ResourceDef[] = [
  {
    group: '', version: 'v1', resource: 'namespaces', singular: 'namespace', kind: 'Namespace', namespaced: false, shortNames: ['ns'], nameRule: 'label',
    fields: { 'status.phase': (o) => o.status?.phase },
    defaults(obj) {
      // Since 1.21 the apiserver labels every namespace with its own name.
      obj.metadata.labels = { ...(obj.metadata.labels ?? {}), 'kubernetes.io/metadata.name': obj.metadata.name }
      obj.spec = { finalizers: ['kubernetes'], ...(obj.spec ?? {}) }
      obj.status = { phase: 'Active', ...(obj.status ?? {}) }
    },
  },
  {
    group: '', version: 'v1', resource: 'secrets', singular: 'secret', kind: 'Secret', namespaced: true, nameRule: 'subdomain',
    fields: { type: (o) => o.type },
    decode(obj) {
      for (const [k, v] of Object.entries((obj.data ?? {}) as Record<string, unknown>)) {
        if (typeof v !== 'string' || !BASE64.test(v)) return `Secret in version "v1" cannot be handled as a Secret: illegal base64 data in data[${k}]`
      }
      return undefined
    },
    defaults(obj) {
      // stringData is write-only: the server folds it into data (overwriting) and drops it.
      if (obj.stringData && typeof obj.stringData === 'object') {
        obj.data = { ...(obj.data ?? {}) }
        for (const [k, v] of Object.entries(obj.stringData as Record<string, string>)) obj.data[k] = Buffer.from(String(v)).toString('base64')
      }
      delete obj.stringData
      if (!obj.type) obj.type = 'Opaque'
    },
    validate(obj, old) {
      const errs = checkDataMaps(obj, ['data'])
      if (obj.type === 'kubernetes.io/dockerconfigjson' && !(obj.data ?? {})['.dockerconfigjson']) {
        errs.push({ type: 'FieldValueRequired', field: 'data[.dockerconfigjson]', message: 'Required value' })
      }
      if (old) {
        if (old.type !== obj.type) errs.push({ type: 'FieldValueInvalid', field: 'type', message: `Invalid value: "${obj.type}": field is immutable` })
        if (old.immutable === true) {
          if (obj.immutable !== true) errs.push({ type: 'FieldValueForbidden', field: 'immutable', message: 'Forbidden: field is immutable when `immutable` is set' })
          if (stableStringify(obj.data ?? {}) !== stableStringify(old.data ?? {})) errs.push({ type: 'FieldValueForbidden', field: 'data', message: 'Forbidden: field is immutable when `immutable` is set' })
        }
      }
      return errs
    },
  },
  { group: '', version: 'v1', resource: 'serviceaccounts', singular: 'serviceaccount', kind: 'ServiceAccount', namespaced: true, shortNames: ['sa'], nameRule: 'subdomain' },
  {
    group: '', version: 'v1', resource: 'configmaps', singular: 'configmap', kind: 'ConfigMap', namespaced: true, shortNames: ['cm'], nameRule: 'subdomain',
    validate(obj, old) {
      const errs = checkDataMaps(obj, ['data', 'binaryData'])
      if (old?.immutable === true && stableStringify([obj.data, obj.binaryData]) !== stableStringify([old.data, old.binaryData])) {
        errs.push({ type: 'FieldValueForbidden', field: 'data', message: 'Forbidden: field is immutable when `immutable` is set' })
      }
      return errs
    },
  },
  {
    group: 'coordination.k8s.io', version: 'v1', resource: 'leases', singular: 'lease', kind: 'Lease', namespaced: true, nameRule: 'subdomain',
    decode(obj) {
      for (const f of ['acquireTime', 'renewTime']) {
        const v = obj.spec?.[f]
        if (v !== undefined && v !== null && (typeof v !== 'string' || !MICROTIME.test(v))) {
          return `Lease in version "v1" cannot be handled as a Lease: parsing time ${JSON.stringify(v)} as "2006-01-02T15:04:05.000000Z07:00": cannot parse as RFC3339 with microseconds`
        }
      }
      return undefined
    },
    validate(obj) {
      const errs: FieldError[] = []
      const d = obj.spec?.leaseDurationSeconds
      if (d !== undefined && d !== null && !(Number.isInteger(d) && d > 0)) errs.push({ type: 'FieldValueInvalid', field: 'spec.leaseDurationSeconds', message: `Invalid value: ${d}: must be greater than 0` })
      const tr = obj.spec?.leaseTransitions
      if (tr !== undefined && tr !== null && !(Number.isInteger(tr) && tr >= 0)) errs.push({ type: 'FieldValueInvalid', field: 'spec.leaseTransitions', message: `Invalid value: ${tr}: must be greater than or equal to 0` })
      return errs
    },
  },
  {
    group: 'admissionregistration.k8s.io', version: 'v1', resource: 'mutatingwebhookconfigurations', singular: 'mutatingwebhookconfiguration', kind: 'MutatingWebhookConfiguration', namespaced: false, nameRule: 'subdomain',
    decode(obj) {
      for (const [i, w] of ((obj.webhooks ?? []) as any[]).entries()) {
        const ca = w?.clientConfig?.caBundle
        if (ca !== undefined && ca !== null && (typeof ca !== 'string' || !BASE64.test(ca))) {
          return `MutatingWebhookConfiguration in version "v1" cannot be handled as a MutatingWebhookConfiguration: illegal base64 data in webhooks[${i}].clientConfig.caBundle`
        }
      }
      return undefined
    },
    // Defaults from k8s.io/kubernetes/pkg/apis/admissionregistration/v1/defaults.go.
    defaults(obj) {
      for (const w of (obj.webhooks ?? []) as any[]) {
        if (!w || typeof w !== 'object') continue
        w.failurePolicy ??= 'Fail'
        w.matchPolicy ??= 'Equivalent'
        w.namespaceSelector ??= {}
        w.objectSelector ??= {}
        w.timeoutSeconds ??= 10
        w.reinvocationPolicy ??= 'Never'
        if (w.clientConfig?.service) w.clientConfig.service.port ??= 443
        for (const r of (w.rules ?? []) as any[]) if (r && typeof r === 'object') r.scope ??= '*'
      }
    },
    // The subset of ValidateMutatingWebhookConfiguration that a webhook installer can trip over.
    validate(obj) {
      const errs: FieldError[] = []
      const names = new Set<string>()
      for (const [i, w] of ((obj.webhooks ?? []) as any[]).entries()) {
        const p = `webhooks[${i}]`
        if (!w?.name) errs.push({ type: 'FieldValueRequired', field: `${p}.name`, message: 'Required value' })
        else {
          if (String(w.name).split('.').length < 3 || !isDnsSubdomain(String(w.name))) errs.push({ type: 'FieldValueInvalid', field: `${p}.name`, message: `Invalid value: "${w.name}": should be a domain with at least three segments separated by dots` })
          if (names.has(w.name)) errs.push({ type: 'FieldValueDuplicate', field: `${p}.name`, message: `Duplicate value: "${w.name}"` })
          names.add(w.name)
        }
        const cc = w?.clientConfig ?? {}
        if ((cc.url ? 1 : 0) + (cc.service ? 1 : 0) !== 1) errs.push({ type: 'FieldValueRequired', field: `${p}.clientConfig`, message: 'Required value: exactly one of url or service is required' })
        if (cc.service && (!cc.service.name || !cc.service.namespace)) errs.push({ type: 'FieldValueRequired', field: `${p}.clientConfig.service`, message: 'Required value: service name and namespace are required' })
        if (cc.url && !String(cc.url).startsWith('https://')) errs.push({ type: 'FieldValueInvalid', field: `${p}.clientConfig.url`, message: `Invalid value: "${cc.url}": 'https' is the only allowed URL scheme` })
        if (!w?.sideEffects) errs.push({ type: 'FieldValueRequired', field: `${p}.sideEffects`, message: 'Required value: must specify one of None, NoneOnDryRun' })
        else if (!['None', 'NoneOnDryRun'].includes(w.sideEffects)) errs.push({ type: 'FieldValueNotSupported', field: `${p}.sideEffects`, message: `Unsupported value: "${w.sideEffects}": supported values: "None", "NoneOnDryRun"` })
        const arv = w?.admissionReviewVersions
        if (!Array.isArray(arv) || arv.length === 0) errs.push({ type: 'FieldValueRequired', field: `${p}.admissionReviewVersions`, message: 'Required value: must specify one of v1, v1beta1' })
        else if (!arv.some((v: unknown) => v === 'v1' || v === 'v1beta1')) errs.push({ type: 'FieldValueInvalid', field: `${p}.admissionReviewVersions`, message: 'Invalid value: must include at least one of v1, v1beta1' })
        if (w?.failurePolicy && !['Ignore', 'Fail'].includes(w.failurePolicy)) errs.push({ type: 'FieldValueNotSupported', field: `${p}.failurePolicy`, message: `Unsupported value: "${w.failurePolicy}": supported values: "Fail", "Ignore"` })
        const ts = w?.timeoutSeconds
        if (typeof ts === 'number' && (ts < 1 || ts > 30)) errs.push({ type: 'FieldValueInvalid', field: `${p}.timeoutSeconds`, message: `Invalid value: ${ts}: the timeout value must be between 1 and 30 seconds` })
        if (w?.reinvocationPolicy && !['Never', 'IfNeeded'].includes(w.reinvocationPolicy)) errs.push({ type: 'FieldValueNotSupported', field: `${p}.reinvocationPolicy`, message: `Unsupported value: "${w.reinvocationPolicy}": supported values: "IfNeeded", "Never"` })
      }
      return errs
    },
  },
]

const findDef = (group: string, version: string, resource: string): ResourceDef | undefined =>
  RESOURCES.find((d) => d.group === group && d.version === version && d.resource === resource)

function defForObject(obj: KObj): ResourceDef {
  const def = RESOURCES.find((d) => apiVersionOf(d) === obj.apiVersion && d.kind === obj.kind)
  if (!def) throw new Error(`fake-apiserver: unsupported apiVersion/kind ${String(obj.apiVersion)}/${String(obj.kind)}`)
  return def
}

// ---------------------------------------------------------------------------------------------
// Status errors (API conventions: failures are v1 Status objects whose code is the HTTP code)

const REASONS: Record<number, string> = {
  400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 405: 'MethodNotAllowed', 406: 'NotAcceptable',
  409: 'Conflict', 410: 'Expired', 415: 'UnsupportedMediaType', 422: 'Invalid', 429: 'TooManyRequests', 500: 'InternalError',
  503: 'ServiceUnavailable', 504: 'Timeout',
}

class StatusError extends Error {
  constructor(readonly code: number, readonly reason: string, message: string, readonly details?: Record<string, unknown>) {
    super(message)
  }

  body(): Record<string, unknown> {
    const b: Record<string, unknown> = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: this.message, reason: this.reason }
    if (this.details) b.details = this.details
    b.code = this.code
    return b
  }
}

const resourceDetails = (def: ResourceDef, name: string): Record<string, unknown> =>
  def.group ? { name, group: def.group, kind: def.resource } : { name, kind: def.resource }

const notFound = (def: ResourceDef, name: string): StatusError =>
  new StatusError(404, 'NotFound', `${qualifiedResource(def)} "${name}" not found`, resourceDetails(def, name))

const conflict = (def: ResourceDef, name: string, why: string): StatusError =>
  new StatusError(409, 'Conflict', `Operation cannot be fulfilled on ${qualifiedResource(def)} "${name}": ${why}`, resourceDetails(def, name))

const badRequest = (message: string): StatusError => new StatusError(400, 'BadRequest', message)

function invalid(def: ResourceDef, name: string, errs: FieldError[]): StatusError {
  const parts = errs.map((e) => `${e.field}: ${e.message}`)
  const list = parts.length === 1 ? parts[0] : `[${parts.join(', ')}]`
  const details: Record<string, unknown> = { name, kind: def.kind, causes: errs.map((e) => ({ reason: e.type, message: e.message, field: e.field })) }
  if (def.group) details.group = def.group
  return new StatusError(422, 'Invalid', `${qualifiedKind(def)} "${name}" is invalid: ${list}`, details)
}

function tooOld(requested: number, oldest: number): StatusError {
  return new StatusError(410, 'Expired', `too old resource version: ${requested} (${oldest})`)
}

function tooLarge(requested: number, current: number): StatusError {
  return new StatusError(504, 'Timeout', `Too large resource version: ${requested}, current: ${current}`, {
    causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
    retryAfterSeconds: 1,
  })
}

// ---------------------------------------------------------------------------------------------
// Names, selectors and helpers

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
function isDnsSubdomain(s: string): boolean {
  return s.length > 0 && s.length <= 253 && s.split('.').every((p) => p.length <= 63 && DNS_LABEL.test(p))
}

function nameErrors(def: ResourceDef, name: string): FieldError[] {
  if (def.nameRule === 'label') {
    if (name.length > 63 || !DNS_LABEL.test(name)) {
      return [{ type: 'FieldValueInvalid', field: 'metadata.name', message: `Invalid value: "${name}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character` }]
    }
  } else if (!isDnsSubdomain(name)) {
    return [{ type: 'FieldValueInvalid', field: 'metadata.name', message: `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character` }]
  }
  return []
}

// k8s.io/apiserver/pkg/storage/names: 5 characters from an alphabet without vowels or confusable digits.
const GENERATE_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'
function generateSuffix(): string {
  return Array.from(randomBytes(5), (b) => GENERATE_ALPHABET[b % GENERATE_ALPHABET.length]).join('')
}

function nowTimestamp(): string {
  // metav1.Time is RFC 3339 with second precision on the wire.
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
}

function clone<T>(v: T): T {
  return structuredClone(v)
}

function stableStringify(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(',')}]`
  if (v && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${stableStringify(x)}`).join(',')}}`
  }
  return JSON.stringify(v) ?? 'null'
}

type LabelRequirement = { key: string; op: 'in' | 'notin' | 'exists' | '!' | 'gt' | 'lt'; values: string[] }

// Grammar of k8s.io/apimachinery/pkg/labels.Parse: comma-separated requirements of the forms
// key, !key, key=v, key==v, key!=v, key in (a,b), key notin (a,b), key>n, key<n.
export function parseLabelSelector(s: string): LabelRequirement[] {
  const tokens: string[] = []
  let i = 0
  while (i < s.length) {
    const c = s[i] as string
    if (/\s/.test(c)) { i++; continue }
    if (s.startsWith('==', i) || s.startsWith('!=', i)) { tokens.push(s.slice(i, i + 2)); i += 2; continue }
    if ('=!(),<>'.includes(c)) { tokens.push(c); i++; continue }
    const m = /^[A-Za-z0-9._/-]+/.exec(s.slice(i))
    if (!m) throw badRequest(`unable to parse requirement: found '${c}', expected: identifier`)
    tokens.push(m[0])
    i += m[0].length
  }
  const symbols = new Set(['==', '!=', '=', '!', '(', ')', ',', '<', '>'])
  const isIdent = (t: string | undefined): t is string => t !== undefined && !symbols.has(t)
  const reqs: LabelRequirement[] = []
  let p = 0
  const fail = (msg: string): never => { throw badRequest(`unable to parse requirement: ${msg}`) }
  while (p < tokens.length) {
    let req: LabelRequirement
    if (tokens[p] === '!') {
      const key = tokens[p + 1]
      if (!isIdent(key)) fail(`found '${String(key)}', expected: identifier`)
      req = { key: key as string, op: '!', values: [] }
      p += 2
    } else {
      const key = tokens[p]
      if (!isIdent(key)) fail(`found '${String(key)}', expected: !, identifier, or 'end of string'`)
      const op = tokens[p + 1]
      p += 2
      if (op === undefined || op === ',') {
        req = { key: key as string, op: 'exists', values: [] }
        p -= 1
      } else if (op === '=' || op === '==' || op === '!=') {
        let value = ''
        if (isIdent(tokens[p])) value = tokens[p++] as string
        req = { key: key as string, op: op === '!=' ? 'notin' : 'in', values: [value] }
      } else if (op === 'in' || op === 'notin') {
        if (tokens[p] !== '(') fail(`found '${String(tokens[p])}', expected: '('`)
        p++
        const values: string[] = []
        for (;;) {
          const t = tokens[p]
          if (isIdent(t)) { values.push(t); p++ } else values.push('')
          if (tokens[p] === ',') { p++; continue }
          if (tokens[p] === ')') { p++; break }
          fail(`found '${String(tokens[p])}', expected: ',' or ')'`)
        }
        req = { key: key as string, op, values }
      } else if (op === '>' || op === '<') {
        const v = tokens[p++]
        if (!isIdent(v) || !/^-?\d+$/.test(v)) fail(`for 'Gt', 'Lt' operators, the value must be an integer`)
        req = { key: key as string, op: op === '>' ? 'gt' : 'lt', values: [v as string] }
      } else {
        return fail(`found '${op}', expected: '=', '!=', '==', 'in', notin'`)
      }
    }
    reqs.push(req)
    if (p < tokens.length) {
      if (tokens[p] !== ',') fail(`found '${String(tokens[p])}', expected: ',' or 'end of string'`)
      p++
      if (p >= tokens.length) fail(`found 'end of string', expected: identifier`)
    }
  }
  return reqs
}

function labelsMatch(reqs: LabelRequirement[], labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {}
  return reqs.every((r) => {
    const has = Object.prototype.hasOwnProperty.call(l, r.key)
    const v = l[r.key]
    switch (r.op) {
      case 'exists': return has
      case '!': return !has
      case 'in': return has && r.values.includes(v as string)
      case 'notin': return !has || !r.values.includes(v as string)
      case 'gt': return has && /^-?\d+$/.test(v as string) && Number(v) > Number(r.values[0])
      case 'lt': return has && /^-?\d+$/.test(v as string) && Number(v) < Number(r.values[0])
    }
    return false
  })
}

type FieldRequirement = { field: string; value: string; negate: boolean }

function parseFieldSelector(def: ResourceDef, s: string): FieldRequirement[] {
  const out: FieldRequirement[] = []
  for (const term of s.split(',')) {
    if (term.trim() === '') continue
    const m = /^\s*([^!=\s]+)\s*(==|=|!=)\s*(.*?)\s*$/.exec(term)
    if (!m) throw badRequest(`invalid selector: '${s}'; can't understand '${term}'`)
    const field = m[1] as string
    if (field !== 'metadata.name' && field !== 'metadata.namespace' && !def.fields?.[field]) {
      throw badRequest(`field label not supported: ${field}`)
    }
    out.push({ field, value: m[3] as string, negate: m[2] === '!=' })
  }
  return out
}

function fieldsMatch(def: ResourceDef, reqs: FieldRequirement[], obj: KObj): boolean {
  return reqs.every((r) => {
    const actual = r.field === 'metadata.name' ? obj.metadata.name : r.field === 'metadata.namespace' ? (obj.metadata.namespace ?? '') : def.fields?.[r.field]?.(obj)
    return r.negate ? actual !== r.value : actual === r.value
  })
}

// RFC 7386 JSON merge patch.
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch)
  const out: Record<string, unknown> = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {}
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k]
    else out[k] = mergePatch(out[k], v)
  }
  return out
}

// Strategic merge patch is treated as a JSON merge patch (lists are replaced, not merged by key);
// its '$patch', '$retainKeys', '$setElementOrder/...' and '$deleteFromPrimitiveList/...' directives are
// dropped. Enough for the resources here, none of whose fields pullpin merges by key.
function stripDirectives(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripDirectives)
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) if (!k.startsWith('$')) out[k] = stripDirectives(x)
    return out
  }
  return v
}

function parseRv(s: string, what = 'resourceVersion'): number {
  if (!/^\d+$/.test(s)) throw badRequest(`invalid ${what}: ${JSON.stringify(s)}`)
  return Number(s)
}

const truthy = (v: string | null): boolean => v === 'true' || v === '1'

// ---------------------------------------------------------------------------------------------
// The server

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED'
interface HistoryEvent { rv: number; type: EventType; def: ResourceDef; object: KObj; prev?: KObj }

interface Watcher {
  def: ResourceDef
  namespace?: string
  labels: LabelRequirement[]
  fields: FieldRequirement[]
  res: ServerResponse
  timers: NodeJS.Timeout[]
  closed: boolean
}

interface FailRule { method: string; prefix: string; status: number; remaining: number }

const storeKey = (ns: string | undefined, name: string): string => `${ns ?? ''}/${name}`

class FakeApiServerImpl implements FakeApiServer {
  url = ''
  requests: LoggedRequest[] = []
  private readonly token: string
  private readonly bookmarkIntervalMs: number
  private readonly server: Server
  private readonly sockets = new Set<Socket>()
  private readonly watchers = new Set<Watcher>()
  private readonly store = new Map<string, Map<string, KObj>>()
  private history: HistoryEvent[] = []
  private rv = 0
  /** resourceVersion up to which history is forgotten; watches/exact lists below it get 410 */
  private compactedRv = 0
  private port = 0
  private listening = false
  private fails: FailRule[] = []

  constructor(opts: FakeApiServerOptions) {
    this.token = opts.token ?? 'fake-apiserver-token'
    this.bookmarkIntervalMs = opts.bookmarkIntervalMs ?? 1000
    for (const d of RESOURCES) this.store.set(d.resource, new Map())
    this.server = createServer((req, res) => { void this.handle(req, res) })
    this.server.on('connection', (s) => {
      this.sockets.add(s)
      s.on('close', () => this.sockets.delete(s))
    })
    for (const ns of opts.namespaces ?? ['default', 'kube-public', 'kube-system']) this.seed({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } })
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err)
      this.server.once('error', onError)
      this.server.listen(this.port, '127.0.0.1', () => {
        this.server.off('error', onError)
        resolve()
      })
    })
    this.port = (this.server.address() as AddressInfo).port
    this.url = `http://127.0.0.1:${this.port}`
    this.listening = true
  }

  // ---- test-side API -------------------------------------------------------------------------

  kubeConfig(): KubeConfig {
    const kc = new KubeConfig()
    // client-node 1.4 refuses an http:// server unless the cluster has skipTLSVerify set.
    kc.loadFromOptions({
      clusters: [{ name: 'fake-apiserver', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'fake-user', token: this.token }],
      contexts: [{ name: 'fake', cluster: 'fake-apiserver', user: 'fake-user' }],
      currentContext: 'fake',
    })
    return kc
  }

  kubeconfigYaml(): string {
    return YAML.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake-apiserver', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'fake-user', user: { token: this.token } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake-apiserver', user: 'fake-user' } }],
      'current-context': 'fake',
    })
  }

  seed(input: object): any {
    const obj = clone(input) as KObj
    const def = defForObject(obj)
    obj.metadata = obj.metadata ?? {}
    if (!obj.metadata.name) throw new Error('fake-apiserver: seed needs metadata.name')
    if (def.namespaced) obj.metadata.namespace = obj.metadata.namespace ?? 'default'
    else delete obj.metadata.namespace
    const key = storeKey(obj.metadata.namespace, obj.metadata.name)
    const prev = this.bucket(def).get(key)
    obj.metadata.uid = obj.metadata.uid ?? prev?.metadata.uid ?? randomUUID()
    obj.metadata.creationTimestamp = obj.metadata.creationTimestamp ?? prev?.metadata.creationTimestamp ?? nowTimestamp()
    obj.metadata.generation = obj.metadata.generation ?? (prev ? (prev.metadata.generation ?? 1) + 1 : 1)
    def.defaults?.(obj)
    return clone(this.commit(def, prev ? 'MODIFIED' : 'ADDED', obj, prev))
  }

  get(path: ObjectPath): any | undefined {
    const def = RESOURCES.find((d) => d.resource === path.resource && (path.group === undefined || d.group === path.group) && (path.version === undefined || d.version === path.version))
    if (!def) return undefined
    const obj = this.bucket(def).get(storeKey(def.namespaced ? (path.namespace ?? 'default') : undefined, path.name))
    return obj ? clone(obj) : undefined
  }

  list(resource: string, namespace?: string): any[] {
    const def = RESOURCES.find((d) => d.resource === resource)
    if (!def) throw new Error(`fake-apiserver: unknown resource ${resource}`)
    return this.sorted(this.bucket(def)).filter((o) => namespace === undefined || o.metadata.namespace === namespace).map((o) => clone(o))
  }

  resourceVersion(): string {
    return String(this.rv)
  }

  compact(): void {
    this.compactedRv = this.rv
    this.history = []
  }

  closeWatches(): void {
    for (const w of [...this.watchers]) this.endWatch(w)
  }

  watchCount(resource?: string): number {
    return [...this.watchers].filter((w) => !w.closed && (resource === undefined || w.def.resource === resource)).length
  }

  async waitForWatches(resource: string, count = 1, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (this.watchCount(resource) < count) {
      if (Date.now() > deadline) throw new Error(`fake-apiserver: timed out waiting for ${count} watch(es) on ${resource} (have ${this.watchCount(resource)})`)
      await new Promise((r) => setTimeout(r, 5))
    }
  }

  async pause(): Promise<void> {
    if (!this.listening) return
    this.listening = false
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    for (const w of [...this.watchers]) this.dropWatch(w)
    for (const s of this.sockets) s.destroy()
    await closed
  }

  async resume(): Promise<void> {
    if (this.listening) return
    await this.listen()
  }

  failNext(method: string, pathPrefix: string, status: number, times = 1): void {
    this.fails.push({ method: method.toUpperCase(), prefix: pathPrefix, status, remaining: times })
  }

  async stop(): Promise<void> {
    await this.pause()
  }

  // ---- storage -------------------------------------------------------------------------------

  private bucket(def: ResourceDef): Map<string, KObj> {
    return this.store.get(def.resource) as Map<string, KObj>
  }

  private sorted(m: Map<string, KObj>): KObj[] {
    return [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, o]) => o)
  }

  /** the one write path: bumps the global resourceVersion, records history, fans out to watchers */
  private commit(def: ResourceDef, type: EventType, obj: KObj, prev: KObj | undefined): KObj {
    const rv = ++this.rv
    obj.apiVersion = apiVersionOf(def)
    obj.kind = def.kind
    obj.metadata.resourceVersion = String(rv)
    const key = storeKey(obj.metadata.namespace, obj.metadata.name)
    if (type === 'DELETED') this.bucket(def).delete(key)
    else this.bucket(def).set(key, obj)
    const ev: HistoryEvent = { rv, type, def, object: clone(obj), ...(prev ? { prev: clone(prev) } : {}) }
    this.history.push(ev)
    for (const w of this.watchers) if (w.def === def) this.deliver(w, ev)
    return obj
  }

  /** the state of one resource type as of resourceVersion `at`, rebuilt by undoing later events */
  private snapshot(def: ResourceDef, at: number): Map<string, KObj> {
    const m = new Map(this.bucket(def))
    for (let i = this.history.length - 1; i >= 0; i--) {
      const ev = this.history[i] as HistoryEvent
      if (ev.rv <= at) break
      if (ev.def !== def) continue
      const key = storeKey(ev.object.metadata.namespace, ev.object.metadata.name)
      if (ev.type === 'ADDED') m.delete(key)
      else if (ev.prev) m.set(key, ev.prev)
    }
    return m
  }

  // ---- HTTP ----------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', 'http://fake')
    const method = (req.method ?? 'GET').toUpperCase()
    const contentType = req.headers['content-type']
    const entry: LoggedRequest = { method, path: u.pathname, query: u.search.replace(/^\?/, '') }
    if (contentType) entry.contentType = contentType
    this.requests.push(entry)
    try {
      const raw = await readBody(req)
      const body = raw.length > 0 ? parseBody(raw, contentType) : undefined
      if (body !== undefined) entry.body = body
      if (req.headers.authorization !== `Bearer ${this.token}`) {
        // The real server answers unauthenticated requests with a bare 401 Status.
        throw new StatusError(401, 'Unauthorized', 'Unauthorized')
      }
      const rule = this.fails.find((f) => (f.method === '*' || f.method === method) && u.pathname.startsWith(f.prefix))
      if (rule) {
        if (--rule.remaining <= 0) this.fails = this.fails.filter((f) => f !== rule)
        const reason = REASONS[rule.status] ?? 'Unknown'
        if (rule.status === 429 || rule.status === 503) res.setHeader('Retry-After', '1')
        throw new StatusError(rule.status, reason, `injected failure (${rule.status} ${reason})`)
      }
      this.route(req, res, method, u, body)
    } catch (err) {
      const se = err instanceof StatusError ? err : new StatusError(500, 'InternalError', `Internal error occurred: ${(err as Error).message}`)
      if (!res.headersSent) sendJson(res, se.code, se.body())
      else res.destroy()
    }
  }

  private route(req: IncomingMessage, res: ServerResponse, method: string, u: URL, body: unknown): void {
    const segs = u.pathname.split('/').filter((s) => s !== '')
    const q = u.searchParams
    if (method === 'GET') {
      if (u.pathname === '/version') return sendJson(res, 200, { major: '1', minor: '31', gitVersion: 'v1.31.0-fake', platform: 'linux/amd64' })
      if (['/healthz', '/readyz', '/livez'].includes(u.pathname)) {
        res.writeHead(200, { 'Content-Type': 'text/plain' })
        res.end('ok')
        return
      }
      const discovery = this.discovery(segs)
      if (discovery) return sendJson(res, 200, discovery)
    }
    let group: string
    let version: string
    let rest: string[]
    if (segs[0] === 'api' && segs.length >= 2) {
      group = ''
      version = segs[1] as string
      rest = segs.slice(2)
    } else if (segs[0] === 'apis' && segs.length >= 3) {
      group = segs[1] as string
      version = segs[2] as string
      rest = segs.slice(3)
    } else {
      throw new StatusError(404, 'NotFound', 'the server could not find the requested resource')
    }
    let def: ResourceDef | undefined
    let namespace: string | undefined
    let name: string | undefined
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = rest[1]
      def = findDef(group, version, rest[2] as string)
      name = rest[3]
      if (!def?.namespaced || rest.length > 4) def = undefined
    } else if (rest.length >= 1 && rest.length <= 2) {
      def = findDef(group, version, rest[0] as string)
      name = rest[1]
      // a namespaced resource without namespace is the all-namespaces collection; it has no items
      if (def?.namespaced && name !== undefined) def = undefined
    }
    if (!def) throw new StatusError(404, 'NotFound', 'the server could not find the requested resource')

    const dryRun = q.getAll('dryRun')
    if (dryRun.some((d) => d !== 'All')) throw badRequest(`Invalid dry run value: ${dryRun.join(',')}; valid values: All`)
    const dry = dryRun.length > 0

    if (name === undefined) {
      if (method === 'GET') {
        if (truthy(q.get('watch'))) return this.watch(req, res, def, namespace, q)
        return sendJson(res, 200, this.listResponse(def, namespace, q))
      }
      if (method === 'POST') {
        if (def.namespaced && namespace === undefined) throw new StatusError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
        return sendJson(res, 201, this.create(def, namespace, body, dry))
      }
      if (method === 'DELETE') {
        return sendJson(res, 200, this.deleteCollection(def, namespace, q, dry))
      }
      throw new StatusError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
    }
    switch (method) {
      case 'GET': {
        // Deprecated single-object watch (GET .../name?watch=true) == collection watch on metadata.name.
        if (truthy(q.get('watch'))) {
          const fs = q.get('fieldSelector')
          q.set('fieldSelector', fs ? `${fs},metadata.name=${name}` : `metadata.name=${name}`)
          return this.watch(req, res, def, namespace, q)
        }
        const obj = this.bucket(def).get(storeKey(namespace, name))
        if (!obj) throw notFound(def, name)
        return sendJson(res, 200, obj)
      }
      case 'PUT':
        return sendJson(res, 200, this.replace(def, namespace, name, body, dry))
      case 'PATCH': {
        const [code, out] = this.patch(def, namespace, name, body, req.headers['content-type'], q, dry)
        return sendJson(res, code, out)
      }
      case 'DELETE':
        return sendJson(res, 200, this.delete(def, namespace, name, body, dry))
    }
    throw new StatusError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
  }

  private discovery(segs: string[]): object | undefined {
    const resourcesOf = (group: string, version: string): object => ({
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: group ? `${group}/${version}` : version,
      resources: RESOURCES.filter((d) => d.group === group && d.version === version).map((d) => ({
        name: d.resource,
        singularName: d.singular,
        namespaced: d.namespaced,
        kind: d.kind,
        verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
        ...(d.shortNames ? { shortNames: d.shortNames } : {}),
      })),
    })
    const groups = [...new Set(RESOURCES.filter((d) => d.group).map((d) => d.group))]
    const groupOf = (g: string): object => {
      const versions = [...new Set(RESOURCES.filter((d) => d.group === g).map((d) => d.version))].map((v) => ({ groupVersion: `${g}/${v}`, version: v }))
      return { name: g, versions, preferredVersion: versions[0] }
    }
    if (segs.length === 1 && segs[0] === 'api') {
      return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `127.0.0.1:${this.port}` }] }
    }
    if (segs.length === 2 && segs[0] === 'api' && segs[1] === 'v1') return resourcesOf('', 'v1')
    if (segs.length === 1 && segs[0] === 'apis') return { kind: 'APIGroupList', apiVersion: 'v1', groups: groups.map(groupOf) }
    if (segs.length === 2 && segs[0] === 'apis' && groups.includes(segs[1] as string)) return { kind: 'APIGroup', apiVersion: 'v1', ...groupOf(segs[1] as string) }
    if (segs.length === 3 && segs[0] === 'apis' && RESOURCES.some((d) => d.group === segs[1] && d.version === segs[2])) return resourcesOf(segs[1] as string, segs[2] as string)
    return undefined
  }

  // ---- list ----------------------------------------------------------------------------------

  private selectors(def: ResourceDef, q: URLSearchParams): { labels: LabelRequirement[]; fields: FieldRequirement[] } {
    return { labels: parseLabelSelector(q.get('labelSelector') ?? ''), fields: parseFieldSelector(def, q.get('fieldSelector') ?? '') }
  }

  private listResponse(def: ResourceDef, namespace: string | undefined, q: URLSearchParams): object {
    const { labels, fields } = this.selectors(def, q)
    const rvParam = q.get('resourceVersion') ?? ''
    const match = q.get('resourceVersionMatch') ?? ''
    const cont = q.get('continue') ?? ''
    const limitParam = q.get('limit')
    const limit = limitParam ? Number(limitParam) : 0
    if (!Number.isInteger(limit) || limit < 0) throw badRequest(`invalid limit: ${limitParam}`)
    if (match && !['Exact', 'NotOlderThan'].includes(match)) throw badRequest(`invalid resourceVersionMatch: ${match}`)
    if (match && rvParam === '') throw badRequest('resourceVersionMatch is forbidden unless resourceVersion is provided')

    let at = this.rv
    let after = ''
    if (cont) {
      // "Retrieving large results sets in chunks": a continue token is bound to the list's
      // resourceVersion; once compacted away it yields 410 Expired.
      if (rvParam !== '') throw badRequest('specifying resource version is not allowed when using continue')
      let token: { rv?: unknown; start?: unknown }
      try {
        token = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')) as { rv?: unknown; start?: unknown }
      } catch {
        throw badRequest('continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)')
      }
      if (typeof token.rv !== 'number' || typeof token.start !== 'string') throw badRequest('continue key is not valid')
      if (token.rv < this.compactedRv) {
        throw new StatusError(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.')
      }
      at = token.rv
      after = token.start
    } else if (rvParam !== '' && rvParam !== '0') {
      // "Semantics for get and list": NotOlderThan (the default) is satisfied by the latest state;
      // Exact needs the state at that version, which is gone once compacted.
      const requested = parseRv(rvParam)
      if (requested > this.rv) throw tooLarge(requested, this.rv)
      if (match === 'Exact') {
        if (requested < this.compactedRv) throw tooOld(requested, this.compactedRv)
        at = requested
      }
    }
    const state = at === this.rv ? this.bucket(def) : this.snapshot(def, at)
    let entries = [...state.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    entries = entries.filter(([k, o]) => k > after && (namespace === undefined || o.metadata.namespace === namespace) && labelsMatch(labels, o.metadata.labels) && fieldsMatch(def, fields, o))
    const metadata: Record<string, unknown> = { resourceVersion: String(at) }
    if (limit > 0 && entries.length > limit) {
      const last = entries[limit - 1] as [string, KObj]
      metadata.continue = Buffer.from(JSON.stringify({ rv: at, start: last[0] })).toString('base64url')
      metadata.remainingItemCount = entries.length - limit
      entries = entries.slice(0, limit)
    }
    // Like the real server, items inside a typed list carry no kind/apiVersion; only the list does
    // (kubernetes/kubernetes#3030). Single GETs and watch event objects do carry them.
    const items = entries.map(([, o]) => {
      const { kind: _k, apiVersion: _a, ...item } = o
      return clone(item)
    })
    return { kind: `${def.kind}List`, apiVersion: apiVersionOf(def), metadata, items }
  }

  // ---- watch ---------------------------------------------------------------------------------

  private watch(req: IncomingMessage, res: ServerResponse, def: ResourceDef, namespace: string | undefined, q: URLSearchParams): void {
    const { labels, fields } = this.selectors(def, q)
    const rvParam = q.get('resourceVersion') ?? ''
    const bookmarks = truthy(q.get('allowWatchBookmarks'))
    const sendInitial = q.get('sendInitialEvents')
    const timeoutParam = q.get('timeoutSeconds')
    const timeout = timeoutParam ? Number(timeoutParam) : 0
    if (!Number.isFinite(timeout) || timeout < 0) throw badRequest(`invalid timeoutSeconds: ${timeoutParam}`)
    if (sendInitial === 'true' && (!bookmarks || q.get('resourceVersionMatch') !== 'NotOlderThan')) {
      throw new StatusError(422, 'Invalid', 'ListOptions.meta.k8s.io "" is invalid: sendInitialEvents: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan and allowWatchBookmarks to true')
    }
    const requested = rvParam === '' || rvParam === '0' ? undefined : parseRv(rvParam)

    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache, private' })
    res.flushHeaders()
    const w: Watcher = { def, labels, fields, res, timers: [], closed: false, ...(namespace !== undefined ? { namespace } : {}) }
    const write = (type: string, object: unknown): void => {
      if (!w.closed) res.write(`${JSON.stringify({ type, object })}\n`)
    }

    // "Efficient detection of changes": an expired resourceVersion is reported in-band as an ERROR
    // event carrying a 410 Status, after which the server closes the stream.
    if (requested !== undefined && requested < this.compactedRv) {
      write('ERROR', tooOld(requested, this.compactedRv).body())
      res.end()
      return
    }
    if (requested !== undefined && requested > this.rv) {
      write('ERROR', tooLarge(requested, this.rv).body())
      res.end()
      return
    }

    // resourceVersion unset ("Get State and Start at Most Recent") or "0" ("Start at Any"): synthetic
    // ADDED for every existing object first, unless sendInitialEvents=false. With sendInitialEvents=true
    // the initial events end with a BOOKMARK annotated k8s.io/initial-events-end.
    if (requested === undefined || sendInitial === 'true') {
      if (sendInitial !== 'false') {
        for (const o of this.sorted(this.bucket(def))) if (this.visible(w, o)) write('ADDED', o)
      }
      if (sendInitial === 'true') {
        write('BOOKMARK', { kind: def.kind, apiVersion: apiVersionOf(def), metadata: { resourceVersion: String(this.rv), annotations: { 'k8s.io/initial-events-end': 'true' } } })
      }
    } else {
      // "Start at Exact": every change after that version, replayed from history.
      for (const ev of this.history) if (ev.rv > requested && ev.def === def) this.deliver(w, ev)
    }

    this.watchers.add(w)
    if (bookmarks) {
      w.timers.push(setInterval(() => write('BOOKMARK', { kind: def.kind, apiVersion: apiVersionOf(def), metadata: { resourceVersion: String(this.rv) } }), this.bookmarkIntervalMs))
    }
    if (timeout > 0) w.timers.push(setTimeout(() => this.endWatch(w), timeout * 1000))
    // Not req 'close': an IncomingMessage closes as soon as its (empty) body has been read.
    res.on('close', () => this.dropWatch(w))
  }

  private visible(w: Watcher, o: KObj): boolean {
    return (w.namespace === undefined || o.metadata.namespace === w.namespace) && labelsMatch(w.labels, o.metadata.labels) && fieldsMatch(w.def, w.fields, o)
  }

  // Filtered watches follow the watch cache: an object entering the selector is ADDED, one leaving it
  // is DELETED (previous content, new resourceVersion).
  private deliver(w: Watcher, ev: HistoryEvent): void {
    if (w.closed) return
    const was = ev.prev !== undefined && this.visible(w, ev.prev)
    const is = ev.type !== 'DELETED' && this.visible(w, ev.object)
    let type: EventType | undefined
    let object = ev.object
    if (ev.type === 'DELETED') type = was ? 'DELETED' : undefined
    else if (is) type = was ? 'MODIFIED' : 'ADDED'
    else if (was) {
      type = 'DELETED'
      object = { ...clone(ev.prev as KObj), metadata: { ...clone((ev.prev as KObj).metadata), resourceVersion: String(ev.rv) } }
    }
    if (type) w.res.write(`${JSON.stringify({ type, object })}\n`)
  }

  private endWatch(w: Watcher): void {
    if (w.closed) return
    this.dropWatch(w)
    w.res.end()
  }

  private dropWatch(w: Watcher): void {
    if (!this.watchers.has(w) && w.closed) return
    w.closed = true
    for (const t of w.timers) clearTimeout(t)
    this.watchers.delete(w)
  }

  // ---- writes --------------------------------------------------------------------------------

  private checkBody(def: ResourceDef, body: unknown): KObj {
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw badRequest(`the body of the request was not a ${def.kind} object`)
    const obj = clone(body) as KObj
    if (obj.apiVersion !== undefined && obj.apiVersion !== apiVersionOf(def)) {
      throw badRequest(`the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (${apiVersionOf(def)})`)
    }
    if (obj.kind !== undefined && obj.kind !== def.kind) throw badRequest(`${String(obj.kind)} in version "${def.version}" cannot be handled as a ${def.kind}: the kind in the data does not match`)
    if (obj.metadata === undefined || obj.metadata === null) obj.metadata = {}
    if (typeof obj.metadata !== 'object') throw badRequest(`${def.kind} in version "${def.version}" cannot be handled as a ${def.kind}: metadata must be an object`)
    const decodeErr = def.decode?.(obj)
    if (decodeErr) throw badRequest(decodeErr)
    return obj
  }

  private checkNamespace(def: ResourceDef, namespace: string | undefined, obj: KObj): void {
    if (!def.namespaced) {
      delete obj.metadata.namespace
      return
    }
    if (obj.metadata.namespace && obj.metadata.namespace !== namespace) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request')
    }
    obj.metadata.namespace = namespace
  }

  private runValidation(def: ResourceDef, obj: KObj, old: KObj | undefined): void {
    const errs = [...(old ? [] : nameErrors(def, obj.metadata.name as string)), ...(def.validate?.(obj, old) ?? [])]
    if (errs.length > 0) throw invalid(def, obj.metadata.name as string, errs)
  }

  private create(def: ResourceDef, namespace: string | undefined, body: unknown, dry: boolean): KObj {
    const obj = this.checkBody(def, body)
    this.checkNamespace(def, namespace, obj)
    const md = obj.metadata
    if (!md.name) {
      if (!md.generateName) throw invalid(def, '', [{ type: 'FieldValueRequired', field: 'metadata.name', message: 'Required value: name or generateName is required' }])
      do md.name = `${md.generateName}${generateSuffix()}`
      while (this.bucket(def).has(storeKey(md.namespace, md.name)))
    }
    // The storage layer refuses creates that carry a resourceVersion (a 500, not a 4xx).
    if (md.resourceVersion) throw new StatusError(500, 'InternalError', 'Internal error occurred: resourceVersion should not be set on objects to be created')
    // NamespaceLifecycle admission: no objects in a namespace that does not exist.
    if (def.namespaced && !this.bucket(RESOURCES[0] as ResourceDef).has(storeKey(undefined, namespace as string))) {
      throw new StatusError(404, 'NotFound', `namespaces "${namespace}" not found`, { name: namespace, kind: 'namespaces' })
    }
    md.uid = randomUUID()
    md.creationTimestamp = nowTimestamp()
    md.generation = 1
    delete md.deletionTimestamp
    delete md.deletionGracePeriodSeconds
    def.defaults?.(obj)
    this.runValidation(def, obj, undefined)
    if (this.bucket(def).has(storeKey(md.namespace, md.name))) {
      throw new StatusError(409, 'AlreadyExists', `${qualifiedResource(def)} "${md.name}" already exists`, resourceDetails(def, md.name))
    }
    if (dry) {
      obj.apiVersion = apiVersionOf(def)
      obj.kind = def.kind
      return obj
    }
    return this.commit(def, 'ADDED', obj, undefined)
  }

  /** shared by PUT and PATCH once the candidate object is built */
  private update(def: ResourceDef, current: KObj, candidate: KObj, dry: boolean): KObj {
    const name = current.metadata.name as string
    if (candidate.metadata.name !== undefined && candidate.metadata.name !== name) {
      throw badRequest(`the name of the object (${String(candidate.metadata.name)}) does not match the name on the URL (${name})`)
    }
    candidate.metadata.name = name
    const rv = candidate.metadata.resourceVersion
    // Optimistic concurrency ("Resource versions"): a stale resourceVersion is a 409 Conflict; none
    // at all means an unconditional update, which these resource types allow.
    if (rv !== undefined && rv !== null && rv !== '' && String(rv) !== current.metadata.resourceVersion) {
      throw conflict(def, name, 'the object has been modified; please apply your changes to the latest version and try again')
    }
    if (candidate.metadata.uid && candidate.metadata.uid !== current.metadata.uid) {
      throw conflict(def, name, `Precondition failed: UID in precondition: ${String(candidate.metadata.uid)}, UID in object meta: ${String(current.metadata.uid)}`)
    }
    const md = candidate.metadata
    md.uid = current.metadata.uid
    md.creationTimestamp = current.metadata.creationTimestamp
    md.generation = current.metadata.generation
    md.resourceVersion = current.metadata.resourceVersion
    if (current.metadata.namespace !== undefined) md.namespace = current.metadata.namespace
    else delete md.namespace
    // Namespace status belongs to its status subresource; a main-resource update cannot change it.
    if (def.kind === 'Namespace') candidate.status = clone(current.status)
    candidate.apiVersion = apiVersionOf(def)
    candidate.kind = def.kind
    def.defaults?.(candidate)
    this.runValidation(def, candidate, current)
    // An update that changes nothing is not written: no new resourceVersion, no watch event.
    if (stableStringify(candidate) === stableStringify(current)) return clone(current)
    const { metadata: _m1, status: _s1, ...specNew } = candidate
    const { metadata: _m2, status: _s2, ...specOld } = current
    if (stableStringify(specNew) !== stableStringify(specOld)) md.generation = (current.metadata.generation ?? 0) + 1
    if (dry) return candidate
    return this.commit(def, 'MODIFIED', candidate, current)
  }

  private replace(def: ResourceDef, namespace: string | undefined, name: string, body: unknown, dry: boolean): KObj {
    const candidate = this.checkBody(def, body)
    if (candidate.metadata.name !== undefined && candidate.metadata.name !== name) {
      throw badRequest(`the name of the object (${String(candidate.metadata.name)}) does not match the name on the URL (${name})`)
    }
    this.checkNamespace(def, namespace, candidate)
    // These resource types do not allow create-on-update: PUT on a missing object is 404.
    const current = this.bucket(def).get(storeKey(namespace, name))
    if (!current) throw notFound(def, name)
    return this.update(def, current, candidate, dry)
  }

  private patch(def: ResourceDef, namespace: string | undefined, name: string, body: unknown, contentTypeHeader: string | undefined, q: URLSearchParams, dry: boolean): [number, KObj] {
    const ct = (contentTypeHeader ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
    const current = this.bucket(def).get(storeKey(namespace, name))
    let patched: unknown
    switch (ct) {
      case 'application/json-patch+json': {
        if (!current) throw notFound(def, name)
        if (!Array.isArray(body)) throw badRequest('json: cannot unmarshal object into Go value of type jsonpatch.Patch')
        try {
          patched = jsonpatch.applyPatch(clone(current), body as Operation[], true, true).newDocument
        } catch (err) {
          // The apiserver reports JSON patch application errors as 422.
          throw new StatusError(422, 'Invalid', (err as Error).message.split('\n')[0] ?? 'json patch failed')
        }
        break
      }
      case 'application/merge-patch+json':
      case 'application/strategic-merge-patch+json': {
        if (!current) throw notFound(def, name)
        if (!body || typeof body !== 'object' || Array.isArray(body)) throw badRequest('the body of the request was not a JSON object')
        patched = mergePatch(current, ct === 'application/merge-patch+json' ? body : stripDirectives(body))
        break
      }
      case 'application/apply-patch+yaml':
      case 'application/apply-patch+json': {
        // Server-side apply, approximated: fieldManager is required as on the real server; the applied
        // configuration creates the object or is merge-patched into it. No managedFields, no field
        // ownership conflicts, and fields omitted from the configuration are not removed.
        if (!q.get('fieldManager')) throw new StatusError(422, 'Invalid', 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch')
        const cfg = this.checkBody(def, body)
        if (cfg.metadata.name !== undefined && cfg.metadata.name !== name) {
          throw badRequest(`the name of the object (${String(cfg.metadata.name)}) does not match the name on the URL (${name})`)
        }
        if (!current) {
          cfg.metadata.name = name
          return [201, this.create(def, namespace, cfg, dry)]
        }
        patched = mergePatch(current, cfg)
        break
      }
      default:
        throw new StatusError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`)
    }
    if (!patched || typeof patched !== 'object' || Array.isArray(patched)) throw new StatusError(422, 'Invalid', 'the patch did not result in an object')
    const candidate = this.checkBody(def, patched)
    if (def.namespaced && candidate.metadata.namespace !== namespace) throw badRequest('the namespace of the provided object does not match the namespace sent on the request')
    // A resourceVersion present after patching acts as a precondition (409 if stale), as on the real server.
    return [200, this.update(def, current as KObj, candidate, dry)]
  }

  private checkPreconditions(def: ResourceDef, current: KObj, body: unknown): void {
    const pre = (body as { preconditions?: { uid?: string; resourceVersion?: string } } | undefined)?.preconditions
    const name = current.metadata.name as string
    if (pre?.uid && pre.uid !== current.metadata.uid) {
      throw conflict(def, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${String(current.metadata.uid)}`)
    }
    if (pre?.resourceVersion && pre.resourceVersion !== current.metadata.resourceVersion) {
      throw conflict(def, name, `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${String(current.metadata.resourceVersion)}`)
    }
  }

  private delete(def: ResourceDef, namespace: string | undefined, name: string, body: unknown, dry: boolean): object {
    const current = this.bucket(def).get(storeKey(namespace, name))
    if (!current) throw notFound(def, name)
    this.checkPreconditions(def, current, body)
    if (def.kind === 'Namespace') {
      // The real server marks the namespace Terminating and the namespace controller empties and then
      // removes it asynchronously; here that happens at once. The response is the terminating namespace.
      const terminating = clone(current)
      terminating.metadata.deletionTimestamp = nowTimestamp()
      terminating.status = { ...(terminating.status ?? {}), phase: 'Terminating' }
      if (dry) return terminating
      for (const d of RESOURCES) {
        if (!d.namespaced) continue
        for (const o of this.sorted(this.bucket(d))) if (o.metadata.namespace === name) this.commit(d, 'DELETED', clone(o), o)
      }
      this.commit(def, 'DELETED', clone(current), current)
      return terminating
    }
    if (!dry) this.commit(def, 'DELETED', clone(current), current)
    // Resources without graceful deletion answer DELETE with a Success Status naming the object.
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { ...resourceDetails(def, name), uid: current.metadata.uid } }
  }

  private deleteCollection(def: ResourceDef, namespace: string | undefined, q: URLSearchParams, dry: boolean): object {
    const { labels, fields } = this.selectors(def, q)
    const victims = this.sorted(this.bucket(def)).filter((o) => (namespace === undefined || o.metadata.namespace === namespace) && labelsMatch(labels, o.metadata.labels) && fieldsMatch(def, fields, o))
    const items: KObj[] = []
    for (const v of victims) {
      if (def.kind === 'Namespace') this.delete(def, undefined, v.metadata.name as string, undefined, dry)
      else if (!dry) this.commit(def, 'DELETED', clone(v), v)
      const { kind: _k, apiVersion: _a, ...item } = clone(v)
      items.push(item as KObj)
    }
    return { kind: `${def.kind}List`, apiVersion: apiVersionOf(def), metadata: { resourceVersion: String(this.rv) }, items }
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

function parseBody(raw: Buffer, contentType: string | undefined): unknown {
  const ct = (contentType ?? '').toLowerCase()
  const text = raw.toString('utf8')
  try {
    if (ct.includes('yaml')) return YAML.parse(text) as unknown
    return JSON.parse(text) as unknown
  } catch (err) {
    throw badRequest(`the body of the request could not be decoded: ${(err as Error).message}`)
  }
}

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) })
  res.end(text)
}

export async function startFakeApiServer(options: FakeApiServerOptions = {}): Promise<FakeApiServer> {
  const s = new FakeApiServerImpl(options)
  await s.listen()
  return s
}

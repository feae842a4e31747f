// In-test Kubernetes API server for the cluster code's tests: no kube-apiserver can run on the test
// machines, so this speaks the real REST paths, list/watch protocol and optimistic-concurrency rules,
// but only for what pullpin's src/cluster and its tests call (the list is in test/fake-apiserver.test.ts):
//   namespaces, secrets, serviceaccounts, nodes, leases, mutatingwebhookconfigurations,
//   validatingwebhookconfigurations, pods (seeded by tests as the API server stores them after
//   admission; listed, metadata only on request), core events (read by `pullpin doctor --pod`),
//   events.k8s.io events, apps/batch workloads (read only by pullpin), wgpolicyk8s.io
//   policyreports when the test installs that CRD (with its discovery);
//   get, create, replace, delete with preconditions, JSON patch and JSON merge patch;
//   paged lists with equality field/label selectors, as full objects or as a
//   PartialObjectMetadataList ("Receiving resources as metadata only"); watches from a resourceVersion with
//   bookmarks, timeoutSeconds and 410 Expired once the history is compacted.
// Rules follow the Kubernetes API concepts page ("Efficient detection of changes", "Resource
// versions", "Retrieving large results sets in chunks") and the API conventions (Status objects,
// 409/410 semantics). Anything else (another query parameter, patch type or selector syntax) is
// refused with a 400/405/415 that names the fake, so a new call in src/cluster fails loudly here
// instead of meeting made-up semantics.
import { randomUUID } from 'node:crypto'
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
  /** Accept header as sent, if any */
  accept?: string
  /** parsed JSON request body, if any */
  body?: unknown
}

export interface FakeApiServerOptions {
  /** namespaces that exist at start. Default ['default', 'kube-public', 'kube-system']. */
  namespaces?: string[]
  /** how often a watch with allowWatchBookmarks=true gets a BOOKMARK (the real server: about a minute). Default 1000. */
  bookmarkIntervalMs?: number
  /** CRDs installed: 'policyreports.wgpolicyk8s.io' serves PolicyReports and their API discovery. Default none. */
  crds?: string[]
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
  get(path: ObjectPath): any
  /** `group` tells apart resources of one name in two groups (core and events.k8s.io `events`). */
  list(resource: string, namespace?: string, group?: string): any[]
  /** every request received, in order */
  requests: LoggedRequest[]
  /** current global resourceVersion */
  resourceVersion(): string
  /** forget the event history: a watch from an older resourceVersion gets a 410 Expired ERROR event,
   *  a continue token from before it gets HTTP 410 */
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

const TOKEN = 'fake-apiserver-token'

// ---------------------------------------------------------------------------------------------
// Resource types

type KObj = { apiVersion?: string; kind?: string; metadata: Record<string, any>; [key: string]: any }

interface ResourceDef {
  group: string
  version: string
  resource: string
  kind: string
  namespaced: boolean
  /** fieldSelector fields besides metadata.name / metadata.namespace */
  fields?: Record<string, (obj: KObj) => string | undefined>
  /** decode-level checks (the real server answers these with 400 BadRequest) */
  decode?: (obj: KObj) => string | undefined
  /** server-side defaulting, mutates obj */
  defaults?: (obj: KObj) => void
  /** validation; returns field errors (422 Invalid) */
  validate?: (obj: KObj, old: KObj | undefined) => FieldError[]
}

interface FieldError { type: 'FieldValueRequired' | 'FieldValueInvalid'; field: string; message: string }

const apiVersionOf = (def: ResourceDef): string => (def.group ? `${def.group}/${def.version}` : def.version)
const qualifiedResource = (def: ResourceDef): string => (def.group ? `${def.resource}.${def.group}` : def.resource)

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

// metav1.MicroTime is marshalled and parsed with the layout 2006-01-02T15:04:05.000000Z07:00: the real
// server refuses a JSON Date with millisecond precision (what a plain JS Date serialises to), which is
// why src/cluster/kube-api.ts has microTime().
const MICROTIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$/

const NAMESPACES: ResourceDef = {
  group: '',
  version: 'v1',
  resource: 'namespaces',
  kind: 'Namespace',
  namespaced: false,
  defaults (obj) {
    // Since 1.21 the apiserver labels every namespace with its own name; pullpin's policy reads the
    // labels as the server returns them.
    obj.metadata.labels = { ...(obj.metadata.labels ?? {}), 'kubernetes.io/metadata.name': obj.metadata.name }
    obj.status = { phase: 'Active', ...(obj.status ?? {}) }
  },
}

// events.k8s.io/v1 Event: the part of ValidateEventCreate/ValidateEventUpdate
// (pkg/apis/core/validation/events.go) pullpin's writes can meet. An update may change the series
// (and the note is immutable: pullpin patches series only).
const EVENT_IMMUTABLE = ['regarding', 'related', 'reportingController', 'reportingInstance', 'action', 'reason', 'note', 'type', 'eventTime'] as const
const EVENTS: ResourceDef = {
  group: 'events.k8s.io',
  version: 'v1',
  resource: 'events',
  kind: 'Event',
  namespaced: true,
  decode (obj) {
    for (const v of [obj.eventTime, obj.series?.lastObservedTime]) {
      if (v !== undefined && v !== null && (typeof v !== 'string' || !MICROTIME.test(v))) {
        return `Event in version "v1" cannot be handled as a Event: parsing time ${JSON.stringify(v)} as "2006-01-02T15:04:05.000000Z07:00": cannot parse as RFC3339 with microseconds`
      }
    }
    return undefined
  },
  validate (obj, old) {
    const errs: FieldError[] = []
    const required = (field: string, v: unknown, max = 128): void => {
      if (typeof v !== 'string' || v === '') errs.push({ type: 'FieldValueRequired', field, message: 'Required value' })
      else if (v.length > max) errs.push({ type: 'FieldValueInvalid', field, message: `Invalid value: can have at most ${max} characters` })
    }
    if (!obj.eventTime) errs.push({ type: 'FieldValueRequired', field: 'eventTime', message: 'Required value' })
    required('reportingController', obj.reportingController, 253)
    required('reportingInstance', obj.reportingInstance)
    required('action', obj.action)
    required('reason', obj.reason)
    if (obj.type !== 'Normal' && obj.type !== 'Warning') errs.push({ type: 'FieldValueInvalid', field: 'type', message: `Unsupported value: ${JSON.stringify(obj.type)}` })
    if (typeof obj.note === 'string' && Buffer.byteLength(obj.note) > 1024) errs.push({ type: 'FieldValueInvalid', field: 'note', message: 'Invalid value: can have at most 1024 characters' })
    if (obj.series !== undefined && obj.series !== null) {
      if (!(Number.isInteger(obj.series.count) && obj.series.count >= 2)) errs.push({ type: 'FieldValueInvalid', field: 'series.count', message: 'Invalid value: should be at least 2' })
      if (!obj.series.lastObservedTime) errs.push({ type: 'FieldValueRequired', field: 'series.lastObservedTime', message: 'Required value' })
    }
    if (old) {
      for (const f of EVENT_IMMUTABLE) {
        if (stableStringify(obj[f] ?? null) !== stableStringify(old[f] ?? null)) errs.push({ type: 'FieldValueInvalid', field: f, message: 'Invalid value: field is immutable' })
      }
    }
    return errs
  },
}

// wgpolicyk8s.io/v1alpha2 PolicyReport, a CRD: served only when the test installs it
// (FakeApiServerOptions.crds), with API discovery of its group version. The CRD's schema requires
// results[].policy and a result among pass, fail, warn, error, skip.
const POLICY_REPORTS: ResourceDef = {
  group: 'wgpolicyk8s.io',
  version: 'v1alpha2',
  resource: 'policyreports',
  kind: 'PolicyReport',
  namespaced: true,
  validate (obj) {
    const errs: FieldError[] = []
    for (const [i, r] of ((obj.results ?? []) as any[]).entries()) {
      if (typeof r?.policy !== 'string' || r.policy === '') errs.push({ type: 'FieldValueRequired', field: `results[${i}].policy`, message: 'Required value' })
      if (!['pass', 'fail', 'warn', 'error', 'skip'].includes(r?.result)) errs.push({ type: 'FieldValueInvalid', field: `results[${i}].result`, message: `Unsupported value: ${JSON.stringify(r?.result)}` })
    }
    return errs
  },
}

const RESOURCES: ResourceDef[] = [
  NAMESPACES,
  {
    group: '',
    version: 'v1',
    resource: 'secrets',
    kind: 'Secret',
    namespaced: true,
    fields: { type: (o) => o.type },
    decode (obj) {
      for (const [k, v] of Object.entries((obj.data ?? {}) as Record<string, unknown>)) {
        if (typeof v !== 'string' || !BASE64.test(v)) return `Secret in version "v1" cannot be handled as a Secret: illegal base64 data in data[${k}]`
      }
      return undefined
    },
    defaults (obj) {
      if (!obj.type) obj.type = 'Opaque'
    },
    // The part of ValidateSecret that pullpin's writes (copies, TLS Secret, placeholders) can meet.
    validate (obj, old) {
      const errs: FieldError[] = []
      if (obj.type === 'kubernetes.io/dockerconfigjson' && !(obj.data ?? {})['.dockerconfigjson']) {
        errs.push({ type: 'FieldValueRequired', field: 'data[.dockerconfigjson]', message: 'Required value' })
      }
      if (old && old.type !== obj.type) errs.push({ type: 'FieldValueInvalid', field: 'type', message: `Invalid value: "${obj.type}": field is immutable` })
      return errs
    },
  },
  { group: '', version: 'v1', resource: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
  // `pullpin doctor --pod`: the pod is read (GET) and its events listed by involvedObject.name, the
  // field selector kubectl describe uses. Tests seed them as the kubelet would write them.
  {
    group: '',
    version: 'v1',
    resource: 'events',
    kind: 'Event',
    namespaced: true,
    fields: { 'involvedObject.name': (o) => o.involvedObject?.name, 'involvedObject.kind': (o) => o.involvedObject?.kind },
  },
  {
    group: '',
    version: 'v1',
    resource: 'pods',
    kind: 'Pod',
    namespaced: true,
    // Set by the server on create (RFC 3339, whole seconds); the one field of a pod pullpin orders by.
    defaults (obj) {
      if (!obj.metadata.creationTimestamp) obj.metadata.creationTimestamp = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
    },
  },
  { group: '', version: 'v1', resource: 'nodes', kind: 'Node', namespaced: false },
  {
    group: 'coordination.k8s.io',
    version: 'v1',
    resource: 'leases',
    kind: 'Lease',
    namespaced: true,
    decode (obj) {
      for (const f of ['acquireTime', 'renewTime']) {
        const v = obj.spec?.[f]
        if (v !== undefined && v !== null && (typeof v !== 'string' || !MICROTIME.test(v))) {
          return `Lease in version "v1" cannot be handled as a Lease: parsing time ${JSON.stringify(v)} as "2006-01-02T15:04:05.000000Z07:00": cannot parse as RFC3339 with microseconds`
        }
      }
      return undefined
    },
    validate (obj) {
      const d = obj.spec?.leaseDurationSeconds
      if (d !== undefined && d !== null && !(Number.isInteger(d) && d > 0)) return [{ type: 'FieldValueInvalid', field: 'spec.leaseDurationSeconds', message: `Invalid value: ${d}: must be greater than 0` }]
      return []
    },
  },
  {
    group: 'admissionregistration.k8s.io',
    version: 'v1',
    resource: 'mutatingwebhookconfigurations',
    kind: 'MutatingWebhookConfiguration',
    namespaced: false,
    // pullpin writes only caBundle here (a JSON patch); it is []byte, base64 on the wire.
    decode (obj) {
      for (const [i, w] of ((obj.webhooks ?? []) as any[]).entries()) {
        const ca = w?.clientConfig?.caBundle
        if (ca !== undefined && ca !== null && (typeof ca !== 'string' || !BASE64.test(ca))) {
          return `MutatingWebhookConfiguration in version "v1" cannot be handled as a MutatingWebhookConfiguration: illegal base64 data in webhooks[${i}].clientConfig.caBundle`
        }
      }
      return undefined
    },
  },
  {
    group: 'admissionregistration.k8s.io',
    version: 'v1',
    resource: 'validatingwebhookconfigurations',
    kind: 'ValidatingWebhookConfiguration',
    namespaced: false,
    // The workload webhook's configuration: pullpin writes only caBundle here too.
    decode (obj) {
      for (const [i, w] of ((obj.webhooks ?? []) as any[]).entries()) {
        const ca = w?.clientConfig?.caBundle
        if (ca !== undefined && ca !== null && (typeof ca !== 'string' || !BASE64.test(ca))) {
          return `ValidatingWebhookConfiguration in version "v1" cannot be handled as a ValidatingWebhookConfiguration: illegal base64 data in webhooks[${i}].clientConfig.caBundle`
        }
      }
      return undefined
    },
  },
  EVENTS,
  // The workloads whose existence the PolicyReport writer checks (plain objects: tests seed them).
  { group: 'apps', version: 'v1', resource: 'deployments', kind: 'Deployment', namespaced: true },
  { group: 'apps', version: 'v1', resource: 'replicasets', kind: 'ReplicaSet', namespaced: true },
  { group: 'apps', version: 'v1', resource: 'statefulsets', kind: 'StatefulSet', namespaced: true },
  { group: 'apps', version: 'v1', resource: 'daemonsets', kind: 'DaemonSet', namespaced: true },
  { group: 'batch', version: 'v1', resource: 'jobs', kind: 'Job', namespaced: true },
  { group: 'batch', version: 'v1', resource: 'cronjobs', kind: 'CronJob', namespaced: true },
  POLICY_REPORTS,
]

function defForObject (obj: KObj): ResourceDef {
  const def = RESOURCES.find((d) => apiVersionOf(d) === obj.apiVersion && d.kind === obj.kind)
  if (!def) throw new Error(`fake-apiserver: unsupported apiVersion/kind ${String(obj.apiVersion)}/${String(obj.kind)}`)
  return def
}

// ---------------------------------------------------------------------------------------------
// Status errors (API conventions: failures are v1 Status objects whose code is the HTTP code)

const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'Conflict',
  410: 'Expired',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
}

class StatusError extends Error {
  constructor (readonly code: number, readonly reason: string, message: string, readonly details?: Record<string, unknown>) {
    super(message)
  }

  body (): Record<string, unknown> {
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: this.message, reason: this.reason, ...(this.details ? { details: this.details } : {}), code: this.code }
  }
}

const resourceDetails = (def: ResourceDef, name: string): Record<string, unknown> =>
  def.group ? { name, group: def.group, kind: def.resource } : { name, kind: def.resource }

const notFound = (def: ResourceDef, name: string): StatusError =>
  new StatusError(404, 'NotFound', `${qualifiedResource(def)} "${name}" not found`, resourceDetails(def, name))

const conflict = (def: ResourceDef, name: string, why: string): StatusError =>
  new StatusError(409, 'Conflict', `Operation cannot be fulfilled on ${qualifiedResource(def)} "${name}": ${why}`, resourceDetails(def, name))

const badRequest = (message: string): StatusError => new StatusError(400, 'BadRequest', message)

/** what pullpin does not do, so the fake does not model it */
const unsupported = (what: string): StatusError => badRequest(`fake-apiserver: ${what} is not supported (pullpin does not use it)`)

function invalid (def: ResourceDef, name: string, errs: FieldError[]): StatusError {
  const parts = errs.map((e) => `${e.field}: ${e.message}`)
  const list = parts.length === 1 ? parts[0] : `[${parts.join(', ')}]`
  const details: Record<string, unknown> = { name, kind: def.kind, causes: errs.map((e) => ({ reason: e.type, message: e.message, field: e.field })) }
  if (def.group) details.group = def.group
  return new StatusError(422, 'Invalid', `${def.group ? `${def.kind}.${def.group}` : def.kind} "${name}" is invalid: ${list}`, details)
}

const tooOld = (requested: number, oldest: number): StatusError =>
  new StatusError(410, 'Expired', `too old resource version: ${requested} (${oldest})`)

// ---------------------------------------------------------------------------------------------
// Names, selectors and helpers

// Namespaces are named by a DNS-1123 label, every other kind here by a DNS-1123 subdomain.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
function nameErrors (def: ResourceDef, name: string): FieldError[] {
  if (def === NAMESPACES ? name.length <= 63 && DNS_LABEL.test(name) : name.length <= 253 && name.split('.').every((p) => p.length <= 63 && DNS_LABEL.test(p))) return []
  return [{ type: 'FieldValueInvalid', field: 'metadata.name', message: `Invalid value: "${name}": a lowercase RFC 1123 ${def === NAMESPACES ? 'label' : 'subdomain'} must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character` }]
}

function clone<T> (v: T): T {
  return structuredClone(v)
}

function stableStringify (v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(',')}]`
  if (v && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${stableStringify(x)}`).join(',')}}`
  }
  return JSON.stringify(v) ?? 'null'
}

interface Requirement { key: string; value: string }

// Equality terms only (`k=v` / `k==v`, comma-separated), in both selector languages: all pullpin
// sends (labels.Parse and fields.ParseSelector accept more; that is refused, not guessed at).
function parseSelector (kind: 'label' | 'field', s: string): Requirement[] {
  const out: Requirement[] = []
  for (const term of s.split(',')) {
    if (s === '') break
    const m = /^\s*([A-Za-z0-9._/-]+)\s*==?\s*([A-Za-z0-9._/-]*)\s*$/.exec(term)
    if (!m) throw unsupported(`${kind} selector term '${term}' (only key=value)`)
    out.push({ key: m[1] as string, value: m[2] as string })
  }
  return out
}

function fieldOf (def: ResourceDef, field: string): (o: KObj) => string | undefined {
  if (field === 'metadata.name') return (o) => o.metadata.name
  if (field === 'metadata.namespace') return (o) => o.metadata.namespace ?? ''
  const f = def.fields?.[field]
  if (!f) throw badRequest(`field label not supported: ${field}`)
  return f
}

interface Selection {
  namespace?: string
  labels: Requirement[]
  fields: Array<{ get: (o: KObj) => string | undefined; value: string }>
}

function selection (def: ResourceDef, namespace: string | undefined, q: URLSearchParams): Selection {
  return {
    ...(namespace !== undefined ? { namespace } : {}),
    labels: parseSelector('label', q.get('labelSelector') ?? ''),
    fields: parseSelector('field', q.get('fieldSelector') ?? '').map((r) => ({ get: fieldOf(def, r.key), value: r.value })),
  }
}

function selects (s: Selection, o: KObj): boolean {
  return (s.namespace === undefined || o.metadata.namespace === s.namespace) &&
    s.labels.every((r) => (o.metadata.labels as Record<string, string> | undefined)?.[r.key] === r.value) &&
    s.fields.every((r) => r.get(o) === r.value)
}

// RFC 7386 JSON merge patch.
function mergePatch (target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch)
  const out: Record<string, unknown> = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {}
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k]
    else out[k] = mergePatch(out[k], v)
  }
  return out
}

function checkParams (q: URLSearchParams, allowed: string[], what: string): void {
  for (const k of q.keys()) if (!allowed.includes(k)) throw unsupported(`query parameter '${k}' on ${what}`)
}

const truthy = (v: string | null): boolean => v === 'true' || v === '1'

// ---------------------------------------------------------------------------------------------
// The server

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED'
interface HistoryEvent { rv: number; type: EventType; def: ResourceDef; object: KObj; prev?: KObj }

interface Watcher {
  def: ResourceDef
  sel: Selection
  res: ServerResponse
  timers: NodeJS.Timeout[]
  closed: boolean
}

interface FailRule { method: string; prefix: string; status: number; remaining: number }

const storeKey = (ns: string | undefined, name: string): string => `${ns ?? ''}/${name}`
const byKey = ([a]: [string, KObj], [b]: [string, KObj]): number => (a < b ? -1 : a > b ? 1 : 0)

class FakeApiServerImpl implements FakeApiServer {
  url = ''
  requests: LoggedRequest[] = []
  private readonly bookmarkIntervalMs: number
  private readonly server: Server
  private readonly sockets = new Set<Socket>()
  private readonly watchers = new Set<Watcher>()
  private readonly store = new Map<ResourceDef, Map<string, KObj>>()
  private history: HistoryEvent[] = []
  private rv = 0
  /** resourceVersion up to which history is forgotten; watches and continue tokens below it get 410 */
  private compactedRv = 0
  private port = 0
  private listening = false
  private fails: FailRule[] = []
  private readonly crds: Set<string>

  constructor (opts: FakeApiServerOptions) {
    this.bookmarkIntervalMs = opts.bookmarkIntervalMs ?? 1000
    this.crds = new Set(opts.crds ?? [])
    for (const d of RESOURCES) this.store.set(d, new Map())
    this.server = createServer((req, res) => { void this.handle(req, res) })
    this.server.on('connection', (s) => {
      this.sockets.add(s)
      s.on('close', () => this.sockets.delete(s))
    })
    for (const ns of opts.namespaces ?? ['default', 'kube-public', 'kube-system']) this.seed({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } })
  }

  async listen (): Promise<void> {
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

  kubeConfig (): KubeConfig {
    const kc = new KubeConfig()
    // client-node 1.4 refuses an http:// server unless the cluster has skipTLSVerify set.
    kc.loadFromOptions({
      clusters: [{ name: 'fake-apiserver', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'fake-user', token: TOKEN }],
      contexts: [{ name: 'fake', cluster: 'fake-apiserver', user: 'fake-user' }],
      currentContext: 'fake',
    })
    return kc
  }

  kubeconfigYaml (): string {
    return YAML.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake-apiserver', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'fake-user', user: { token: TOKEN } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake-apiserver', user: 'fake-user' } }],
      'current-context': 'fake',
    })
  }

  seed (input: object): any {
    const obj = clone(input) as KObj
    const def = defForObject(obj)
    obj.metadata = obj.metadata ?? {}
    if (!obj.metadata.name) throw new Error('fake-apiserver: seed needs metadata.name')
    if (def.namespaced) obj.metadata.namespace = obj.metadata.namespace ?? 'default'
    else delete obj.metadata.namespace
    const prev = this.bucket(def).get(storeKey(obj.metadata.namespace, obj.metadata.name))
    obj.metadata.uid = obj.metadata.uid ?? prev?.metadata.uid ?? randomUUID()
    def.defaults?.(obj)
    return clone(this.commit(def, prev ? 'MODIFIED' : 'ADDED', obj, prev))
  }

  get (path: ObjectPath): any {
    const defs = RESOURCES.filter((d) => d.resource === path.resource && (path.group === undefined || d.group === path.group))
    if (defs.length > 1) throw new Error(`fake-apiserver: ${path.resource} is in several groups: name the group`)
    const def = defs[0]
    if (!def) return undefined
    const obj = this.bucket(def).get(storeKey(def.namespaced ? (path.namespace ?? 'default') : undefined, path.name))
    return obj ? clone(obj) : undefined
  }

  list (resource: string, namespace?: string, group?: string): any[] {
    const defs = RESOURCES.filter((d) => d.resource === resource && (group === undefined || d.group === group))
    if (defs.length > 1) throw new Error(`fake-apiserver: ${resource} is in several groups (${defs.map((d) => d.group || 'core').join(', ')}): name the group`)
    const def = defs[0]
    if (!def) throw new Error(`fake-apiserver: unknown resource ${resource}`)
    return [...this.bucket(def).entries()].sort(byKey).map(([, o]) => o).filter((o) => namespace === undefined || o.metadata.namespace === namespace).map((o) => clone(o))
  }

  resourceVersion (): string {
    return String(this.rv)
  }

  compact (): void {
    this.compactedRv = this.rv
    this.history = []
  }

  closeWatches (): void {
    for (const w of [...this.watchers]) this.endWatch(w)
  }

  watchCount (resource?: string): number {
    return [...this.watchers].filter((w) => !w.closed && (resource === undefined || w.def.resource === resource)).length
  }

  async waitForWatches (resource: string, count = 1, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (this.watchCount(resource) < count) {
      if (Date.now() > deadline) throw new Error(`fake-apiserver: timed out waiting for ${count} watch(es) on ${resource} (have ${this.watchCount(resource)})`)
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  }

  async pause (): Promise<void> {
    if (!this.listening) return
    this.listening = false
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    for (const w of [...this.watchers]) this.dropWatch(w)
    for (const s of this.sockets) s.destroy()
    await closed
  }

  async resume (): Promise<void> {
    if (this.listening) return
    await this.listen()
  }

  failNext (method: string, pathPrefix: string, status: number, times = 1): void {
    this.fails.push({ method: method.toUpperCase(), prefix: pathPrefix, status, remaining: times })
  }

  async stop (): Promise<void> {
    await this.pause()
  }

  // ---- storage -------------------------------------------------------------------------------

  private bucket (def: ResourceDef): Map<string, KObj> {
    return this.store.get(def) as Map<string, KObj>
  }

  /** the one write path: bumps the global resourceVersion, records history, fans out to watchers */
  private commit (def: ResourceDef, type: EventType, obj: KObj, prev: KObj | undefined): KObj {
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
  private snapshot (def: ResourceDef, at: number): Map<string, KObj> {
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

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', 'http://fake')
    const method = (req.method ?? 'GET').toUpperCase()
    const contentType = req.headers['content-type']
    const entry: LoggedRequest = { method, path: u.pathname, query: u.search.replace(/^\?/, '') }
    if (contentType) entry.contentType = contentType
    const accept = req.headers.accept
    if (accept) entry.accept = accept
    this.requests.push(entry)
    try {
      const raw = await readBody(req)
      if (raw.length > 0) {
        try {
          entry.body = JSON.parse(raw.toString('utf8')) as unknown
        } catch (err) {
          throw badRequest(`the body of the request could not be decoded: ${(err as Error).message}`)
        }
      }
      // The real server answers unauthenticated requests with a bare 401 Status.
      if (req.headers.authorization !== `Bearer ${TOKEN}`) throw new StatusError(401, 'Unauthorized', 'Unauthorized')
      const rule = this.fails.find((f) => (f.method === '*' || f.method === method) && u.pathname.startsWith(f.prefix))
      if (rule) {
        if (--rule.remaining <= 0) this.fails = this.fails.filter((f) => f !== rule)
        const reason = REASONS[rule.status] ?? 'Unknown'
        throw new StatusError(rule.status, reason, `injected failure (${rule.status} ${reason})`)
      }
      this.route(res, method, u, entry.body, contentType, accept)
    } catch (err) {
      const se = err instanceof StatusError ? err : new StatusError(500, 'InternalError', `Internal error occurred: ${(err as Error).message}`)
      if (!res.headersSent) sendJson(res, se.code, se.body())
      else res.destroy()
    }
  }

  private route (res: ServerResponse, method: string, u: URL, body: unknown, contentType: string | undefined, accept: string | undefined): void {
    // /api/v1/[namespaces/NS/]RESOURCE[/NAME] and /apis/GROUP/VERSION/[namespaces/NS/]RESOURCE[/NAME]
    const segs = u.pathname.split('/').filter((s) => s !== '')
    const m = segs[0] === 'api' ? { group: '', version: segs[1], rest: segs.slice(2) } : segs[0] === 'apis' ? { group: segs[1], version: segs[2], rest: segs.slice(3) } : undefined
    let def: ResourceDef | undefined
    let namespace: string | undefined
    let name: string | undefined
    if (m !== undefined) {
      let rest = m.rest
      if (rest[0] === 'namespaces' && rest.length >= 3) {
        namespace = rest[1]
        rest = rest.slice(2)
      }
      if (rest.length === 1 || rest.length === 2) {
        def = RESOURCES.find((d) => d.group === m.group && d.version === m.version && d.resource === rest[0])
        name = rest[1]
        // Namespaced kinds: objects only under namespaces/NS; the bare path is the all-namespaces collection.
        if (def !== undefined && (namespace !== undefined ? !def.namespaced : def.namespaced && name !== undefined)) def = undefined
      }
    }
    // A CRD's resources (and its group version's discovery) exist only once it is installed.
    if (def === POLICY_REPORTS && !this.crds.has('policyreports.wgpolicyk8s.io')) def = undefined
    if (!def && method === 'GET' && m !== undefined && m.rest.length === 0 && m.group === POLICY_REPORTS.group && m.version === POLICY_REPORTS.version && this.crds.has('policyreports.wgpolicyk8s.io')) {
      return sendJson(res, 200, { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: 'wgpolicyk8s.io/v1alpha2', resources: [{ name: 'policyreports', singularName: 'policyreport', namespaced: true, kind: 'PolicyReport', verbs: ['delete', 'deletecollection', 'get', 'list', 'patch', 'create', 'update', 'watch'], shortNames: ['polr'] }] })
    }
    if (!def) throw new StatusError(404, 'NotFound', 'the server could not find the requested resource')
    const q = u.searchParams

    if (name === undefined) {
      if (method === 'GET') {
        if (truthy(q.get('watch'))) return this.watch(res, def, namespace, q)
        const list = this.listResponse(def, namespace, q)
        return metadataOnly(accept) ? sendJson(res, 200, partialMetadata(list), PARTIAL_METADATA_LIST) : sendJson(res, 200, list)
      }
      if (method === 'POST' && (namespace !== undefined || !def.namespaced)) {
        checkParams(q, [], `create ${def.resource}`)
        return sendJson(res, 201, this.create(def, namespace, body))
      }
      throw new StatusError(405, 'MethodNotAllowed', `fake-apiserver: ${method} on this collection is not supported`)
    }
    checkParams(q, [], `${method} ${def.resource}`)
    switch (method) {
      case 'GET': {
        const obj = this.bucket(def).get(storeKey(namespace, name))
        if (!obj) throw notFound(def, name)
        return sendJson(res, 200, obj)
      }
      case 'POST':
        break
      case 'PUT':
        return sendJson(res, 200, this.replace(def, namespace, name, body))
      case 'PATCH':
        return sendJson(res, 200, this.patch(def, namespace, name, body, contentType))
      case 'DELETE':
        // pullpin never deletes a namespace: the namespace lifecycle (Terminating, the namespace
        // controller emptying it) is not modelled.
        if (def === NAMESPACES) break
        return sendJson(res, 200, this.delete(def, namespace, name, body))
    }
    throw new StatusError(405, 'MethodNotAllowed', `fake-apiserver: ${method} on ${def.resource}/${name} is not supported`)
  }

  // ---- list ----------------------------------------------------------------------------------

  private listResponse (def: ResourceDef, namespace: string | undefined, q: URLSearchParams): object {
    // pullpin lists without resourceVersion: the most recent state (a quorum read).
    checkParams(q, ['limit', 'continue', 'fieldSelector', 'labelSelector'], `list ${def.resource}`)
    const sel = selection(def, namespace, q)
    const limitParam = q.get('limit')
    const limit = limitParam ? Number(limitParam) : 0
    if (!Number.isInteger(limit) || limit < 0) throw badRequest(`invalid limit: ${limitParam}`)
    let at = this.rv
    let after = ''
    const cont = q.get('continue')
    if (cont) {
      // "Retrieving large results sets in chunks": a continue token is bound to the first page's
      // resourceVersion (every page shows that state); once compacted away it is 410 Expired.
      let token: { rv?: unknown; start?: unknown }
      try {
        token = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')) as { rv?: unknown; start?: unknown }
      } catch {
        throw badRequest('continue key is not valid')
      }
      if (typeof token.rv !== 'number' || typeof token.start !== 'string') throw badRequest('continue key is not valid')
      if (token.rv < this.compactedRv) {
        throw new StatusError(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.')
      }
      at = token.rv
      after = token.start
    }
    const state = at === this.rv ? this.bucket(def) : this.snapshot(def, at)
    let entries = [...state.entries()].sort(byKey).filter(([k, o]) => k > after && selects(sel, o))
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

  private watch (res: ServerResponse, def: ResourceDef, namespace: string | undefined, q: URLSearchParams): void {
    checkParams(q, ['watch', 'resourceVersion', 'allowWatchBookmarks', 'timeoutSeconds', 'fieldSelector'], `watch ${def.resource}`)
    const sel = selection(def, namespace, q)
    // pullpin always watches from the resourceVersion of a list ("Start at Exact"); without one
    // (or with "0") the server would send synthetic ADDED events first, which is not modelled.
    const rvParam = q.get('resourceVersion') ?? ''
    if (!/^[1-9]\d*$/.test(rvParam)) throw unsupported(`watch resourceVersion ${JSON.stringify(rvParam)} (only the resourceVersion of a list)`)
    const requested = Number(rvParam)
    const timeoutParam = q.get('timeoutSeconds')
    const timeout = timeoutParam ? Number(timeoutParam) : 0
    if (!Number.isFinite(timeout) || timeout < 0) throw badRequest(`invalid timeoutSeconds: ${timeoutParam}`)

    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache, private' })
    res.flushHeaders()
    const w: Watcher = { def, sel, res, timers: [], closed: false }
    const write = (type: string, object: unknown): void => {
      if (!w.closed) res.write(`${JSON.stringify({ type, object })}\n`)
    }
    // "Efficient detection of changes": an expired resourceVersion is reported in-band as an ERROR
    // event carrying a 410 Status, after which the server closes the stream.
    if (requested < this.compactedRv) {
      write('ERROR', tooOld(requested, this.compactedRv).body())
      res.end()
      return
    }
    // Every change after that version, replayed from history, then live.
    for (const ev of this.history) if (ev.rv > requested && ev.def === def) this.deliver(w, ev)
    this.watchers.add(w)
    if (truthy(q.get('allowWatchBookmarks'))) {
      w.timers.push(setInterval(() => write('BOOKMARK', { kind: def.kind, apiVersion: apiVersionOf(def), metadata: { resourceVersion: String(this.rv) } }), this.bookmarkIntervalMs))
    }
    if (timeout > 0) w.timers.push(setTimeout(() => this.endWatch(w), timeout * 1000))
    // Not req 'close': an IncomingMessage closes as soon as its (empty) body has been read.
    res.on('close', () => this.dropWatch(w))
  }

  // A watch selects by namespace, name or Secret type, all immutable (pullpin watches by nothing
  // else): an object never moves into or out of a watch's selection, so there are no synthetic
  // ADDED/DELETED transitions to model. (seed() bypasses validation: do not change a Secret's type.)
  private deliver (w: Watcher, ev: HistoryEvent): void {
    if (!w.closed && selects(w.sel, ev.object)) w.res.write(`${JSON.stringify({ type: ev.type, object: ev.object })}\n`)
  }

  private endWatch (w: Watcher): void {
    if (w.closed) return
    this.dropWatch(w)
    w.res.end()
  }

  private dropWatch (w: Watcher): void {
    w.closed = true
    for (const t of w.timers) clearTimeout(t)
    this.watchers.delete(w)
  }

  // ---- writes --------------------------------------------------------------------------------

  private checkBody (def: ResourceDef, body: unknown): KObj {
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

  private checkNamespace (def: ResourceDef, namespace: string | undefined, obj: KObj): void {
    if (!def.namespaced) {
      delete obj.metadata.namespace
      return
    }
    if (obj.metadata.namespace && obj.metadata.namespace !== namespace) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request')
    }
    obj.metadata.namespace = namespace
  }

  private create (def: ResourceDef, namespace: string | undefined, body: unknown): KObj {
    const obj = this.checkBody(def, body)
    this.checkNamespace(def, namespace, obj)
    const md = obj.metadata
    if (!md.name) throw invalid(def, '', [{ type: 'FieldValueRequired', field: 'metadata.name', message: 'Required value: name is required' }])
    // The storage layer refuses creates that carry a resourceVersion (a 500, not a 4xx).
    if (md.resourceVersion) throw new StatusError(500, 'InternalError', 'Internal error occurred: resourceVersion should not be set on objects to be created')
    // NamespaceLifecycle admission: no objects in a namespace that does not exist.
    if (namespace !== undefined && !this.bucket(NAMESPACES).has(storeKey(undefined, namespace))) {
      throw new StatusError(404, 'NotFound', `namespaces "${namespace}" not found`, { name: namespace, kind: 'namespaces' })
    }
    md.uid = randomUUID()
    def.defaults?.(obj)
    const errs = [...nameErrors(def, md.name as string), ...(def.validate?.(obj, undefined) ?? [])]
    if (errs.length > 0) throw invalid(def, md.name as string, errs)
    if (this.bucket(def).has(storeKey(md.namespace, md.name))) {
      throw new StatusError(409, 'AlreadyExists', `${qualifiedResource(def)} "${md.name}" already exists`, resourceDetails(def, md.name))
    }
    return this.commit(def, 'ADDED', obj, undefined)
  }

  /** shared by PUT and PATCH once the candidate object is built */
  private update (def: ResourceDef, current: KObj, candidate: KObj): KObj {
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
    md.resourceVersion = current.metadata.resourceVersion
    if (current.metadata.namespace !== undefined) md.namespace = current.metadata.namespace
    else delete md.namespace
    candidate.apiVersion = apiVersionOf(def)
    candidate.kind = def.kind
    def.defaults?.(candidate)
    const errs = def.validate?.(candidate, current) ?? []
    if (errs.length > 0) throw invalid(def, name, errs)
    // An update that changes nothing is not written: no new resourceVersion, no watch event.
    if (stableStringify(candidate) === stableStringify(current)) return clone(current)
    return this.commit(def, 'MODIFIED', candidate, current)
  }

  private replace (def: ResourceDef, namespace: string | undefined, name: string, body: unknown): KObj {
    const candidate = this.checkBody(def, body)
    this.checkNamespace(def, namespace, candidate)
    // These resource types do not allow create-on-update: PUT on a missing object is 404.
    const current = this.bucket(def).get(storeKey(namespace, name))
    if (!current) throw notFound(def, name)
    return this.update(def, current, candidate)
  }

  private patch (def: ResourceDef, namespace: string | undefined, name: string, body: unknown, contentType: string | undefined): KObj {
    const ct = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
    if (ct !== 'application/json-patch+json' && ct !== 'application/merge-patch+json') {
      throw new StatusError(415, 'UnsupportedMediaType', `fake-apiserver: patch type ${JSON.stringify(ct)} is not supported (pullpin sends application/json-patch+json and application/merge-patch+json)`)
    }
    const current = this.bucket(def).get(storeKey(namespace, name))
    if (!current) throw notFound(def, name)
    let patched: unknown
    if (ct === 'application/json-patch+json') {
      if (!Array.isArray(body)) throw badRequest('json: cannot unmarshal object into Go value of type jsonpatch.Patch')
      try {
        patched = jsonpatch.applyPatch(clone(current), body as Operation[], true, true).newDocument
      } catch (err) {
        // The apiserver reports JSON patch application errors (a failed test op too) as 422.
        throw new StatusError(422, 'Invalid', (err as Error).message.split('\n')[0] ?? 'json patch failed')
      }
    } else {
      if (!body || typeof body !== 'object' || Array.isArray(body)) throw badRequest('the body of the request was not a JSON object')
      patched = mergePatch(current, body)
    }
    const candidate = this.checkBody(def, patched)
    if (def.namespaced && candidate.metadata.namespace !== namespace) throw badRequest('the namespace of the provided object does not match the namespace sent on the request')
    // A resourceVersion present after patching acts as a precondition (409 if stale), as on the real server.
    return this.update(def, current, candidate)
  }

  private delete (def: ResourceDef, namespace: string | undefined, name: string, body: unknown): object {
    const current = this.bucket(def).get(storeKey(namespace, name))
    if (!current) throw notFound(def, name)
    // DeleteOptions.preconditions: the delete applies only to that very object at that version.
    const pre = (body as { preconditions?: { uid?: string; resourceVersion?: string } } | undefined)?.preconditions
    if (pre?.uid && pre.uid !== current.metadata.uid) {
      throw conflict(def, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${String(current.metadata.uid)}`)
    }
    if (pre?.resourceVersion && pre.resourceVersion !== current.metadata.resourceVersion) {
      throw conflict(def, name, `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${String(current.metadata.resourceVersion)}`)
    }
    this.commit(def, 'DELETED', clone(current), current)
    // Resources without graceful deletion answer DELETE with a Success Status naming the object.
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { ...resourceDetails(def, name), uid: current.metadata.uid } }
  }
}

function readBody (req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

const PARTIAL_METADATA_LIST = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1'

/**
 * The Accept header asks for PartialObjectMetadataList. The first media range decides (the server
 * serves it, so the fallbacks after it are never needed); any other `as=` (Table,
 * PartialObjectMetadata…) is refused.
 */
function metadataOnly (accept: string | undefined): boolean {
  const range = (accept ?? '').split(',')[0] ?? ''
  const [type, ...params] = range.split(';').map((p) => p.trim())
  const as = params.find((p) => p.startsWith('as='))
  if (as === undefined) return false
  if (type === 'application/json' && as === 'as=PartialObjectMetadataList' && params.includes('g=meta.k8s.io') && params.includes('v=v1')) return true
  throw unsupported(`Accept ${range.trim()}`)
}

/** A list as PartialObjectMetadataList: every item its metadata only, each with its own kind. */
function partialMetadata (list: any): object {
  return {
    kind: 'PartialObjectMetadataList',
    apiVersion: 'meta.k8s.io/v1',
    metadata: list.metadata,
    items: (list.items as KObj[]).map((o) => ({ kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata })),
  }
}

function sendJson (res: ServerResponse, code: number, body: unknown, type = 'application/json'): void {
  const text = JSON.stringify(body)
  res.writeHead(code, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(text) })
  res.end(text)
}

export async function startFakeApiServer (options: FakeApiServerOptions = {}): Promise<FakeApiServer> {
  const s = new FakeApiServerImpl(options)
  await s.listen()
  return s
}

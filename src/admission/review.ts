// AdmissionReview admission.k8s.io/v1: reading a request and writing a response.
// Reference: Kubernetes docs, "Dynamic Admission Control" → "Request" and "Response".
import { ERR_REVIEW_MALFORMED } from '../errors.js'

export const REVIEW_API_VERSION = 'admission.k8s.io/v1'

export interface GroupVersionKind { group: string; version: string; kind: string }
export interface GroupVersionResource { group: string; version: string; resource: string }

export interface AdmissionRequest {
  uid: string
  kind: GroupVersionKind
  resource: GroupVersionResource
  subResource?: string
  name?: string
  namespace?: string
  operation: 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT'
  userInfo?: { username?: string; [k: string]: unknown }
  object?: unknown
  oldObject?: unknown
  dryRun?: boolean
  options?: unknown
}

export interface AdmissionResponse {
  uid: string
  allowed: boolean
  patchType?: 'JSONPatch'
  patch?: string
  warnings?: string[]
  auditAnnotations?: Record<string, string>
  status?: { code: number; message: string; reason?: string }
}

export interface AdmissionReviewOut {
  apiVersion: typeof REVIEW_API_VERSION
  kind: 'AdmissionReview'
  response: AdmissionResponse
}

const OPERATIONS = new Set(['CREATE', 'UPDATE', 'DELETE', 'CONNECT'])

/**
 * A value the request sent, for an error message: a string cut short (the body may be megabytes),
 * an object or array by its type only (it may be nested too deep to stringify).
 */
function quote (v: unknown): string {
  if (typeof v === 'string') return v.length <= 80 ? JSON.stringify(v) : `${JSON.stringify(v.slice(0, 80))}…`
  if (v === null || v === undefined) return 'null'
  if (typeof v === 'object') return Array.isArray(v) ? 'an array' : 'an object'
  return typeof v === 'number' || typeof v === 'boolean' ? String(v) : typeof v
}

function isObject (v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** Validate the shape pullpin relies on; anything else is the caller's error (HTTP 400). */
export function parseAdmissionReview (body: unknown): AdmissionRequest {
  if (!isObject(body)) throw new ERR_REVIEW_MALFORMED('body must be a JSON object')
  if (body.kind !== 'AdmissionReview') throw new ERR_REVIEW_MALFORMED(`kind must be "AdmissionReview", got ${quote(body.kind)}`)
  if (body.apiVersion !== REVIEW_API_VERSION) {
    throw new ERR_REVIEW_MALFORMED(`apiVersion must be "${REVIEW_API_VERSION}", got ${quote(body.apiVersion)} (configure admissionReviewVersions: [v1])`)
  }
  const req = body.request
  if (!isObject(req)) throw new ERR_REVIEW_MALFORMED('request is missing')
  if (typeof req.uid !== 'string' || req.uid === '') throw new ERR_REVIEW_MALFORMED('request.uid is missing')
  if (!isObject(req.kind) || typeof req.kind.kind !== 'string' || typeof req.kind.version !== 'string') {
    throw new ERR_REVIEW_MALFORMED('request.kind must be {group, version, kind}')
  }
  if (!isObject(req.resource) || typeof req.resource.resource !== 'string') {
    throw new ERR_REVIEW_MALFORMED('request.resource must be {group, version, resource}')
  }
  if (typeof req.operation !== 'string' || !OPERATIONS.has(req.operation)) {
    throw new ERR_REVIEW_MALFORMED(`request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, got ${quote(req.operation)}`)
  }
  if ((req.operation === 'CREATE' || req.operation === 'UPDATE') && !isObject(req.object)) {
    throw new ERR_REVIEW_MALFORMED(`request.object is missing for ${req.operation}`)
  }
  if (req.namespace !== undefined && typeof req.namespace !== 'string') throw new ERR_REVIEW_MALFORMED('request.namespace must be a string')
  if (req.dryRun !== undefined && typeof req.dryRun !== 'boolean') throw new ERR_REVIEW_MALFORMED('request.dryRun must be a boolean')
  return req as unknown as AdmissionRequest
}

export function reviewResponse (response: AdmissionResponse): AdmissionReviewOut {
  return { apiVersion: REVIEW_API_VERSION, kind: 'AdmissionReview', response }
}

/** A request pullpin mutates: a core/v1 Pod, CREATE or UPDATE, the pod itself or its ephemeralcontainers. */
export function isPodMutation (req: AdmissionRequest): boolean {
  if (req.resource.group !== '' || req.resource.resource !== 'pods' || req.kind.kind !== 'Pod') return false
  if (req.operation === 'CREATE') return req.subResource === undefined || req.subResource === ''
  if (req.operation === 'UPDATE') {
    return req.subResource === undefined || req.subResource === '' || req.subResource === 'ephemeralcontainers'
  }
  return false
}

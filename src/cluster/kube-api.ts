// Small helpers around @kubernetes/client-node 1.4's generated clients: per-call abort signals
// and content types (through middleware, the only way 1.4 offers), and Status errors turned into
// short messages. ApiException's own message embeds the response body and headers; pullpin never
// logs it as is (a Status never carries Secret data, but the messages stay readable this way).
import { ApiException, Observable, PatchStrategy, type ConfigurationOptions, type ObservableMiddleware, type RequestContext } from '@kubernetes/client-node'

export interface KubeStatus {
  /** HTTP status, or 0 when no answer came (connection refused, reset, aborted). */
  readonly code: number
  readonly reason: string
  readonly message: string
}

export function statusOf (err: unknown): KubeStatus {
  if (err instanceof ApiException) {
    const code = err.code
    let reason = ''
    let message = ''
    const body = err.body as unknown
    if (typeof body === 'string' && body !== '') {
      try {
        const s = JSON.parse(body) as { reason?: unknown; message?: unknown }
        reason = typeof s.reason === 'string' ? s.reason : ''
        message = typeof s.message === 'string' ? s.message : ''
      } catch { /* not a Status: keep the code only */ }
    } else if (body !== null && typeof body === 'object') {
      const s = body as { reason?: unknown; message?: unknown }
      reason = typeof s.reason === 'string' ? s.reason : ''
      message = typeof s.message === 'string' ? s.message : ''
    }
    return { code, reason, message: message || `HTTP ${code}` }
  }
  const e = err as { statusCode?: unknown; code?: unknown; message?: unknown; name?: unknown } | undefined
  // Watch failures carry statusCode (the stream's HTTP status) on a plain Error.
  if (typeof e?.statusCode === 'number') return { code: e.statusCode, reason: '', message: `HTTP ${e.statusCode}` }
  const message = typeof e?.message === 'string' ? e.message : String(err)
  return { code: 0, reason: typeof e?.code === 'string' ? e.code : (typeof e?.name === 'string' ? e.name : ''), message }
}

export const isNotFound = (err: unknown): boolean => statusOf(err).code === 404
export const isConflict = (err: unknown): boolean => statusOf(err).code === 409
export const isGone = (err: unknown): boolean => statusOf(err).code === 410

/** One line for logs and warnings: "409 AlreadyExists: secrets \"x\" already exists". */
export function describeError (err: unknown): string {
  const s = statusOf(err)
  if (s.code === 0) return s.reason !== '' && !s.message.includes(s.reason) ? `${s.reason}: ${s.message}` : s.message
  return `${s.code}${s.reason !== '' ? ` ${s.reason}` : ''}: ${s.message}`
}

function middleware (pre: (ctx: RequestContext) => void): ObservableMiddleware {
  return {
    pre: (ctx) => { pre(ctx); return new Observable(Promise.resolve(ctx)) },
    post: (res) => new Observable(Promise.resolve(res)),
  }
}

export interface CallOptions {
  /** Abort the request (deadline of an admission review, shutdown). */
  readonly signal?: AbortSignal
  /** PATCH content type; client-node 1.4 otherwise sends application/json-patch+json. */
  readonly patch?: 'merge' | 'json'
  /** Accept header; e.g. METADATA_ONLY for a list of metadata only. */
  readonly accept?: string
}

/**
 * Ask a list for its items' metadata only (PartialObjectMetadataList, "Receiving resources as
 * metadata only" in the API concepts); plain JSON as the fallback for a server that cannot.
 */
export const METADATA_ONLY = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json'

/** Options for one generated-client call. */
export function callOptions (opts: CallOptions): ConfigurationOptions<ObservableMiddleware> {
  const list: ObservableMiddleware[] = []
  if (opts.signal !== undefined) {
    const signal = opts.signal
    list.push(middleware((ctx) => { ctx.setSignal(signal) }))
  }
  if (opts.patch === 'merge') list.push(middleware((ctx) => { ctx.setHeaderParam('Content-Type', PatchStrategy.MergePatch) }))
  if (opts.accept !== undefined) {
    const accept = opts.accept
    list.push(middleware((ctx) => { ctx.setHeaderParam('Accept', accept) }))
  }
  if (opts.patch === 'json') list.push(middleware((ctx) => { ctx.setHeaderParam('Content-Type', PatchStrategy.JsonPatch) }))
  return { middleware: list, middlewareMergeStrategy: 'append' }
}

/** A signal that aborts after `ms` or when `parent` aborts. */
export function timeoutSignal (ms: number, parent?: AbortSignal): AbortSignal {
  const t = AbortSignal.timeout(ms)
  return parent === undefined ? t : AbortSignal.any([t, parent])
}

/**
 * metav1.MicroTime as the API server parses it (RFC 3339 with exactly six fractional digits): a
 * JS Date serialises with three, which kube-apiserver refuses for Lease times.
 */
export function microTime (d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z')
}

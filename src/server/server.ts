// The HTTPS transport: Fastify routes, TLS with live certificate reload, and the error mapping
// from coded errors to HTTP statuses. No admission logic lives here.
import type { SecureContextOptions } from 'node:tls'
import Fastify, { LogController, type FastifyError } from 'fastify'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { AdmissionHandler } from '../admission/handler.js'
import type { TlsMaterial } from '../certs/certificate-source.js'
import { ERR_BODY_TOO_LARGE, ERR_REQUEST_INVALID, ERR_REVIEW_MALFORMED, ERR_UNSUPPORTED_MEDIA_TYPE, isCodedError, type CodedError } from '../errors.js'
import { formatPosition, jsonErrorPosition } from '../json-position.js'
import type { Readiness } from './readiness.js'
import { turnFlush } from './turn-flush.js'

/** The API server sends AdmissionReviews of a few KiB; etcd's object limit is 1.5 MiB. 3 MiB leaves room and stops abuse. */
export const BODY_LIMIT_BYTES = 3 * 1024 * 1024
export const MUTATE_PATH = '/mutate'
/** The validating webhook for workloads (src/admission/workload.ts). */
export const VALIDATE_PATH = '/validate'

export interface ServerOptions {
  readonly tls: TlsMaterial
  readonly handler: AdmissionHandler
  /** The workload webhook's handler; without it /validate is not served. */
  readonly validate?: AdmissionHandler
  readonly logger: Logger
  readonly metrics: Registry
  readonly readiness: Readiness
  /** Requests still open this long after close() starts are cut. */
  readonly requestTimeoutMs?: number
}

export interface PullpinServer {
  readonly fastify: ReturnType<typeof makeFastify>
  /** Swap the serving certificate without dropping connections (tls.Server#setSecureContext). */
  reloadTls (tls: TlsMaterial): void
}

export function secureContextOptions (tls: TlsMaterial): SecureContextOptions {
  return { cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }
}

function makeFastify (opts: ServerOptions) {
  return Fastify({
    https: secureContextOptions(opts.tls),
    loggerInstance: opts.logger,
    // Review log lines come from the admission handler; per-request access logs would repeat them.
    logController: new LogController({ disableRequestLogging: true }),
    // No child logger per request either (it is made on every request, used on almost none): the
    // error handler, the only user of request.log, puts the request id in its own lines.
    childLoggerFactory: (logger) => logger,
    bodyLimit: BODY_LIMIT_BYTES,
    // Keep-alive connections from the API server are closed on shutdown once idle, so close()
    // finishes in-flight reviews and then returns instead of waiting for the peer.
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    requestTimeout: opts.requestTimeoutMs ?? 30_000,
    keepAliveTimeout: 65_000,
  })
}

const STATUS_TEXT: Readonly<Record<number, string>> = { 400: 'Bad Request', 413: 'Payload Too Large', 415: 'Unsupported Media Type' }

/**
 * Fastify's own 4xx errors (body too large, unsupported media type, a bad content-length…) as
 * pullpin's coded errors, so every refusal carries a PULLPIN_ code a client can branch on.
 */
function codedError (err: FastifyError, contentType: string | undefined): CodedError {
  if (isCodedError(err) && err.code.startsWith('PULLPIN_')) return err
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ERR_BODY_TOO_LARGE(BODY_LIMIT_BYTES)
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ERR_UNSUPPORTED_MEDIA_TYPE(JSON.stringify((contentType ?? '(none)').slice(0, 100)))
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ERR_REVIEW_MALFORMED('the body is empty')
  }
  const status = err.statusCode
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const coded: CodedError = new ERR_REQUEST_INVALID(err.message)
    coded.statusCode = status
    return coded
  }
  return err
}

export function buildServer (opts: ServerOptions): PullpinServer {
  const fastify = makeFastify(opts)

  // Request bodies are parsed by JSON.parse alone. Fastify's own parser refuses any "__proto__" or
  // "constructor" key with a 400 (prototype-poisoning guard), but those are legal keys in a pod
  // (labels, annotations, CSI volumeAttributes are not validated before admission webhooks run),
  // and with failurePolicy Ignore that 400 admitted the pod without its secrets and pins
  // (issue 11). JSON.parse defines every key as an own data property, so "__proto__" never sets a
  // prototype; nothing downstream assigns user keys onto plain objects (src/mutate/mutator.ts
  // copies by spread, which defines properties too).
  // Only application/json is read: every other content type (text/plain included, which Fastify
  // would otherwise hand over as a string) is 415.
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    const text = body as string
    try {
      done(null, JSON.parse(text) as unknown)
    } catch {
      // V8's message quotes the body around the error; the position says enough.
      const at = jsonErrorPosition(text)
      done(new ERR_REVIEW_MALFORMED(text.trim() === '' ? 'the body is empty' : `the body is not valid JSON${at === undefined ? '' : ` (${formatPosition(at)})`}`), undefined)
    }
  })

  fastify.setErrorHandler((raw: FastifyError, request, reply) => {
    const err = codedError(raw, request.headers['content-type'])
    const status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500
    if (status >= 500) request.log.error({ reqId: request.id, err }, 'request failed')
    else request.log.warn({ reqId: request.id, code: err.code, message: err.message }, 'bad request')
    return reply.code(status).send({
      error: STATUS_TEXT[status] ?? (status < 500 ? 'Bad Request' : 'Internal Server Error'),
      code: isCodedError(err) && err.code.startsWith('PULLPIN_') ? err.code : 'PULLPIN_INTERNAL',
      message: err.message,
    })
  })

  // Answers computed in one event-loop turn are written together at its end (turn-flush.ts).
  const endOfTurn = turnFlush()
  fastify.post(MUTATE_PATH, async (request) => {
    const review = await opts.handler(request.body)
    await endOfTurn()
    return review
  })
  const validate = opts.validate
  if (validate !== undefined) {
    fastify.post(VALIDATE_PATH, async (request) => {
      const review = await validate(request.body)
      await endOfTurn()
      return review
    })
  }

  fastify.get('/healthz', () => ({ status: 'ok' }))

  fastify.get('/readyz', (_request, reply) => {
    const s = opts.readiness.status()
    return reply.code(s.ready ? 200 : 503).send({ status: s.ready ? 'ok' : 'unready', checks: s.checks })
  })

  fastify.get('/metrics', async (_request, reply) => {
    const body = await opts.metrics.metrics()
    return reply.type(opts.metrics.contentType).send(body)
  })

  return {
    fastify,
    reloadTls (tls) {
      fastify.server.setSecureContext(secureContextOptions(tls))
    },
  }
}

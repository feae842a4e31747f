// The HTTPS transport: Fastify routes, TLS with live certificate reload, and the error mapping
// from coded errors to HTTP statuses. No admission logic lives here.
import type { SecureContextOptions } from 'node:tls'
import type { Server as HttpsServer } from 'node:https'
import Fastify, { LogController, type FastifyError } from 'fastify'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { AdmissionHandler } from '../admission/handler.js'
import type { TlsMaterial } from '../certs/certificate-source.js'
import { isCodedError } from '../errors.js'
import type { Readiness } from './readiness.js'
import { turnFlush } from './turn-flush.js'

/** The API server sends AdmissionReviews of a few KiB; etcd's object limit is 1.5 MiB. 3 MiB leaves room and stops abuse. */
export const BODY_LIMIT_BYTES = 3 * 1024 * 1024
export const MUTATE_PATH = '/mutate'

export interface ServerOptions {
  readonly tls: TlsMaterial
  readonly handler: AdmissionHandler
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

export function buildServer (opts: ServerOptions): PullpinServer {
  const fastify = makeFastify(opts)

  fastify.setErrorHandler((err: FastifyError, request, reply) => {
    const status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500
    if (status >= 500) request.log.error({ reqId: request.id, err }, 'request failed')
    else request.log.warn({ reqId: request.id, code: err.code, message: err.message }, 'bad request')
    void reply.code(status).send({
      error: status === 413 ? 'Payload Too Large' : status < 500 ? 'Bad Request' : 'Internal Server Error',
      code: isCodedError(err) ? err.code : 'PULLPIN_INTERNAL',
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

  fastify.get('/healthz', async () => ({ status: 'ok' }))

  fastify.get('/readyz', async (_request, reply) => {
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
      (fastify.server as HttpsServer).setSecureContext(secureContextOptions(tls))
    },
  }
}

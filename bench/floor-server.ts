// The floor: a bare Fastify HTTPS server that answers every POST /mutate with one constant
// AdmissionReview response. Same Fastify version, certificate, TLS minimum, body limit and
// keep-alive as pullpin's server (src/server/server.ts), no logger, no work: whatever pullpin
// costs on top of this is admission work.
//
//   node --import tsx bench/floor-server.ts --port N --cert FILE --key FILE [--response FILE] [--work-us N] [--turn-flush]
//
// Calibration (bench/run.ts breakdown): --response answers with that file's AdmissionReview (say,
// pullpin's own answer, to see what the bigger response costs), --work-us spins the CPU that long
// per request (to see what any server doing that much work per request gets on this machine),
// --turn-flush holds each answer to the end of its event-loop turn as pullpin's server does.
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import Fastify from 'fastify'
import { BODY_LIMIT_BYTES } from '../src/server/server.js'
import { turnFlush } from '../src/server/turn-flush.js'

const { values } = parseArgs({ options: { port: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' }, response: { type: 'string' }, 'work-us': { type: 'string' }, 'turn-flush': { type: 'boolean' } } })
if (values.port === undefined || values.cert === undefined || values.key === undefined) {
  throw new Error('usage: floor-server.ts --port N --cert FILE --key FILE')
}

const RESPONSE: unknown = values.response !== undefined
  ? JSON.parse(readFileSync(values.response, 'utf8'))
  : {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid: '705ab4f5-6393-11e8-b7cc-42010a800002', allowed: true },
    }
const WORK_MS = Number(values['work-us'] ?? 0) / 1000

/** Busy CPU for WORK_MS, as a handler computing something would be. */
function work (): void {
  const until = performance.now() + WORK_MS
  while (performance.now() < until);
}

const fastify = Fastify({
  https: { cert: readFileSync(values.cert, 'utf8'), key: readFileSync(values.key, 'utf8'), minVersion: 'TLSv1.2' },
  logger: false,
  bodyLimit: BODY_LIMIT_BYTES,
  forceCloseConnections: 'idle',
  keepAliveTimeout: 65_000,
})
const endOfTurn = values['turn-flush'] === true ? turnFlush() : undefined
fastify.post('/mutate', async () => {
  if (WORK_MS > 0) work()
  if (endOfTurn !== undefined) await endOfTurn()
  return RESPONSE
})
fastify.get('/readyz', () => Promise.resolve({ status: 'ok' }))

await fastify.listen({ host: '127.0.0.1', port: Number(values.port) })
process.once('SIGTERM', () => { void fastify.close().then(() => process.exit(0)) })

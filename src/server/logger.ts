// pino JSON logs. Secret names may be logged; secret contents and credentials never: properties
// named like secret material are censored wherever they appear in a log object, and the code
// never puts secret material into messages in the first place (tests grep every channel for a
// known password).
//
// Censoring is done by a pino `formatters.log` hook (and a wrapped child()) rather than pino's
// `redact` paths: with wildcard-first paths (`*.password`) pino runs its redactor (clone +
// JSON.stringify) on every property of every line, a large part of an audited pod's review
// (BENCHMARKS.md, "Contracts and speed devices"). The hook walks the logged object once, copies
// only what it censors, and matches the names at any depth instead of the one or two levels the
// paths covered. pino applies formatters.bindings to the root's bindings only, hence the wrapped
// child() below (pino's own `redact` would cover child bindings, but not at any depth).
import { pino, type Logger, type DestinationStream, type LevelWithSilent } from 'pino'

/** Property names (compared in lower case) whose values never reach a log line. */
export const REDACTED_KEYS: ReadonlySet<string> = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'password',
  'auth',
  'token',
  'access_token',
  'refresh_token',
  'identitytoken',
  'registrytoken',
  'data',
  'stringdata',
  'dockerconfigjson',
  '.dockerconfigjson',
  '.dockercfg',
])

export const CENSOR = '[redacted]'

/** Log objects are shallow; anything nested deeper (or a cycle) is censored as a whole. */
const MAX_DEPTH = 12

/**
 * `value` with every property named in REDACTED_KEYS replaced by "[redacted]", at any depth of
 * plain objects, arrays and errors (including `cause` and an AggregateError's `errors`).
 * Copy-on-write: what needs no censoring is returned as it is, so a log line without secrets
 * allocates nothing. Other objects (class instances, buffers) serialize through their own toJSON,
 * as RegistryCredential, Keyring and CredentialStore do to hide their passwords.
 */
export function redactSecrets<T> (value: T): T {
  return redact(value, 0) as T
}

function isSecretKey (key: string): boolean {
  return REDACTED_KEYS.has(key) || REDACTED_KEYS.has(key.toLowerCase())
}

function redact (value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object') return value
  const isArray = Array.isArray(value)
  const isError = value instanceof Error
  if (!isArray && !isError) {
    const proto = Object.getPrototypeOf(value) as unknown
    if (proto !== Object.prototype && proto !== null) return value
  }
  if (depth >= MAX_DEPTH) return CENSOR
  if (isArray) {
    let copy: unknown[] | undefined
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i]
      const r = redact(v, depth + 1)
      if (r !== v) (copy ??= value.slice())[i] = r
    }
    return copy ?? value
  }
  const obj = value as Record<string, unknown>
  let copy: Record<string, unknown> | undefined
  for (const key of Object.keys(obj)) {
    const v = obj[key]
    const r = v !== undefined && isSecretKey(key) ? CENSOR : redact(v, depth + 1)
    if (r === v) continue
    copy ??= copyOf(obj)
    // A "__proto__" key (a user's annotation, parsed by JSON.parse) is a key here: assigning it would set the prototype.
    if (key === '__proto__') Object.defineProperty(copy, key, { value: r, writable: true, enumerable: true, configurable: true })
    else copy[key] = r
  }
  if (isError) {
    // Not enumerable, but serialized by pino: `cause`, and the `errors` of an AggregateError.
    for (const key of ['cause', 'errors'] as const) {
      const v = obj[key]
      if (v === undefined || Object.prototype.propertyIsEnumerable.call(obj, key)) continue
      const r = redact(v, depth + 1)
      if (r !== v) Object.defineProperty(copy ??= copyOf(obj), key, { value: r, writable: true, configurable: true, enumerable: false })
    }
  }
  return copy ?? value
}

/** A shallow copy that still serializes the same way (an error stays an error for pino's serializer). */
function copyOf (obj: Record<string, unknown>): Record<string, unknown> {
  // Spread, not Object.assign: it defines properties, so an own "__proto__" key is copied as a key.
  const copy: Record<string, unknown> = { ...obj }
  const proto = Object.getPrototypeOf(obj) as object | null
  if (proto !== Object.prototype) Object.setPrototypeOf(copy, proto)
  if (obj instanceof Error) {
    for (const key of ['message', 'stack', 'cause', 'errors'] as const) {
      if (Object.prototype.hasOwnProperty.call(obj, key)) Object.defineProperty(copy, key, { value: obj[key], writable: true, configurable: true, enumerable: false })
    }
  }
  return copy
}

/** Bytes of log lines held before one write(2); and the longest a line waits at low traffic. */
const LOG_BUFFER_BYTES = 4096
const LOG_FLUSH_INTERVAL_MS = 200

/**
 * The production log destination: lines are buffered and written synchronously in 4 KiB writes
 * (or every 200 ms when traffic is low), instead of one write(2) per line on the admission path.
 * Synchronous, because pino's asynchronous destination hands each write to libuv's thread pool on
 * the server's own core (BENCHMARKS.md, "Tried and not kept"). Whoever owns the process must call
 * `flushSync()` when it exits (src/cli.ts does).
 */
export function bufferedDestination (fd: number): pino.DestinationStream & { flushSync (): void } {
  return pino.destination({ dest: fd, sync: true, minLength: LOG_BUFFER_BYTES, periodicFlush: LOG_FLUSH_INTERVAL_MS })
}

export function createLogger (opts: { level?: LevelWithSilent; destination?: DestinationStream } = {}): Logger {
  const logger = pino({
    level: opts.level ?? 'info',
    formatters: { log: redactSecrets, bindings: redactSecrets },
    base: { name: 'pullpin' },
    timestamp: pino.stdTimeFunctions.isoTime,
  }, opts.destination)
  // pino applies formatters.bindings to the root's own bindings only, not to a child's: censor
  // those when the child is made. Children are Object.create(parent), so they inherit this method.
  // Unbound on purpose: it is called with each child as `this` below.
  const pinoChild = logger.child // eslint-disable-line @typescript-eslint/unbound-method
  logger.child = function (this: Logger, bindings: Record<string, unknown>, options?: object) {
    return pinoChild.call(this, redactSecrets(bindings), options)
  } as Logger['child']
  return logger
}

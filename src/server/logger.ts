// pino JSON logs. Secret names may be logged; secret contents and credentials never: these
// paths are censored wherever they appear in a log object, and the code never puts secret
// material into messages in the first place (tests grep every channel for a known password).
import { pino, type Logger, type DestinationStream, type LevelWithSilent } from 'pino'

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'headers.authorization',
  'authorization',
  'password',
  'auth',
  'token',
  'access_token',
  'identitytoken',
  '*.authorization',
  '*.password',
  '*.auth',
  '*.token',
  '*.access_token',
  '*.identitytoken',
  '*.data',
  '*.stringData',
  '*.*.data',
  '*.*.stringData',
  '*.dockerconfigjson',
  '*[".dockerconfigjson"]',
]

export function createLogger (opts: { level?: LevelWithSilent; destination?: DestinationStream } = {}): Logger {
  return pino({
    level: opts.level ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { name: 'pullpin' },
    timestamp: pino.stdTimeFunctions.isoTime,
  }, opts.destination)
}

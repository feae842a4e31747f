#!/usr/bin/env node
// `pullpin serve|resolve|version`. The only module that reads process.env and argv: it turns
// them into options and hands them to src/app.ts. Exit codes: 0 ok, 1 runtime failure,
// 2 bad usage or bad configuration.
import { readFileSync, realpathSync } from 'node:fs'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { fileURLToPath } from 'node:url'
import { dirname, join, resolve } from 'node:path'
import { createApp } from './app.js'
import { loadConfig } from './policy/config.js'
import { createLogger } from './server/logger.js'
import { SelfSignedDirectorySource } from './certs/self-signed.js'
import { FileCertificateSource } from './certs/file-source.js'
import { isCodedError } from './errors.js'

const here = dirname(fileURLToPath(import.meta.url))
const packageRoot = resolve(here, '..')

export const EXIT_OK = 0
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2

class UsageError extends Error {}

interface Io {
  readonly out: (s: string) => void
  readonly err: (s: string) => void
  readonly env: NodeJS.ProcessEnv
}

const MAIN_HELP = `pullpin — Kubernetes admission webhook that injects imagePullSecrets and pins image tags

Usage: pullpin <command> [options]

Commands:
  serve      run the HTTPS admission webhook
  version    print the version
  help       show this help

Run 'pullpin <command> --help' for a command's options.
`

const SERVE_HELP = `Usage: pullpin serve [options]

Runs the admission webhook over HTTPS (POST /mutate, GET /healthz, /readyz, /metrics).

Options:
  --config FILE            config file (YAML)          [env PULLPIN_CONFIG, default examples/pullpin.yaml]
  --port N                 HTTPS port                  [env PULLPIN_PORT, default 8443]
  --host ADDR              listen address              [env PULLPIN_HOST, default 0.0.0.0]
  --tls-cert FILE          serving certificate (PEM)   [env PULLPIN_TLS_CERT]
  --tls-key FILE           its private key (PEM)       [env PULLPIN_TLS_KEY]
                           without both: a self-signed CA and certificate are made in --certs-dir
  --certs-dir DIR          where self-signed certificates are kept [default certs/]
  --service-name NAME      Service name for the certificate's DNS names [env PULLPIN_SERVICE_NAME, default pullpin]
  --namespace NS           pullpin's own namespace (never mutated) [env POD_NAMESPACE, default pullpin]
  --review-deadline-ms N   answer every review within N ms [env PULLPIN_REVIEW_DEADLINE_MS, default 9000]
  --shutdown-delay-ms N    on SIGTERM, stay unready N ms before closing [env PULLPIN_SHUTDOWN_DELAY_MS, default 0]
  --log-level LEVEL        fatal|error|warn|info|debug|trace|silent [env PULLPIN_LOG_LEVEL, default info]
  -h, --help               show this help
`

const SERVE_OPTIONS = {
  config: { type: 'string' },
  port: { type: 'string' },
  host: { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'certs-dir': { type: 'string' },
  'service-name': { type: 'string' },
  namespace: { type: 'string' },
  'review-deadline-ms': { type: 'string' },
  'shutdown-delay-ms': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options']

export function version (): string {
  return (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version
}

function integer (name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined || value === '') return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, got "${value}"`)
  return n
}

const LOG_LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])

async function serve (argv: string[], io: Io): Promise<number> {
  const { values } = parseArgs({ args: argv, options: SERVE_OPTIONS, strict: true, allowPositionals: false })
  if (values.help === true) { io.out(SERVE_HELP); return EXIT_OK }
  const env = io.env
  const configFile = values.config ?? env.PULLPIN_CONFIG ?? join(packageRoot, 'examples', 'pullpin.yaml')
  const port = integer('port', values.port ?? env.PULLPIN_PORT, 8443, 0, 65535)
  const deadline = integer('review-deadline-ms', values['review-deadline-ms'] ?? env.PULLPIN_REVIEW_DEADLINE_MS, 9000, 100, 30_000)
  const shutdownDelay = integer('shutdown-delay-ms', values['shutdown-delay-ms'] ?? env.PULLPIN_SHUTDOWN_DELAY_MS, 0, 0, 120_000)
  const level = values['log-level'] ?? env.PULLPIN_LOG_LEVEL ?? 'info'
  if (!LOG_LEVELS.has(level)) throw new UsageError(`--log-level must be one of ${[...LOG_LEVELS].join(', ')}, got "${level}"`)
  const certFile = values['tls-cert'] ?? env.PULLPIN_TLS_CERT
  const keyFile = values['tls-key'] ?? env.PULLPIN_TLS_KEY
  if ((certFile === undefined) !== (keyFile === undefined)) throw new UsageError('--tls-cert and --tls-key go together')
  const service = values['service-name'] ?? env.PULLPIN_SERVICE_NAME ?? 'pullpin'
  const namespace = values.namespace ?? env.POD_NAMESPACE ?? 'pullpin'

  const config = await loadConfig(configFile)
  const logger = createLogger({ level: level as 'info' })
  const certificates = certFile !== undefined && keyFile !== undefined
    ? new FileCertificateSource(certFile, keyFile)
    : new SelfSignedDirectorySource(values['certs-dir'] ?? join(process.cwd(), 'certs'), {
      dnsNames: ['localhost', service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`],
      ipAddresses: ['127.0.0.1', '::1'],
    })
  const app = await createApp({
    config,
    logger,
    certificates,
    host: values.host ?? env.PULLPIN_HOST ?? '0.0.0.0',
    port,
    ownNamespace: namespace,
    reviewDeadlineMs: deadline,
    shutdownDelayMs: shutdownDelay,
  })
  await app.start()
  logger.info({ config: configFile }, 'config loaded')

  return await new Promise<number>((resolveExit) => {
    let stopping = false
    const stop = (signal: string): void => {
      if (stopping) return
      stopping = true
      logger.info({ signal }, 'shutting down: unready, draining in-flight reviews')
      app.shutdown().then(() => { logger.info('stopped'); resolveExit(EXIT_OK) }, (err: unknown) => {
        logger.error({ err }, 'shutdown failed')
        resolveExit(EXIT_FAILURE)
      })
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
}

export async function main (argv: string[], io: Io): Promise<number> {
  const [command, ...rest] = argv
  try {
    switch (command) {
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.out(MAIN_HELP)
        return command === undefined ? EXIT_USAGE : EXIT_OK
      case 'version':
      case '--version':
        io.out(`pullpin ${version()}\n`)
        return EXIT_OK
      case 'serve':
        return await serve(rest, io)
      default:
        io.err(`pullpin: unknown command "${command}"\n\n${MAIN_HELP}`)
        return EXIT_USAGE
    }
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      io.err(`pullpin: ${(err as Error).message}\nRun 'pullpin ${command ?? ''} --help' for usage.\n`)
      return EXIT_USAGE
    }
    if (isCodedError(err) && err.code.startsWith('PULLPIN_CONFIG')) {
      io.err(`pullpin: ${err.message}\n`)
      return EXIT_USAGE
    }
    io.err(`pullpin: ${(err as Error).message}\n`)
    return EXIT_FAILURE
  }
}

// Run only when executed, not when imported by tests.
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2), {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    env: process.env,
  }).then((code) => { process.exitCode = code }, (err: unknown) => {
    process.stderr.write(`pullpin: ${(err as Error).stack ?? String(err)}\n`)
    process.exitCode = EXIT_FAILURE
  })
}

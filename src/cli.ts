#!/usr/bin/env node
// `pullpin serve|resolve|version`. The only module that reads process.env and argv: it turns
// them into options and hands them to src/app.ts. Exit codes: 0 ok, 1 runtime failure,
// 2 bad usage or bad configuration.
import { existsSync, readFileSync, realpathSync } from 'node:fs'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { fileURLToPath } from 'node:url'
import { delimiter, dirname, join, resolve as resolvePath } from 'node:path'
import { createApp } from './app.js'
import { loadConfig, parseConfig } from './policy/config.js'
import { CredentialStore, readDockerConfigFiles } from './registry/credential-store.js'
import { formatResolveResult, resolveImage } from './resolve.js'
import { bufferedDestination, createLogger } from './server/logger.js'
import { SelfSignedDirectorySource } from './certs/self-signed.js'
import { FileCertificateSource } from './certs/file-source.js'
import { isCodedError } from './errors.js'
import type { CertificateSource } from './certs/certificate-source.js'
import { SERVICE_ACCOUNT_DIR } from './cluster/service-account.js'
import type { ClusterConnectOptions } from './cluster/connection.js'

const here = dirname(fileURLToPath(import.meta.url))
const packageRoot = resolvePath(here, '..')

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
  resolve    show what the webhook sees for an image: digest, SHA tags, the pin it would write
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
  --cluster                connect to a cluster: --kubeconfig, else KUBECONFIG, else the pod's
                           service account [env PULLPIN_CLUSTER=true]
  --kubeconfig FILE        the cluster of this kubeconfig (FILE:FILE merges); implies --cluster
  --standalone             never connect to a cluster (the default; overrides PULLPIN_CLUSTER)
  -h, --help               show this help

Standalone is the default, also in a pod or with KUBECONFIG set: namespace labels come from the
config (namespaces.labels). Only with --cluster (the Helm chart passes it) or --kubeconfig does
pullpin read namespace labels from the cluster, keep pull-secret copies, elect a leader (POD_NAME
names this replica) and, without --tls-cert/--tls-key, keep its CA and serving certificate in a
Secret of --namespace.
`

const RESOLVE_HELP = `Usage: pullpin resolve IMAGE [options]

Resolves IMAGE the way the webhook does: the normalized reference, the digest and media type of its
tag, the SHA tags that share that digest, the image as pullpin would pin it, and what the webhook's
checks find (exists, pull access, platforms, reference).

Options:
  --docker-config FILE     dockerconfigjson with registry credentials (repeatable) [env DOCKER_CONFIG dir's config.json]
  --config FILE            read registry, checks and pinning settings from a pullpin config
  --format F               tag | digest | tag+digest (default: the config's, else tag)
  --ca-file FILE           CA of a registry behind a private CA
  --allow-private          allow the registry to resolve to a private or loopback address
  --json                   print JSON
  -h, --help               show this help

Exit codes: 0 resolved, 1 the registry failed or the tag does not exist, 2 bad usage.
`

const RESOLVE_OPTIONS = {
  'docker-config': { type: 'string', multiple: true },
  config: { type: 'string' },
  format: { type: 'string' },
  'ca-file': { type: 'string' },
  'allow-private': { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options']

async function resolveCommand (argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: RESOLVE_OPTIONS, strict: true, allowPositionals: true })
  if (values.help === true) { io.out(RESOLVE_HELP); return EXIT_OK }
  if (positionals.length !== 1) throw new UsageError('resolve takes exactly one IMAGE')
  const format = values.format
  if (format !== undefined && !['tag', 'digest', 'tag+digest'].includes(format)) throw new UsageError(`--format must be tag, digest or tag+digest, got "${format}"`)
  const config = values.config !== undefined ? await loadConfig(values.config) : parseConfig('', 'defaults')
  const files = values['docker-config'] ?? (io.env.DOCKER_CONFIG !== undefined ? [join(io.env.DOCKER_CONFIG, 'config.json')] : [])
  const credentials = new CredentialStore()
  credentials.replace(await readDockerConfigFiles([...config.registry.credentials.dockerConfigFiles, ...files]))
  const result = await resolveImage(positionals[0]!, {
    config,
    credentials,
    ...(format !== undefined ? { format: format as 'tag' } : {}),
    ...(values['ca-file'] !== undefined ? { caFile: values['ca-file'] } : {}),
    allowPrivate: values['allow-private'] === true,
  })
  io.out(values.json === true ? JSON.stringify(result, null, 2) + '\n' : formatResolveResult(result))
  return result.digest !== undefined ? EXIT_OK : EXIT_FAILURE
}

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
  cluster: { type: 'boolean' },
  kubeconfig: { type: 'string' },
  standalone: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options']

/**
 * Standalone unless cluster mode is asked for: --cluster, PULLPIN_CLUSTER=true or --kubeconfig.
 * Not a KUBECONFIG in the environment nor running in a pod: a platform engineer's shell has
 * KUBECONFIG set, and `npm start` there must not take a Lease or patch a webhook configuration
 * of whatever cluster it points at.
 */
export function clusterChoice (flags: { readonly cluster?: boolean | undefined, readonly standalone?: boolean | undefined, readonly kubeconfig?: string | undefined }, env: NodeJS.ProcessEnv, tokenExists = (f: string) => existsSync(f)): ClusterConnectOptions | undefined {
  const fromEnv = env.PULLPIN_CLUSTER
  if (fromEnv !== undefined && !['', 'true', 'false'].includes(fromEnv)) throw new UsageError(`PULLPIN_CLUSTER must be true or false, got "${fromEnv}"`)
  const kubeconfigFlag = flags.kubeconfig !== undefined && flags.kubeconfig !== ''
  if (flags.standalone === true) {
    if (flags.cluster === true || kubeconfigFlag) throw new UsageError('--standalone contradicts --cluster and --kubeconfig')
    return undefined
  }
  if (flags.cluster !== true && !kubeconfigFlag && fromEnv !== 'true') return undefined
  const target = clusterTarget(flags.kubeconfig ?? env.KUBECONFIG, env, tokenExists)
  if (target === undefined) throw new UsageError('--cluster needs a cluster: --kubeconfig FILE, KUBECONFIG, or a pod with a service account token')
  return target
}

/** Which cluster to connect to, if any: --kubeconfig / KUBECONFIG, else the pod's service account. */
export function clusterTarget (kubeconfig: string | undefined, env: NodeJS.ProcessEnv, tokenExists = (f: string) => existsSync(f)): ClusterConnectOptions | undefined {
  if (kubeconfig !== undefined && kubeconfig !== '') {
    const files = kubeconfig.split(delimiter).filter(f => f !== '')
    if (files.length > 0) return { kubeconfigFiles: files }
  }
  const host = env.KUBERNETES_SERVICE_HOST
  const port = env.KUBERNETES_SERVICE_PORT
  if (host !== undefined && host !== '' && port !== undefined && port !== '' && tokenExists(join(SERVICE_ACCOUNT_DIR, 'token'))) {
    return { inCluster: { host, port } }
  }
  return undefined
}

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

  const target = clusterChoice(values, env)

  const config = await loadConfig(configFile)
  const destination = bufferedDestination(1)
  // Whatever is still buffered goes out when the process ends, however it ends.
  process.on('exit', () => { try { destination.flushSync() } catch { /* stdout is gone */ } })
  const logger = createLogger({ level: level as 'info', destination })
  const dnsNames = ['localhost', service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`]
  // Loaded only with a cluster: standalone pullpin never loads @kubernetes/client-node.
  const clusterModule = target !== undefined ? await import('./cluster/index.js') : undefined
  const cluster = target !== undefined ? clusterModule!.connectCluster(target) : undefined
  let certificates: CertificateSource
  if (certFile !== undefined && keyFile !== undefined) {
    certificates = new FileCertificateSource(certFile, keyFile)
  } else if (cluster !== undefined) {
    certificates = new clusterModule!.SecretCertificateSource({
      connection: cluster,
      namespace,
      secretName: config.cluster.certificateSecret,
      dnsNames,
      ipAddresses: ['127.0.0.1', '::1'],
      validityDays: config.cluster.certificateValidityDays,
      renewBeforeDays: config.cluster.renewBeforeDays,
      logger,
    })
  } else {
    certificates = new SelfSignedDirectorySource(values['certs-dir'] ?? join(process.cwd(), 'certs'), { dnsNames, ipAddresses: ['127.0.0.1', '::1'] })
  }
  if (cluster !== undefined) logger.info({ cluster: cluster.description }, 'connecting to the cluster')
  const app = await createApp({
    config,
    logger,
    certificates,
    host: values.host ?? env.PULLPIN_HOST ?? '0.0.0.0',
    port,
    ownNamespace: namespace,
    reviewDeadlineMs: deadline,
    shutdownDelayMs: shutdownDelay,
    ...(cluster !== undefined ? { cluster } : {}),
    ...(env.POD_NAME !== undefined && env.POD_NAME !== '' ? { identity: env.POD_NAME } : {}),
  })
  await app.start()
  logger.info({ config: configFile }, 'config loaded')

  return await new Promise<number>((resolve) => {
    let stopping = false
    const stop = (signal: string): void => {
      if (stopping) return
      stopping = true
      logger.info({ signal }, 'shutting down: unready, draining in-flight reviews')
      app.shutdown().then(() => { logger.info('stopped'); resolve(EXIT_OK) }, (err: unknown) => {
        logger.error({ err }, 'shutdown failed')
        resolve(EXIT_FAILURE)
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
      case 'resolve':
        return await resolveCommand(rest, io)
      default:
        io.err(`pullpin: unknown command "${command}"\n\n${MAIN_HELP}`)
        return EXIT_USAGE
    }
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      io.err(`pullpin: ${(err as Error).message}\nRun 'pullpin ${command ?? ''} --help' for usage.\n`)
      return EXIT_USAGE
    }
    if (isCodedError(err) && (err.code.startsWith('PULLPIN_CONFIG') || err.code === 'PULLPIN_REFERENCE_INVALID')) {
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

#!/usr/bin/env node
// `pullpin serve|resolve|version`. The only module that reads process.env and argv: it turns
// them into options and hands them to src/app.ts. Exit codes: 0 ok, 1 runtime failure,
// 2 bad usage or bad configuration.
import { existsSync, readFileSync, realpathSync } from 'node:fs'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { fileURLToPath } from 'node:url'
import { delimiter, dirname, join, resolve as resolvePath } from 'node:path'
import { createApp } from './app.js'
import { loadConfig, parseConfig, type Config } from './policy/config.js'
import { CHECKS, DEFAULT_FAIL_ON, type Check } from './review/findings.js'
import { ReviewInputError } from './review/input.js'
import { CredentialStore, readDockerConfigFiles } from './registry/credential-store.js'
import { CredentialSources } from './credentials/sources.js'
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
  /** Standard input, read whole (`pullpin review -`). */
  readonly readStdin?: () => Promise<string>
  /** Whether stderr is a terminal (progress lines). */
  readonly stderrIsTty?: boolean
}

const MAIN_HELP = `pullpin — Kubernetes admission webhook that injects imagePullSecrets and pins image tags

Usage: pullpin <command> [options]

Commands:
  serve      run the HTTPS admission webhook
  resolve    show what the webhook sees for an image: digest, SHA tags, the pin it would write
  review     what the webhook would do to manifests before they are deployed (CI), --fix writes the pins
  doctor     why an image does not pull: the registry-auth troubleshooting ladder, check by check
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
  const credentials = await credentialsFor(config, values['docker-config'], io)
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

const REVIEW_HELP = `Usage: pullpin review [PATH…|-] [options]

Runs the webhook's own decisions on Kubernetes YAML or JSON before it is deployed: files,
directories (recursively: *.yaml, *.yml, *.json), or - for stdin (helm template … | pullpin review -).
Every Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job and CronJob
is reviewed: the pins it would write, the imagePullSecrets it would add, and what would stop the
pod from pulling (missing image, invalid reference, refused credentials, registry errors).

Options:
  --config FILE            the webhook's pullpin config (pinning, registries, credentials, pullSecrets)
  --docker-config FILE     dockerconfigjson with registry credentials (repeatable) [env DOCKER_CONFIG dir's config.json]
  --namespace NS           the namespace every object would land in (default: each object's, else default)
  --output F               table | json | sarif (default table)
  --fail-on CHECKS         comma-separated checks that make the exit code 1, or "any" or "none"
                           [default missing-image,reference-error; checks: ${CHECKS.join(', ')}]
  --fix                    write the pins into the files (only the image strings change)
  --values FILE            Helm values file whose images are split into repository and tag (repeatable)
  --image-path PATH        where such an image is in the values files, e.g. image or sidecar.image
                           (repeatable; default image); with --fix the SHA tag goes into its tag
  -h, --help               show this help

Exit codes: 0 clean, 1 findings at or above --fail-on, 2 usage or input errors.
`

const REVIEW_OPTIONS = {
  config: { type: 'string' },
  'docker-config': { type: 'string', multiple: true },
  namespace: { type: 'string' },
  output: { type: 'string' },
  'fail-on': { type: 'string' },
  fix: { type: 'boolean' },
  values: { type: 'string', multiple: true },
  'image-path': { type: 'string', multiple: true },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options']

/**
 * Lookup credentials for the one-shot commands (resolve, review, doctor): the config's files, the
 * --docker-config files (or $DOCKER_CONFIG's), and one fetch of each source.ecr / source.exec
 * entry, as the webhook uses them.
 */
async function credentialsFor (config: Config, dockerConfigs: readonly string[] | undefined, io: Io): Promise<CredentialStore> {
  const files = dockerConfigs ?? (io.env.DOCKER_CONFIG !== undefined ? [join(io.env.DOCKER_CONFIG, 'config.json')] : [])
  const fromFiles = await readDockerConfigFiles([...config.registry.credentials.dockerConfigFiles, ...files])
  const fetched = new CredentialSources({ rules: config.pullSecrets, logger: createLogger({ level: 'silent' }), execEnv: io.env })
  fetched.start()
  await fetched.firstAttempts()
  fetched.stop()
  for (const r of fetched.refreshers.values()) if (r.error !== undefined) io.err(`pullpin: ${r.error}\n`)
  const credentials = new CredentialStore()
  credentials.replace([...fromFiles, ...fetched.dockerConfigs()])
  return credentials
}

function failOnChecks (value: string | undefined): Check[] {
  if (value === undefined) return [...DEFAULT_FAIL_ON]
  if (value === 'none') return []
  if (value === 'any') return [...CHECKS].filter(c => c !== 'pin' && c !== 'secret')
  const list = value.split(',').map(s => s.trim()).filter(s => s !== '')
  for (const c of list) if (!(CHECKS as readonly string[]).includes(c)) throw new UsageError(`--fail-on: unknown check "${c}" (checks: ${CHECKS.join(', ')}, or any, none)`)
  return list as Check[]
}

async function reviewCommand (argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: REVIEW_OPTIONS, strict: true, allowPositionals: true })
  if (values.help === true) { io.out(REVIEW_HELP); return EXIT_OK }
  const output = values.output ?? 'table'
  if (!['table', 'json', 'sarif'].includes(output)) throw new UsageError(`--output must be table, json or sarif, got "${output}"`)
  const valuesFiles = values.values ?? []
  if (positionals.length === 0 && valuesFiles.length === 0) throw new UsageError('review needs a PATH, - for stdin, or --values FILE')
  if (values['image-path'] !== undefined && valuesFiles.length === 0) throw new UsageError('--image-path goes with --values FILE')
  if (values.fix === true && positionals.includes('-')) throw new UsageError('--fix cannot write to stdin: give the files (or --values FILE)')
  const failOn = failOnChecks(values['fail-on'])
  const config = values.config !== undefined ? await loadConfig(values.config) : parseConfig('', 'defaults')
  const credentials = await credentialsFor(config, values['docker-config'], io)
  const readStdin = io.readStdin ?? (() => Promise.resolve(''))
  const { runReview } = await import('./review/command.js')
  return await runReview({
    paths: positionals,
    values: valuesFiles,
    imagePaths: values['image-path'] ?? ['image'],
    config,
    credentials,
    ...(values.namespace !== undefined ? { namespace: values.namespace } : {}),
    output: output as 'table',
    failOn,
    fix: values.fix === true,
    version: version(),
  }, { out: io.out, err: io.err, readStdin, progress: io.stderrIsTty === true })
}

const DOCTOR_HELP = `Usage: pullpin doctor IMAGE [options]

Why an image does not pull: the registry-auth troubleshooting ladder as checks, each ✓ or ✗ with
the fix. Reference valid and lowercase → registry allowed → DNS → TCP → TLS (private CA) → the
/v2/ challenge (Basic or Bearer, realm allowed) → which credential applies (file and entry; never
the secret) → access to the repository (token for its scope) → tag or digest exists → platforms →
the SHA tag pullpin would pin. With a kubeconfig and --namespace: the namespace's opt-in and mode,
each pull secret (present, type kubernetes.io/dockerconfigjson, decodable, matching the registry),
the ServiceAccount's imagePullSecrets, and with --pod the pod's ErrImagePull / ImagePullBackOff
events mapped to the failing check.

Options:
  --config FILE            the webhook's pullpin config (registries, credentials, CAs, pullSecrets)
  --docker-config FILE     dockerconfigjson with registry credentials (repeatable) [env DOCKER_CONFIG dir's config.json]
  --ca-file FILE           CA of a registry behind a private CA
  --platform OS/ARCH       the platform the pod needs (e.g. linux/arm64); default: any
  --namespace NS           check the cluster side in NS (needs --kubeconfig or KUBECONFIG)
  --pod NAME               also the pod's image pull events (with --namespace)
  --kubeconfig FILE        the cluster of this kubeconfig [env KUBECONFIG]
  --output F               text | json (default text)
  -h, --help               show this help

Exit codes: 0 every check passed, 1 a check failed, 2 bad usage.
`

const DOCTOR_OPTIONS = {
  config: { type: 'string' },
  'docker-config': { type: 'string', multiple: true },
  'ca-file': { type: 'string' },
  platform: { type: 'string' },
  namespace: { type: 'string' },
  pod: { type: 'string' },
  kubeconfig: { type: 'string' },
  output: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options']

async function doctorCommand (argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: DOCTOR_OPTIONS, strict: true, allowPositionals: true })
  if (values.help === true) { io.out(DOCTOR_HELP); return EXIT_OK }
  if (positionals.length !== 1) throw new UsageError('doctor takes exactly one IMAGE')
  const output = values.output ?? 'text'
  if (output !== 'text' && output !== 'json') throw new UsageError(`--output must be text or json, got "${output}"`)
  if (values.pod !== undefined && values.namespace === undefined) throw new UsageError('--pod goes with --namespace')
  if (values.platform !== undefined && !/^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/.test(values.platform)) throw new UsageError(`--platform must be os/architecture[/variant], got "${values.platform}"`)
  let cluster: ClusterConnectOptions | undefined
  if (values.namespace !== undefined) {
    cluster = clusterTarget(values.kubeconfig ?? io.env.KUBECONFIG, io.env)
    if (cluster === undefined) throw new UsageError('--namespace needs a cluster: --kubeconfig FILE or KUBECONFIG')
  }
  const config = values.config !== undefined ? await loadConfig(values.config) : parseConfig('', 'defaults')
  const credentials = await credentialsFor(config, values['docker-config'], io)
  const { runDoctor } = await import('./doctor/command.js')
  return await runDoctor({
    image: positionals[0]!,
    config,
    credentials,
    ...(values['ca-file'] !== undefined ? { caFile: values['ca-file'] } : {}),
    ...(values.platform !== undefined ? { platform: values.platform } : {}),
    ...(values.namespace !== undefined ? { namespace: values.namespace } : {}),
    ...(values.pod !== undefined ? { pod: values.pod } : {}),
    ...(cluster !== undefined ? { cluster } : {}),
    output,
  }, io)
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
    // Plugins run with pullpin's environment, as the kubelet runs them with its own.
    credentialSources: { execEnv: env },
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
      case 'review':
        return await reviewCommand(rest, io)
      case 'doctor':
        return await doctorCommand(rest, io)
      default:
        io.err(`pullpin: unknown command "${command}"\n\n${MAIN_HELP}`)
        return EXIT_USAGE
    }
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      io.err(`pullpin: ${(err as Error).message}\nRun 'pullpin ${command ?? ''} --help' for usage.\n`)
      return EXIT_USAGE
    }
    if (err instanceof ReviewInputError) {
      io.err(`pullpin: ${err.message}\n`)
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
    readStdin: async () => {
      const chunks: Buffer[] = []
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
      return Buffer.concat(chunks).toString('utf8')
    },
    stderrIsTty: process.stderr.isTTY,
  }).then((code) => { process.exitCode = code }, (err: unknown) => {
    process.stderr.write(`pullpin: ${(err as Error).stack ?? String(err)}\n`)
    process.exitCode = EXIT_FAILURE
  })
}

// How pullpin reaches the API server: a kubeconfig file (--kubeconfig, KUBECONFIG) or the
// in-cluster service account. The caller (src/cli.ts) decides which from the environment;
// nothing here reads process.env. Everything else in src/cluster gets a ClusterConnection.
import { isIPv6 } from 'node:net'
import { join } from 'node:path'
import {
  AdmissionregistrationV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  KubeConfig,
  Watch,
} from '@kubernetes/client-node'

import { ERR_CONFIG_KUBECONFIG } from '../errors.js'
import { SERVICE_ACCOUNT_DIR } from './service-account.js'

export type ClusterConnectOptions =
  /** One or more kubeconfig files, merged in order as kubectl does (KUBECONFIG=a:b). */
  | { readonly kubeconfigFiles: readonly string[]; readonly context?: string }
  /** In a pod: the API server's Service address and the mounted service account. */
  | { readonly inCluster: { readonly host: string; readonly port: string; readonly serviceAccountDir?: string } }
  /** A ready KubeConfig (tests). */
  | { readonly kubeConfig: KubeConfig }

export interface ClusterConnection {
  /** For logs: "kubeconfig /root/.kube/config (context kind)", "in-cluster https://10.0.0.1:443". */
  readonly description: string
  readonly server: string
  readonly core: CoreV1Api
  readonly coordination: CoordinationV1Api
  readonly admissionRegistration: AdmissionregistrationV1Api
  /** Findings as Events (src/cluster/events.ts). */
  readonly events: EventsV1Api
  /** PolicyReports and API discovery of their CRD (src/cluster/policy-reports.ts). */
  readonly customObjects: CustomObjectsApi
  readonly watch: Watch
}

export function connectCluster (opts: ClusterConnectOptions): ClusterConnection {
  const kc = new KubeConfig()
  let description: string
  if ('kubeConfig' in opts) {
    kc.loadFromOptions({ clusters: opts.kubeConfig.clusters, users: opts.kubeConfig.users, contexts: opts.kubeConfig.contexts, currentContext: opts.kubeConfig.currentContext })
    description = 'kubeconfig (in memory)'
  } else if ('kubeconfigFiles' in opts) {
    const [first, ...rest] = opts.kubeconfigFiles
    if (first === undefined) throw new ERR_CONFIG_KUBECONFIG('(none)', 'no kubeconfig file given')
    loadFile(kc, first)
    for (const file of rest) {
      const more = new KubeConfig()
      loadFile(more, file)
      // kubectl's merge rule: the first file that sets a value wins.
      kc.mergeConfig(more, true)
    }
    if (opts.context !== undefined) kc.setCurrentContext(opts.context)
    description = `kubeconfig ${opts.kubeconfigFiles.join(':')} (context ${kc.getCurrentContext()})`
  } else {
    // What KubeConfig.loadFromCluster does, with the address passed in instead of read from
    // process.env. The tokenFile provider re-reads the projected token (it is rotated hourly).
    const { host, port } = opts.inCluster
    const dir = opts.inCluster.serviceAccountDir ?? SERVICE_ACCOUNT_DIR
    const server = `https://${isIPv6(host) ? `[${host}]` : host}:${port}`
    kc.loadFromOptions({
      clusters: [{ name: 'in-cluster', server, caFile: join(dir, 'ca.crt'), skipTLSVerify: false }],
      users: [{ name: 'in-cluster', authProvider: { name: 'tokenFile', config: { tokenFile: join(dir, 'token') } } }],
      contexts: [{ name: 'in-cluster', cluster: 'in-cluster', user: 'in-cluster' }],
      currentContext: 'in-cluster',
    })
    description = `in-cluster ${server}`
  }
  const cluster = kc.getCurrentCluster()
  if (cluster === null) throw new ERR_CONFIG_KUBECONFIG(description, `no cluster for context "${kc.getCurrentContext()}"`)
  return {
    description,
    server: cluster.server,
    core: kc.makeApiClient(CoreV1Api),
    coordination: kc.makeApiClient(CoordinationV1Api),
    admissionRegistration: kc.makeApiClient(AdmissionregistrationV1Api),
    events: kc.makeApiClient(EventsV1Api),
    customObjects: kc.makeApiClient(CustomObjectsApi),
    watch: new Watch(kc),
  }
}

/**
 * A kubeconfig holds credentials (tokens, client keys), and the YAML parser's messages quote its
 * text: `token: !SUPERSECRET` gave "unknown tag !<!SUPERSECRET>" (issue 11). An error about it
 * names the file and the position only; of the library's own messages only the structural ones
 * ("users[0].name is missing") are kept, since they quote nothing from the file.
 */
function loadFile (kc: KubeConfig, file: string): void {
  try {
    kc.loadFromFile(file)
  } catch (err) {
    throw new ERR_CONFIG_KUBECONFIG(file, kubeconfigProblem(err))
  }
}

const PLAIN_WORDS = /^[a-z][a-z ,;-]*$/i
const STRUCTURAL_MESSAGE = /^(?:(?:clusters|users|contexts)\[\d+\](?:\.[a-z]+)* is missing|No active cluster!)$/

/** What is wrong with a kubeconfig file, in words that contain none of its text. */
export function kubeconfigProblem (err: unknown): string {
  // js-yaml's YAMLException: `mark` holds the 0-based line and column, `reason` what is wrong. A
  // reason of plain words ("bad indentation of a mapping entry") is kept; one that quotes the file
  // ("unknown tag !<!SUPERSECRET>", 'unidentified alias "…"') is not.
  const { mark, reason } = (err ?? {}) as { mark?: { line?: unknown; column?: unknown }; reason?: unknown }
  if (typeof mark?.line === 'number' && typeof mark.column === 'number') {
    const what = typeof reason === 'string' && PLAIN_WORDS.test(reason) ? reason : 'not valid YAML'
    return `${what} (line ${mark.line + 1}, column ${mark.column + 1})`
  }
  const code = (err as { code?: unknown } | undefined)?.code
  if (typeof code === 'string') return code
  const message = err instanceof Error ? err.message : ''
  if (STRUCTURAL_MESSAGE.test(message)) return message
  return 'not a usable kubeconfig (its text is not shown: it may hold credentials)'
}

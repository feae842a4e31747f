// Namespace labels for the admission handler, from the namespace informer. A hit is answered
// from the cache (no I/O on the hot path); a namespace the informer has not seen
// yet (created a moment ago, or the informer not synced) is decided on a direct GET, never
// guessed. Concurrent reviews for the same unseen namespace share one GET.
import type { Logger } from 'pino'
import type { V1Namespace } from '@kubernetes/client-node'
import type { NamespaceDirectory } from '../admission/handler.js'
import type { Labels } from '../policy/namespace-mode.js'
import type { ClusterConnection } from './connection.js'
import type { Informer } from './informer.js'
import { callOptions, describeError, isNotFound, timeoutSignal } from './kube-api.js'
import { ERR_CLUSTER_UNAVAILABLE } from '../errors.js'
import { InFlight } from '../async/in-flight.js'

export interface ClusterNamespaceDirectoryOptions {
  readonly connection: ClusterConnection
  readonly informer: Informer<V1Namespace>
  readonly logger: Logger
  /** Bound on the direct GET; the review's own deadline still applies around it. */
  readonly getTimeoutMs?: number
}

export function clusterNamespaceDirectory (opts: ClusterNamespaceDirectoryOptions): NamespaceDirectory {
  const { connection, informer, logger } = opts
  const reads = new InFlight<string, Labels | undefined>()
  return {
    labels (namespace) {
      const cached = informer.get(namespace)
      if (cached !== undefined) return Promise.resolve(cached.metadata?.labels ?? {})
      return reads.run(namespace, () => connection.core.readNamespace({ name: namespace }, callOptions({ signal: timeoutSignal(opts.getTimeoutMs ?? 3000) }))
        .then((ns) => ns.metadata?.labels ?? {}, (err: unknown) => {
          // A namespace that does not exist has no labels: not opted in.
          if (isNotFound(err)) return undefined
          logger.warn({ namespace, error: describeError(err) }, 'namespace not in the informer cache and the direct GET failed')
          throw new ERR_CLUSTER_UNAVAILABLE(`reading namespace ${namespace}: ${describeError(err)}`)
        }))
    },
  }
}

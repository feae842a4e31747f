// The platforms of the cluster's nodes, for the platform check (issue 13): read from the
// kubelet's well-known labels kubernetes.io/os and kubernetes.io/arch (k8s.io/api core/v1
// well_known_labels.go). Only those two labels of each Node are kept in memory, whatever the
// cluster's size; the distinct platforms are recomputed on a change, not per review.
import type { V1Node } from '@kubernetes/client-node'
import type { Platform } from '../registry/client.js'
import type { ClusterConnection } from './connection.js'
import { callOptions } from './kube-api.js'
import { Informer } from './informer.js'
import type { InformerSettings } from './resource-informers.js'

const OS_LABEL = 'kubernetes.io/os'
const ARCH_LABEL = 'kubernetes.io/arch'

export function nodeInformer (conn: ClusterConnection, s: InformerSettings): Informer<V1Node> {
  return new Informer<V1Node>({
    name: 'nodes',
    watch: conn.watch,
    logger: s.logger,
    ...(s.backoff !== undefined ? { backoff: s.backoff } : {}),
    ...(s.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: s.watchTimeoutSeconds } : {}),
    ...(s.onRestart !== undefined ? { onRestart: (reason: 'expired' | 'error') => s.onRestart?.('nodes', reason) } : {}),
    path: '/api/v1/nodes',
    list: (p) => conn.core.listNode(p, callOptions({ signal: p.signal })),
    // Two labels are all pullpin reads of a Node: its status (images, conditions) is large.
    transform: (node) => {
      const labels = node.metadata?.labels ?? {}
      const kept: Record<string, string> = {}
      if (labels[OS_LABEL] !== undefined) kept[OS_LABEL] = labels[OS_LABEL]
      if (labels[ARCH_LABEL] !== undefined) kept[ARCH_LABEL] = labels[ARCH_LABEL]
      return { metadata: { name: node.metadata?.name, resourceVersion: node.metadata?.resourceVersion, labels: kept } }
    },
  })
}

/** The distinct platforms of the nodes the informer holds; `fallback` (checks.nodePlatforms) until it holds any. */
export class NodePlatforms {
  #platforms: readonly Platform[] | undefined

  constructor (private readonly informer: Pick<Informer<V1Node>, 'list' | 'on' | 'onResync'>, private readonly fallback: readonly Platform[]) {
    const changed = (): void => { this.#platforms = undefined }
    informer.on(changed)
    informer.onResync(changed)
  }

  /** No I/O: the admission path asks this for every pod with images to check. */
  platforms (): readonly Platform[] {
    if (this.#platforms !== undefined) return this.#platforms
    const seen = new Map<string, Platform>()
    for (const node of this.informer.list()) {
      const labels = node.metadata?.labels ?? {}
      const os = labels[OS_LABEL]
      const architecture = labels[ARCH_LABEL]
      if (os !== undefined && architecture !== undefined) seen.set(`${os}/${architecture}`, { os, architecture })
    }
    return (this.#platforms = seen.size > 0 ? [...seen.values()] : this.fallback)
  }
}

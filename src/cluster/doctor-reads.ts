// The cluster reads `pullpin doctor --namespace NS [--pod NAME]` makes: single GETs and one event
// list, returned as plain data (Secret data stays base64 here and is decoded only by the check
// that parses it; nothing of it is ever printed).
import type { ClusterConnection } from './connection.js'
import { callOptions, isNotFound, timeoutSignal } from './kube-api.js'

export interface PodFacts {
  readonly serviceAccountName: string
  readonly imagePullSecrets: readonly string[]
  readonly images: readonly string[]
}

export interface EventFacts {
  readonly type: string
  readonly reason: string
  readonly message: string
  readonly count: number
}

export interface ClusterReads {
  /** undefined: no such namespace. */
  namespaceLabels (namespace: string): Promise<Readonly<Record<string, string>> | undefined>
  /** undefined: no such Secret. */
  secret (namespace: string, name: string): Promise<{ readonly type: string, readonly data: Readonly<Record<string, string>> } | undefined>
  serviceAccount (namespace: string, name: string): Promise<{ readonly imagePullSecrets: readonly string[] } | undefined>
  pod (namespace: string, name: string): Promise<PodFacts | undefined>
  /** Events about the object named `name` (fieldSelector involvedObject.name). */
  events (namespace: string, name: string): Promise<EventFacts[]>
}

const TIMEOUT_MS = 5000

async function orUndefined<T> (call: () => Promise<T>): Promise<T | undefined> {
  try {
    return await call()
  } catch (err) {
    if (isNotFound(err)) return undefined
    throw err
  }
}

export function clusterReads (conn: ClusterConnection): ClusterReads {
  const opts = (): ReturnType<typeof callOptions> => callOptions({ signal: timeoutSignal(TIMEOUT_MS) })
  return {
    async namespaceLabels (name) {
      const ns = await orUndefined(() => conn.core.readNamespace({ name }, opts()))
      return ns === undefined ? undefined : { ...ns.metadata?.labels }
    },
    async secret (namespace, name) {
      const s = await orUndefined(() => conn.core.readNamespacedSecret({ name, namespace }, opts()))
      return s === undefined ? undefined : { type: s.type ?? 'Opaque', data: { ...s.data } }
    },
    async serviceAccount (namespace, name) {
      const sa = await orUndefined(() => conn.core.readNamespacedServiceAccount({ name, namespace }, opts()))
      return sa === undefined ? undefined : { imagePullSecrets: (sa.imagePullSecrets ?? []).flatMap(r => r.name !== undefined ? [r.name] : []) }
    },
    async pod (namespace, name) {
      const pod = await orUndefined(() => conn.core.readNamespacedPod({ name, namespace }, opts()))
      if (pod === undefined) return undefined
      const spec = pod.spec
      const containers = [...(spec?.initContainers ?? []), ...(spec?.containers ?? [])]
      return {
        serviceAccountName: spec?.serviceAccountName ?? 'default',
        imagePullSecrets: (spec?.imagePullSecrets ?? []).flatMap(r => r.name !== undefined ? [r.name] : []),
        images: containers.flatMap(c => c.image !== undefined ? [c.image] : []),
      }
    },
    async events (namespace, name) {
      const list = await conn.core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${name}` }, opts())
      return list.items.map(e => ({ type: e.type ?? '', reason: e.reason ?? '', message: e.message ?? '', count: e.count ?? 1 }))
    },
  }
}

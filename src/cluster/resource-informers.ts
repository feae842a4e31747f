// The informers pullpin runs, one factory per kind of object (the list+watch machinery they share
// is informer.ts). Secrets and ServiceAccounts are watched by name (fieldSelector
// metadata.name=…), which lets RBAC restrict them with resourceNames: pullpin never needs to read
// every Secret of the cluster (README "Cluster", RBAC).
import type { Logger } from 'pino'
import type { V1MutatingWebhookConfiguration, V1ValidatingWebhookConfiguration, V1Namespace, V1Secret, V1ServiceAccount } from '@kubernetes/client-node'
import type { BackoffOptions } from '../async/backoff.js'
import type { ClusterConnection } from './connection.js'
import { callOptions } from './kube-api.js'
import { Informer } from './informer.js'
import { isManagedByPullpin, isPlaceholder, type SecretLike } from './copy-plan.js'

export interface InformerSettings {
  readonly logger: Logger
  readonly backoff?: BackoffOptions
  readonly watchTimeoutSeconds?: number
  readonly onRestart?: (informer: string, reason: 'expired' | 'error') => void
}

function common (name: string, s: InformerSettings, conn: ClusterConnection) {
  return {
    name,
    watch: conn.watch,
    logger: s.logger,
    ...(s.backoff !== undefined ? { backoff: s.backoff } : {}),
    ...(s.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: s.watchTimeoutSeconds } : {}),
    ...(s.onRestart !== undefined ? { onRestart: (reason: 'expired' | 'error') => s.onRestart?.(name, reason) } : {}),
  }
}

export function namespaceInformer (conn: ClusterConnection, s: InformerSettings): Informer<V1Namespace> {
  return new Informer<V1Namespace>({
    ...common('namespaces', s, conn),
    path: '/api/v1/namespaces',
    list: (p) => conn.core.listNamespace(p, callOptions({ signal: p.signal })),
    // Labels and phase are all pullpin reads; dropping the rest keeps thousands of namespaces cheap.
    transform: (ns) => ({ metadata: { name: ns.metadata?.name, resourceVersion: ns.metadata?.resourceVersion, labels: ns.metadata?.labels ?? {} }, ...(ns.status?.phase !== undefined ? { status: { phase: ns.status.phase } } : {}) }),
  })
}

/** Keep Secret data only where pullpin needs it; a foreign Secret's content never stays in memory. */
function keepDataIf (keep: (s: SecretLike) => boolean) {
  return (secret: V1Secret): V1Secret => {
    if (keep(secret)) return secret
    const { data: _data, stringData: _sd, ...rest } = secret
    return rest
  }
}

/** Every Secret of one name in every namespace: pullpin's copies and any foreign Secret holding the name. */
export function secretsNamedInformer (conn: ClusterConnection, name: string, s: InformerSettings): Informer<V1Secret> {
  return new Informer<V1Secret>({
    ...common(`secrets name=${name}`, s, conn),
    path: '/api/v1/secrets',
    fieldSelector: `metadata.name=${name}`,
    list: (p) => conn.core.listSecretForAllNamespaces(p, callOptions({ signal: p.signal })),
    transform: keepDataIf(isManagedByPullpin),
  })
}

/** One Secret in one namespace (a pull-secret source, pullpin's TLS Secret). */
export function secretInformer (conn: ClusterConnection, namespace: string, name: string, s: InformerSettings): Informer<V1Secret> {
  return new Informer<V1Secret>({
    ...common(`secret ${namespace}/${name}`, s, conn),
    path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`,
    fieldSelector: `metadata.name=${name}`,
    list: (p) => conn.core.listNamespacedSecret({ ...p, namespace }, callOptions({ signal: p.signal })),
  })
}

/** Every dockerconfigjson Secret (Carvel placeholders are found among them); data kept for placeholders only. */
export function dockerConfigSecretsInformer (conn: ClusterConnection, s: InformerSettings): Informer<V1Secret> {
  return new Informer<V1Secret>({
    ...common('secrets type=dockerconfigjson', s, conn),
    path: '/api/v1/secrets',
    fieldSelector: 'type=kubernetes.io/dockerconfigjson',
    list: (p) => conn.core.listSecretForAllNamespaces(p, callOptions({ signal: p.signal })),
    transform: keepDataIf(isPlaceholder),
  })
}

export function serviceAccountsNamedInformer (conn: ClusterConnection, name: string, s: InformerSettings): Informer<V1ServiceAccount> {
  return new Informer<V1ServiceAccount>({
    ...common(`serviceaccounts name=${name}`, s, conn),
    path: '/api/v1/serviceaccounts',
    fieldSelector: `metadata.name=${name}`,
    list: (p) => conn.core.listServiceAccountForAllNamespaces(p, callOptions({ signal: p.signal })),
  })
}

export function webhookConfigurationInformer (conn: ClusterConnection, name: string, s: InformerSettings): Informer<V1MutatingWebhookConfiguration> {
  return new Informer<V1MutatingWebhookConfiguration>({
    ...common(`mutatingwebhookconfiguration ${name}`, s, conn),
    path: '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations',
    fieldSelector: `metadata.name=${name}`,
    list: (p) => conn.admissionRegistration.listMutatingWebhookConfiguration(p, callOptions({ signal: p.signal })),
  })
}

/** The workload webhook's configuration (issue 18), whose caBundle the leader keeps like the mutating one's. */
export function validatingWebhookConfigurationInformer (conn: ClusterConnection, name: string, s: InformerSettings): Informer<V1ValidatingWebhookConfiguration> {
  return new Informer<V1ValidatingWebhookConfiguration>({
    ...common(`validatingwebhookconfiguration ${name}`, s, conn),
    path: '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations',
    fieldSelector: `metadata.name=${name}`,
    list: (p) => conn.admissionRegistration.listValidatingWebhookConfiguration(p, callOptions({ signal: p.signal })),
  })
}

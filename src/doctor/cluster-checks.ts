// `pullpin doctor --namespace NS [--pod NAME]`: what the cluster adds to the registry ladder. Is
// the namespace opted in, and in which mode; is each pull secret the image needs there, of type
// kubernetes.io/dockerconfigjson, decodable, with an entry for the registry; what the
// ServiceAccount carries; and the pod's ErrImagePull / ImagePullBackOff events, each mapped to the
// registry check that explains it. Reads through src/cluster (ClusterReads); pure otherwise.
import type { ClusterReads, EventFacts } from '../cluster/doctor-reads.js'
import { isCodedError } from '../errors.js'
import { createSecretSelector } from '../mutate/inject-secrets.js'
import { isSecretSource, type Config } from '../policy/config.js'
import { createNamespacePolicy, OPT_IN_VALUES } from '../policy/namespace-mode.js'
import type { ImageReference } from '../reference/parse.js'
import { Keyring } from '../registry/keyring.js'
import type { DoctorCheck, RegistryCheckId } from './ladder.js'

export interface ClusterDoctorOptions {
  readonly reads: ClusterReads
  readonly config: Config
  readonly namespace: string
  readonly pod?: string
  /** pullpin's own namespace (never mutated). */
  readonly ownNamespace?: string
}

const DOCKERCONFIGJSON = 'kubernetes.io/dockerconfigjson'

export async function clusterLadder (ref: ImageReference | undefined, opts: ClusterDoctorOptions): Promise<DoctorCheck[]> {
  const { reads, config, namespace } = opts
  const out: DoctorCheck[] = []
  const labels = await reads.namespaceLabels(namespace)
  const label = config.namespaces.optInLabel
  if (labels === undefined) {
    out.push({ id: 'namespace', title: `namespace ${namespace}`, status: 'fail', detail: 'does not exist', fix: 'check --namespace (kubectl get namespaces)' })
    return out
  }
  const decision = createNamespacePolicy(config, opts.ownNamespace).decide(namespace, labels)
  out.push(decision.mode === 'off'
    ? { id: 'namespace', title: `namespace ${namespace}`, status: 'fail', detail: `not handled by pullpin: ${decision.reason}`, fix: `kubectl label namespace ${namespace} ${label}=${OPT_IN_VALUES.enabled} (or ${OPT_IN_VALUES.audit} to only report)` }
    : { id: 'namespace', title: `namespace ${namespace}`, status: 'pass', detail: `opted in (${label}=${labels[label] ?? ''}), mode ${decision.mode}` })

  let serviceAccount = 'default'
  let podSecrets: readonly string[] = []
  if (opts.pod !== undefined) {
    const pod = await reads.pod(namespace, opts.pod)
    if (pod === undefined) {
      out.push({ id: 'pod', title: `pod ${opts.pod}`, status: 'fail', detail: `not found in ${namespace}`, fix: 'check --pod (kubectl get pods); a pod that was replaced has a new name' })
    } else {
      serviceAccount = pod.serviceAccountName
      podSecrets = pod.imagePullSecrets
      out.push({ id: 'pod', title: `pod ${opts.pod}`, status: 'pass', detail: `service account ${pod.serviceAccountName}; imagePullSecrets: ${pod.imagePullSecrets.join(', ') || 'none'}` })
    }
  }

  // The secrets pullpin would add for this image, and those the pod already names.
  const wanted = ref === undefined ? [] : createSecretSelector(config.pullSecrets)([{ ok: true, ref }])
  const names = [...new Set([...wanted, ...podSecrets])]
  if (names.length === 0) {
    out.push({ id: 'pull-secret', title: 'pull secrets', status: 'pass', detail: `no pullSecrets entry matches ${ref?.registry ?? 'the image'} and the pod names none: pulls are anonymous` })
  }
  for (const name of names) out.push(await secretCheck(reads, namespace, name, ref, config))

  const sa = await reads.serviceAccount(namespace, serviceAccount)
  if (sa === undefined) {
    out.push({ id: 'service-account', title: `service account ${serviceAccount}`, status: 'fail', detail: `not found in ${namespace}`, fix: `kubectl create serviceaccount ${serviceAccount} -n ${namespace}` })
  } else {
    const missing = config.injection !== 'pod' ? wanted.filter(n => !sa.imagePullSecrets.includes(n)) : []
    out.push(missing.length > 0
      ? { id: 'service-account', title: `service account ${serviceAccount}`, status: 'fail', detail: `imagePullSecrets: ${sa.imagePullSecrets.join(', ') || 'none'}; missing ${missing.join(', ')} (injection: ${config.injection})`, fix: 'pullpin adds them when it runs with --cluster; or: kubectl patch serviceaccount … with imagePullSecrets' }
      : { id: 'service-account', title: `service account ${serviceAccount}`, status: 'pass', detail: `imagePullSecrets: ${sa.imagePullSecrets.join(', ') || 'none'}` })
  }

  if (opts.pod !== undefined) out.push(eventsCheck(await reads.events(namespace, opts.pod)))
  return out
}

async function secretCheck (reads: ClusterReads, namespace: string, name: string, ref: ImageReference | undefined, config: Config): Promise<DoctorCheck> {
  const id = 'pull-secret'
  const title = `pull secret ${name}`
  const secret = await reads.secret(namespace, name)
  const rule = config.pullSecrets.find(r => r.name === name)
  if (secret === undefined) {
    return {
      id,
      title,
      status: 'fail',
      detail: `no Secret ${name} in ${namespace}: the kubelet pulls without it`,
      fix: rule?.source !== undefined
        ? isSecretSource(rule.source)
          ? `pullpin copies it from ${rule.source.namespace}/${rule.source.name} when it runs with --cluster: check that Secret exists and pullpin's logs`
          : `pullpin writes it from ${'ecr' in rule.source ? 'ECR' : 'its credential provider plugin'} when it runs with --cluster: check pullpin_credential_refresh_failures_total and pullpin's logs`
        : `kubectl create secret docker-registry ${name} -n ${namespace} --docker-server=${ref?.registry ?? 'REGISTRY'} --docker-username=… --docker-password=…`,
    }
  }
  if (secret.type !== DOCKERCONFIGJSON) {
    return { id, title, status: 'fail', detail: `type ${secret.type}, not ${DOCKERCONFIGJSON}: the kubelet ignores it for pulls`, fix: `recreate it with kubectl create secret docker-registry ${name} -n ${namespace} …` }
  }
  const encoded = secret.data['.dockerconfigjson']
  if (encoded === undefined) return { id, title, status: 'fail', detail: 'has no .dockerconfigjson key', fix: `recreate it with kubectl create secret docker-registry ${name} -n ${namespace} …` }
  let keyring: Keyring
  try {
    // The messages of this parser name the source and the entry, never the content.
    keyring = Keyring.fromDockerConfigs([{ source: `Secret ${namespace}/${name}`, json: Buffer.from(encoded, 'base64') }])
  } catch (err) {
    return { id, title, status: 'fail', detail: isCodedError(err) ? err.message : 'cannot be decoded', fix: `recreate it with kubectl create secret docker-registry ${name} -n ${namespace} …` }
  }
  if (ref !== undefined && keyring.lookup(ref).length === 0) {
    const keys = keyring.toJSON().map(e => e.key)
    return { id, title, status: 'fail', detail: `no entry matches ${ref.registry} (entries: ${keys.join(', ') || 'none'})`, fix: `add an auths entry for ${ref.registry} to it` }
  }
  return { id, title, status: 'pass', detail: `${DOCKERCONFIGJSON}, has an entry for ${ref?.registry ?? 'the registry'}` }
}

/** Kubelet and containerd/CRI-O pull error texts → the registry check that explains them. */
const EVENT_CAUSES: ReadonlyArray<readonly [RegExp, RegistryCheckId]> = [
  [/InvalidImageName|invalid reference format|must be lowercase/i, 'reference'],
  [/x509|certificate|tls: /i, 'tls'],
  [/no such host|server misbehaving|Temporary failure in name resolution/i, 'dns'],
  [/connection refused|i\/o timeout|no route to host|dial tcp/i, 'tcp'],
  [/401|403|unauthorized|authentication required|forbidden|denied|insufficient_scope/i, 'token'],
  [/no match for platform|platform/i, 'platforms'],
  [/not found|manifest unknown|NotFound/i, 'exists'],
]

/** Which registry check an image pull event's message points at ('unknown' when none fits). */
export function eventCause (message: string): RegistryCheckId | 'unknown' {
  return EVENT_CAUSES.find(([re]) => re.test(message))?.[1] ?? 'unknown'
}

function eventsCheck (events: readonly EventFacts[]): DoctorCheck {
  const pulls = events.filter(e => e.type === 'Warning' && /ErrImagePull|ImagePullBackOff|Failed to pull image|Back-off pulling image/.test(`${e.reason} ${e.message}`))
  if (pulls.length === 0) return { id: 'events', title: 'pod events', status: 'pass', detail: 'no ErrImagePull or ImagePullBackOff events' }
  // "Failed to pull image … : <cause>" carries the cause; BackOff events only repeat that it failed.
  const failed = pulls.find(e => /Failed to pull image/.test(e.message)) ?? pulls[0]!
  const cause = eventCause(failed.message)
  const backoff = pulls.some(e => /ImagePullBackOff|Back-off/.test(`${e.reason} ${e.message}`))
  return {
    id: 'events',
    title: 'pod events',
    status: 'fail',
    detail: `${backoff ? 'ImagePullBackOff' : 'ErrImagePull'}: ${failed.message}`,
    fix: cause === 'unknown' ? 'read the event message above; the registry checks did not match it' : `the kubelet failed at the "${cause}" check: see that line above`,
  }
}

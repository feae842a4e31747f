// Pods and AdmissionReviews built from real kubectl output (test/fixtures/kubectl, made by
// scripts/gen-fixtures.sh), the way the API server would send them to pullpin.
import { readFileSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import fastJsonPatch from 'fast-json-patch'
import { CONTAINER_FIELDS, type Pod, type Container } from '../../src/mutate/pod.js'

const FIXTURES = new URL('../fixtures/kubectl/', import.meta.url)

export type WorkloadName = 'deployment-web' | 'deployment-tools' | 'deployment-public' | 'job-migrate' | 'cronjob-report' | 'deployment-init' | 'deployment-debug'

export function loadWorkload (name: WorkloadName): any {
  return JSON.parse(readFileSync(new URL(`${name}.json`, FIXTURES), 'utf8'))
}

function podTemplate (workload: any): { metadata?: any; spec: any } {
  if (workload.kind === 'CronJob') return workload.spec.jobTemplate.spec.template
  return workload.spec.template
}

/** The Pod a controller would create from a workload's pod template, as the API server sends it on CREATE. */
export function podFromWorkload (name: WorkloadName, opts: { namespace?: string; ownerUid?: string } = {}): Pod {
  const workload = loadWorkload(name)
  const template = structuredClone(podTemplate(workload))
  const pod: Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      ...(template.metadata ?? {}),
      generateName: `${workload.metadata.name}-`,
      namespace: opts.namespace ?? workload.metadata.namespace,
    },
    spec: template.spec,
  }
  if (opts.ownerUid !== undefined) {
    pod.metadata!.ownerReferences = [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${workload.metadata.name}-5d9c7b`, uid: opts.ownerUid, controller: true, blockOwnerDeletion: true }]
  }
  return pod
}

/** Containers of another workload, e.g. to use as init or ephemeral containers. */
export function containersOf (name: WorkloadName): Container[] {
  return structuredClone(podTemplate(loadWorkload(name)).spec.containers)
}

/** The richest fixture: 3 containers + 1 init container, from real kubectl output. */
export function richPod (namespace = 'team-a'): Pod {
  const pod = podFromWorkload('deployment-web', { namespace })
  pod.spec!.initContainers = containersOf('deployment-init')
  return pod
}

export interface ReviewOptions {
  operation?: 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT'
  namespace?: string
  dryRun?: boolean
  oldObject?: Pod | null
  subResource?: string
  kind?: { group: string; version: string; kind: string }
  resource?: { group: string; version: string; resource: string }
  uid?: string
}

export function admissionReview (object: unknown, opts: ReviewOptions = {}): any {
  const pod = object as Pod
  const request: Record<string, unknown> = {
    uid: opts.uid ?? randomUUID(),
    kind: opts.kind ?? { group: '', version: 'v1', kind: 'Pod' },
    resource: opts.resource ?? { group: '', version: 'v1', resource: 'pods' },
    requestKind: opts.kind ?? { group: '', version: 'v1', kind: 'Pod' },
    requestResource: opts.resource ?? { group: '', version: 'v1', resource: 'pods' },
    namespace: opts.namespace ?? pod?.metadata?.namespace,
    operation: opts.operation ?? 'CREATE',
    userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller', groups: ['system:serviceaccounts', 'system:authenticated'] },
    object,
    oldObject: opts.oldObject ?? null,
    dryRun: opts.dryRun ?? false,
    options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
  }
  if (opts.subResource !== undefined) request.subResource = opts.subResource
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request }
}

/** Decode a response's patch and apply it to a copy of `pod`, as the API server does. */
export function applyResponsePatch (pod: unknown, response: { patch?: string; patchType?: string }): any {
  if (response.patch === undefined) return structuredClone(pod)
  const ops = JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8'))
  return fastJsonPatch.applyPatch(structuredClone(pod), ops, true, false).newDocument
}

export function decodePatch (response: { patch?: string }): any[] {
  return response.patch === undefined ? [] : JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8'))
}

/** deployment-web's pod in `namespace` with one container per image (c0, c1, …), owned by `ownerUid`'s ReplicaSet if given. */
export function podWithImages (images: string[], namespace = 'team-a', ownerUid?: string): Pod {
  const pod = podFromWorkload('deployment-web', { namespace, ...(ownerUid !== undefined ? { ownerUid } : {}) })
  pod.spec!.containers = images.map((image, i) => ({ ...pod.spec!.containers![0]!, name: `c${i}`, image }))
  return pod
}

/**
 * The projection podPatch (src/mutate/mutator.ts) promises to diff: annotations, imagePullSecrets,
 * each container's image, at their paths. fast-json-patch's compare of two projections is the
 * patch podPatch must give, operation for operation.
 */
export function patchProjection (pod: Pod): unknown {
  const meta = { metadata: pod.metadata!.annotations !== undefined ? { annotations: pod.metadata!.annotations } : {} }
  const spec = pod.spec
  if (spec === undefined) return meta
  const s: Record<string, unknown> = {}
  if (spec.imagePullSecrets !== undefined) s.imagePullSecrets = spec.imagePullSecrets
  for (const f of CONTAINER_FIELDS) {
    const list = spec[f]
    if (list !== undefined) s[f] = Array.isArray(list) ? list.map((c: any) => c !== null && typeof c === 'object' && !Array.isArray(c) ? (c.image !== undefined ? { image: c.image } : {}) : c) : list
  }
  return { ...meta, spec: s }
}

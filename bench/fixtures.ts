// What the benchmarks send and how pullpin is configured for them: the richest real kubectl pod
// (3 containers + 1 init container, test/support/pods.ts richPod) with every image moved to the
// local registry, each repository pushed with its mutable tag and the SHA tags CI would publish.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { admissionReview, richPod } from '../test/support/pods.js'
import { gitSha, type PinningEnv } from '../test/support/pinning-env.js'
import { issueSelfSigned } from '../src/certs/self-signed.js'
import type { Pod } from '../src/mutate/pod.js'

/** Where richPod's images go on the local registry: repository and the tag as written (undefined: no tag). */
export const BENCH_REPOSITORIES: ReadonlyArray<{ readonly from: string; readonly repository: string; readonly tag: string | undefined }> = [
  { from: 'ghcr.io/acme/web:latest', repository: 'acme/web', tag: 'latest' },
  { from: 'ghcr.io/acme/sidecar:main', repository: 'acme/sidecar', tag: 'main' },
  { from: 'nginx', repository: 'library/nginx', tag: undefined },
  { from: 'ghcr.io/acme/init:latest', repository: 'acme/init', tag: 'latest' },
]

export interface PushedImages {
  /** image as written in the pod → the image pullpin must pin it to */
  readonly pins: ReadonlyMap<string, string>
}

/** Push every repository of the bench pod: its tag plus a 40-hex and a sha- tag for the same digest. */
export async function pushBenchImages (env: PinningEnv): Promise<PushedImages> {
  const pins = new Map<string, string>()
  await Promise.all(BENCH_REPOSITORIES.map(async ({ repository, tag }) => {
    const sha = gitSha(`bench-${repository}`)
    await env.registry.push({ seed: `bench-${repository}` }, repository, [tag ?? 'latest', sha, `sha-${sha.slice(0, 7)}`])
    pins.set(`${env.host}/${repository}${tag === undefined ? '' : `:${tag}`}`, `${env.host}/${repository}:${sha}`)
  }))
  return { pins }
}

/** richPod with every image on the local registry. */
export function benchPod (host: string, namespace: string, ownerUid?: string): Pod {
  const pod = richPod(namespace)
  for (const field of ['containers', 'initContainers'] as const) {
    for (const c of pod.spec![field] ?? []) {
      const repo = BENCH_REPOSITORIES.find(r => r.from === c.image)
      if (repo === undefined) throw new Error(`bench pod: no local repository for ${c.image}`)
      c.image = `${host}/${repo.repository}${repo.tag === undefined ? '' : `:${repo.tag}`}`
    }
  }
  if (ownerUid !== undefined) {
    pod.metadata!.ownerReferences = [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-5d9c7b', uid: ownerUid, controller: true, blockOwnerDeletion: true }]
  }
  return pod
}

/** The AdmissionReview body the API server would send for the bench pod. */
export function benchReview (host: string, namespace: string, ownerUid?: string): string {
  return JSON.stringify(admissionReview(benchPod(host, namespace, ownerUid), { uid: randomUUID() }))
}

/**
 * pullpin's config for the benchmarks: team-a enforces, team-b audits, two pull secrets that both
 * match the local registry, pinning on for it with the webhook's defaults otherwise.
 */
export function benchConfigYaml (env: PinningEnv, pinningExtra = '', registryExtra = '', top = ''): string {
  return `
namespaces:
  labels:
    team-a: { pullpin.io/inject: enabled }
    team-b: { pullpin.io/inject: audit }
pullSecrets:
  - name: registry-credentials
    registries: ["${env.host}"]
  - name: mirror-credentials
    registries: ["${env.host}", "*.pkg.dev"]
${top}
registry:
  hosts: ["${env.host}"]
  allowPrivate: ["${env.host}"]
  credentials: { dockerConfigFiles: ["${env.dockerConfigFile}"] }
  options:
    "${env.host}": { caFile: "${env.registry.caFile}" }
${registryExtra}
pinning:
  enabled: true
${pinningExtra}
`
}

export interface ServingCerts {
  readonly dir: string
  readonly certFile: string
  readonly keyFile: string
  readonly ca: string
}

/** One serving certificate (EC P-256, as pullpin makes its own) shared by every server under test. */
export async function writeServingCerts (dir: string): Promise<ServingCerts> {
  const m = await issueSelfSigned({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] })
  const certFile = join(dir, 'tls.crt')
  const keyFile = join(dir, 'tls.key')
  await writeFile(certFile, m.cert)
  await writeFile(keyFile, m.key, { mode: 0o600 })
  return { dir, certFile, keyFile, ca: m.ca ?? m.cert }
}

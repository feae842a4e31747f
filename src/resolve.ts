// `pullpin resolve IMAGE`: what the webhook sees for one image — the normalized reference, the
// digest and media type of its tag, the SHA tags sharing that digest, and the pin it would write.
// It runs the same pin step the webhook runs, on a one-container pod, so the answer cannot drift.
import type { Config, PinningConfig, RegistryConfig } from './policy/config.js'
import { deepFreeze } from './policy/config.js'
import { parseImageReference, type ImageReference } from './reference/parse.js'
import { createPinningStack } from './pinning.js'
import type { CredentialStore } from './registry/credential-store.js'
import { createPinningStep } from './mutate/pin-images.js'
import { createMutator } from './mutate/mutator.js'
import { createCheckStep } from './mutate/check-images.js'
import type { Finding } from './mutate/findings.js'

export interface ResolveResult {
  readonly image: string
  readonly reference: Pick<ImageReference, 'registry' | 'repository' | 'name' | 'tag' | 'digest'>
  readonly digest?: string
  readonly mediaType?: string
  readonly shaTags: readonly string[]
  /** The image as the webhook would rewrite it, when it would. */
  readonly pinned?: string
  /** What the webhook's checks find about the image (README "Checks"); [] when all pass. */
  readonly findings: ReadonlyArray<Pick<Finding, 'check' | 'reason' | 'message'>>
  readonly warnings: readonly string[]
}

export interface ResolveOptions {
  readonly config: Config
  readonly credentials: CredentialStore
  readonly format?: PinningConfig['format']
  readonly caFile?: string
  readonly allowPrivate?: boolean
}

export async function resolveImage (image: string, opts: ResolveOptions): Promise<ResolveResult> {
  const ref = parseImageReference(image)
  const base = opts.config
  // The person asked about this image: its registry is contacted even when not on registry.hosts.
  const registry: RegistryConfig = {
    ...base.registry,
    hosts: [...base.registry.hosts, ref.registry],
    allowPrivate: opts.allowPrivate === true ? [...base.registry.allowPrivate, ref.registry] : base.registry.allowPrivate,
    options: opts.caFile !== undefined
      ? { ...base.registry.options, [ref.registry]: { ...base.registry.options[ref.registry], caFile: opts.caFile } }
      : base.registry.options,
  }
  const pinning: PinningConfig = { ...base.pinning, enabled: true, format: opts.format ?? base.pinning.format, skipImages: [] }
  const config = deepFreeze({ registry, pinning })
  const stack = await createPinningStack({ config, credentials: opts.credentials })
  try {
    const mutate = createMutator([
      createPinningStep({ config: pinning, registry, cache: stack.cache, rolloutPins: stack.rolloutPins, revisions: stack.revisions }),
      // The webhook's checks too, with the config's settings and its pull secrets' credentials.
      createCheckStep({
        checks: base.checks,
        registry,
        // Without pull secrets in the config, the credentials given (--docker-config) stand for the pod's.
        pullSecrets: base.pullSecrets.length > 0 ? base.pullSecrets : [{ name: '--docker-config' }],
        tags: stack.cache,
        immutable: stack.immutable,
        access: stack.access,
        credentials: stack.credentials,
      }),
    ])
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'resolve' }, spec: { containers: [{ name: 'image', image }] } }
    const result = await mutate({ operation: 'CREATE', namespace: '', mode: 'enforce', dryRun: true, object: pod, deadline: { signal: new AbortController().signal, ms: Infinity, remainingMs: () => Infinity } })
    const change = result.changes.find(c => c.kind === 'pin')
    // The step filled the cache; these answers come from it (or, for a pinned image, from one HEAD).
    let digest = ref.digest
    let mediaType: string | undefined
    let shaTags: string[] = []
    const warnings = [...result.warnings]
    try {
      const tagged = await stack.cache.resolveTag(ref, ref.digest ?? ref.tag ?? 'latest')
      digest = tagged.digest
      mediaType = tagged.mediaType
      // A pin found by revision is the answer; the repository is listed only when it was not.
      shaTags = [...stack.revisions.peek(ref, tagged.digest) ?? await stack.cache.shaTagsFor(ref, tagged.digest)]
    } catch (err) {
      if (warnings.length === 0) warnings.push((err as Error).message)
    }
    return {
      image,
      reference: { registry: ref.registry, repository: ref.repository, name: ref.name, tag: ref.tag, digest: ref.digest },
      ...(digest !== undefined ? { digest } : {}),
      ...(mediaType !== undefined ? { mediaType } : {}),
      shaTags,
      ...(change !== undefined && change.kind === 'pin' ? { pinned: change.to } : {}),
      findings: result.findings.map(f => ({ check: f.check, reason: f.reason, message: f.message })),
      warnings,
    }
  } finally {
    await stack.close()
  }
}

export function formatResolveResult (r: ResolveResult): string {
  const rows: Array<[string, string]> = [
    ['image', r.image],
    ['normalized', `${r.reference.name}${r.reference.tag !== undefined ? ':' + r.reference.tag : ''}${r.reference.digest !== undefined ? '@' + r.reference.digest : ''}`],
    ['registry', r.reference.registry],
    ['repository', r.reference.repository],
    ['digest', r.digest ?? '-'],
    ['media type', r.mediaType ?? '-'],
    ['SHA tags', r.shaTags.length > 0 ? r.shaTags.join(', ') : '-'],
    ['pinned', r.pinned ?? '(unchanged)'],
    ['checks', r.findings.length === 0 ? 'ok' : r.findings.map(f => `${f.check}: ${f.reason}`).join(', ')],
  ]
  const width = Math.max(...rows.map(([k]) => k.length))
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n') + '\n' + r.warnings.map(w => `warning: ${w}\n`).join('')
}

// Step: add the configured imagePullSecrets whose registries match any image of the pod.
// The pod's own secrets and their order are kept; nothing is added twice, so a second review
// of an already-mutated pod (reinvocationPolicy: IfNeeded) changes nothing.
import type { PullSecretRule } from '../policy/config.js'
import { compileRegistryGlob, normalizeRegistryKey } from '../reference/host-glob.js'
import type { ImageReference, ReferenceParse } from '../reference/parse.js'
import type { MutationStep } from './mutator.js'
import { IMAGE_MEMO_SIZE, memoize } from './memoize.js'

type RegistryMatch = (ref: Pick<ImageReference, 'registry' | 'repository'>) => boolean

interface CompiledRule {
  readonly name: string
  readonly matches: RegistryMatch
}

function compileRule (rule: PullSecretRule): CompiledRule {
  if (rule.registries === undefined) return { name: rule.name, matches: () => true }
  const globs = rule.registries.map(compileRegistryGlob)
  return { name: rule.name, matches: (ref) => globs.some(m => m(ref)) }
}

/**
 * The secrets (in config order) that the given parsed images call for. Images that do not parse
 * match no registry (the kubelet could not pull them either).
 */
export function createSecretSelector (rules: readonly PullSecretRule[]): (images: Iterable<ReferenceParse>) => string[] {
  const compiled = rules.map(compileRule)
  // A host glob reads the image's registry, and its repository only when the pattern has a path
  // ("r.example.com/team"): without one, each distinct registry is matched once per review, not
  // each distinct image.
  const byName = (rules.some(r => r.registries?.some(p => normalizeRegistryKey(p).includes('/')) === true))
  const keyOf = byName ? (ref: ImageReference) => ref.name : (ref: ImageReference) => ref.registry
  // Which rules a registry (or name) matches, as bits in rule order, across reviews.
  const matchedBy = memoize(IMAGE_MEMO_SIZE, (_key: string, ref?: ImageReference) => compiled.map(r => r.matches(ref!)))
  return (images) => {
    const wanted = new Array<boolean>(compiled.length).fill(false)
    let left = compiled.length
    const seen = new Set<string>()
    for (const parsed of images) {
      if (left === 0) break
      if (!parsed.ok) continue
      const key = keyOf(parsed.ref)
      if (seen.has(key)) continue
      seen.add(key)
      const bits = matchedBy(key, parsed.ref)
      for (let i = 0; i < bits.length; i++) {
        if (bits[i] === true && !wanted[i]) { wanted[i] = true; left-- }
      }
    }
    const out: string[] = []
    for (let i = 0; i < compiled.length; i++) if (wanted[i] === true) out.push(compiled[i]!.name)
    return out
  }
}

/**
 * Whether a secret pullpin would add can be used in a namespace (with a cluster: its copy exists,
 * or can be created now, and no foreign Secret holds its name). Implemented in src/cluster;
 * mutate only sees this interface.
 */
export interface SecretAvailability {
  /** No I/O on an informer cache hit; the API server is asked only to create a missing copy. */
  check (request: AvailabilityRequest): Promise<AvailabilityResult>
}

export interface AvailabilityRequest {
  readonly namespace: string
  /** The secrets pullpin is about to add to the pod. */
  readonly names: readonly string[]
  /** Create missing copies before answering: enforce mode and not request.dryRun (sideEffects NoneOnDryRun). */
  readonly create: boolean
}

export interface AvailabilityResult {
  /** Secret name → why it is not added (becomes a warning on the pod). */
  readonly refused: ReadonlyMap<string, string>
  /** Findings that do not stop the injection (e.g. a copy that could not be created yet). */
  readonly warnings: readonly string[]
}

/**
 * Secrets whose credentials pullpin fetches itself (source.ecr / source.exec) and that are about
 * to expire (a refresh is overdue) or have (src/credentials/sources.ts freshness). Undefined: fine,
 * or not a fetched source. Memory only: no I/O.
 */
export type CredentialFreshness = (secret: string) => { readonly state: 'expiring'; readonly secondsLeft: number } | { readonly state: 'expired' } | undefined

export interface SecretInjectionOptions {
  readonly availability?: SecretAvailability
  readonly freshness?: CredentialFreshness
}

export function createSecretInjectionStep (rules: readonly PullSecretRule[], opts: SecretInjectionOptions = {}): MutationStep {
  const select = createSecretSelector(rules)
  const { availability, freshness } = opts
  return {
    name: 'inject-secrets',
    operations: ['CREATE'],
    async run (ctx) {
      const wanted = select(ctx.references.values())
      if (wanted.length === 0) return
      if (freshness !== undefined) {
        for (const name of wanted) {
          const f = freshness(name)
          // Kept short: admission warnings are cut at 120 characters. Never any credential in them.
          if (f?.state === 'expired') ctx.warnings.push(`pullpin: ${name} has no valid credentials (expired or not fetched): pulls may fail`)
          else if (f?.state === 'expiring') ctx.warnings.push(`pullpin: ${name} credentials expire in ${Math.max(1, Math.ceil(f.secondsLeft / 60))} min and could not be refreshed`)
        }
      }
      const existing = Array.isArray(ctx.pod.spec?.imagePullSecrets) ? ctx.pod.spec.imagePullSecrets : []
      const present = new Set(existing.map(s => s?.name))
      const candidates = wanted.filter(name => !present.has(name))
      if (candidates.length === 0) return
      const add = (names: readonly string[]): void => {
        if (names.length === 0) return
        const spec = ctx.pod.spec ?? (ctx.pod.spec = {})
        spec.imagePullSecrets = [...existing, ...names.map(name => ({ name }))]
        for (const secret of names) ctx.changes.push({ kind: 'secret', secret })
      }
      if (availability === undefined) { add(candidates); return }
      const r = await availability.check({
        namespace: ctx.namespace,
        names: candidates,
        create: ctx.mode === 'enforce' && !ctx.dryRun,
      })
      for (const [, reason] of r.refused) ctx.warnings.push(reason)
      ctx.warnings.push(...r.warnings)
      add(candidates.filter(name => !r.refused.has(name)))
    },
  }
}

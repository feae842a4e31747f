// Step: add the configured imagePullSecrets whose registries match any image of the pod.
// The pod's own secrets and their order are kept; nothing is added twice, so a second review
// of an already-mutated pod (reinvocationPolicy: IfNeeded) changes nothing.
import type { PullSecretRule } from '../policy/config.js'
import { compileRegistryGlob } from '../reference/host-glob.js'
import type { MutationStep } from './mutator.js'

interface CompiledRule {
  readonly name: string
  readonly matches: (image: string) => boolean
}

function compileRule (rule: PullSecretRule): CompiledRule {
  if (rule.registries === undefined) return { name: rule.name, matches: () => true }
  const globs = rule.registries.map(compileRegistryGlob)
  return { name: rule.name, matches: (image) => globs.some(m => m(image)) }
}

/** The secrets (in config order) that the given images call for. */
export function createSecretSelector (rules: readonly PullSecretRule[]): (images: readonly string[]) => string[] {
  const compiled = rules.map(compileRule)
  return (images) => compiled.filter(r => images.some(image => r.matches(image))).map(r => r.name)
}

export function createSecretInjectionStep (rules: readonly PullSecretRule[]): MutationStep {
  const select = createSecretSelector(rules)
  return {
    name: 'inject-secrets',
    operations: ['CREATE'],
    run (ctx) {
      const wanted = select(ctx.images.map(s => s.image))
      if (wanted.length === 0) return
      const spec = ctx.pod.spec ?? (ctx.pod.spec = {})
      const existing = Array.isArray(spec.imagePullSecrets) ? spec.imagePullSecrets : []
      const present = new Set(existing.map(s => s?.name))
      const added = wanted.filter(name => !present.has(name))
      if (added.length === 0) return
      spec.imagePullSecrets = [...existing, ...added.map(name => ({ name }))]
      for (const secret of added) ctx.changes.push({ kind: 'secret', secret })
    },
  }
}

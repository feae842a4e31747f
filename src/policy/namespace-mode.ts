// Which mode applies to a namespace. Pure: labels come in as data (from the static config or,
// when a cluster is connected, from the namespace informer).
import type { Config, Mode } from './config.js'
import { compileGlobs } from './glob.js'

export type NamespaceMode = Mode | 'off'

export interface NamespaceDecision {
  readonly mode: NamespaceMode
  /** Why, for logs and for `pullpin` tooling: "excluded", "own namespace", "label audit", … */
  readonly reason: string
}

export type Labels = Readonly<Record<string, string>>

/** Label values a namespace may carry on the opt-in label (see README "Labels and annotations"). */
export const OPT_IN_VALUES = { enabled: 'enabled', audit: 'audit', disabled: 'disabled' } as const

export interface NamespacePolicy {
  decide (namespace: string, labels: Labels | undefined): NamespaceDecision
}

export function createNamespacePolicy (config: Config, ownNamespace: string | undefined): NamespacePolicy {
  const excluded = compileGlobs(config.namespaces.exclude)
  const label = config.namespaces.optInLabel
  const all = config.namespaces.selection === 'all'
  return {
    decide (namespace, labels) {
      // pullpin never mutates its own namespace: its own pods must start even when it is down.
      if (ownNamespace !== undefined && namespace === ownNamespace) return { mode: 'off', reason: 'own namespace' }
      if (excluded(namespace)) return { mode: 'off', reason: 'excluded' }
      const value = labels?.[label]
      if (value === undefined) {
        // selection: all (the deployKF Kyverno policy's model): every namespace but the excluded
        // ones; a namespace not known yet (no labels) is reviewed too, as it would be once listed.
        if (all) return { mode: config.mode, reason: 'selection all' }
        return { mode: 'off', reason: labels === undefined ? 'namespace unknown' : 'not opted in' }
      }
      switch (value) {
        case OPT_IN_VALUES.enabled: return { mode: config.mode, reason: `label ${value}` }
        case OPT_IN_VALUES.audit: return { mode: 'audit', reason: `label ${value}` }
        case OPT_IN_VALUES.disabled: return { mode: 'off', reason: `label ${value}` }
        // An unknown value is a typo: in optIn it opts nothing in, in all it opts nothing out.
        default: return all ? { mode: config.mode, reason: `selection all (unknown label value "${value}")` } : { mode: 'off', reason: `unknown label value "${value}"` }
      }
    },
  }
}

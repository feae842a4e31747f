// Namespace labels from the config file (`namespaces.labels`), for running without a cluster.
import type { Config } from './config.js'
import type { Labels } from './namespace-mode.js'

export function staticNamespaceLabels (config: Config): { labels (namespace: string): Promise<Labels | undefined> } {
  const table = config.namespaces.labels
  // A namespace the config does not list has no labels: known, just not opted in. Own keys only:
  // "constructor" and "toString" are valid namespace names.
  return { labels: (namespace) => Promise.resolve(Object.hasOwn(table, namespace) ? table[namespace] : {}) }
}

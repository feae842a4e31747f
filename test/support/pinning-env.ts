// A real registry (Debian docker-registry over TLS, htpasswd or token auth) with a counting,
// paging, fault-injecting proxy in front, plus the images the pinning tests use, pushed by skopeo.
import { createHash } from 'node:crypto'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRegistry, type RegistryFixture, type StartRegistryOptions } from './registry.js'
import { startRegistryProxy, type RegistryProxyHandle } from './registry-proxy.js'
import { parseConfig, type Config } from '../../src/policy/config.js'
import { CredentialStore, readDockerConfigFiles } from '../../src/registry/credential-store.js'

/** A 40-hex "git SHA" derived from a word, as CI would tag a build of that commit. */
export function gitSha (word: string): string {
  return createHash('sha1').update(word).digest('hex')
}

export interface PinningEnv {
  registry: RegistryFixture
  proxy: RegistryProxyHandle
  /** Host the webhook talks to: the proxy, so requests can be counted and faulted. */
  host: string
  /** A dockerconfigjson file with credentials for `host`. */
  dockerConfigFile: string
  dir: string
  stop (): Promise<void>
  /**
   * Config YAML with pinning enabled for `host`; `pinningExtra` is appended under `pinning:` and
   * `registryExtra` under `registry:` (indented by the caller). Each registry request times out after `registryTimeoutMs`: by default long enough
   * that a loaded machine never turns a slow answer into a failure; a test about time passes its own.
   */
  configYaml (pinningExtra?: string, top?: string, registryTimeoutMs?: number, registryExtra?: string): string
  config (pinningExtra?: string, top?: string, registryExtra?: string): Config
  /** A credential store holding `dockerConfigFile`'s credentials, as standalone pullpin fills it. */
  credentialStore (): Promise<CredentialStore>
}

export async function startPinningEnv (opts: StartRegistryOptions = {}): Promise<PinningEnv> {
  const registry = await startRegistry(opts)
  const proxy = await startRegistryProxy({ upstream: registry })
  const dir = await mkdtemp(join(tmpdir(), 'pullpin-pin-'))
  const dockerConfigFile = join(dir, 'config.json')
  await writeFile(dockerConfigFile, proxy.dockerConfigJson)
  const host = proxy.host
  const configYaml = (pinningExtra = '', top = '', registryTimeoutMs = 10_000, registryExtra = ''): string => `
namespaces:
  labels:
    team-a: { pullpin.io/inject: enabled }
    team-b: { pullpin.io/inject: audit }
pullSecrets:
  - name: local-registry
    registries: ["${host}"]
${top}
registry:
  hosts: ["${host}"]
  allowPrivate: ["${host}"]
  credentials: { dockerConfigFiles: ["${dockerConfigFile}"] }
  options:
    "${host}": { caFile: "${registry.caFile}", timeoutMs: ${registryTimeoutMs}, retries: 1 }
${registryExtra}
pinning:
  enabled: true
${pinningExtra}
`
  return {
    registry,
    proxy,
    host,
    dockerConfigFile,
    dir,
    configYaml,
    config: (extra, top, registryExtra) => parseConfig(configYaml(extra, top, undefined, registryExtra), 'pinning test'),
    async credentialStore () {
      const store = new CredentialStore()
      store.replace(await readDockerConfigFiles([dockerConfigFile]))
      return store
    },
    async stop () {
      await proxy.stop()
      await registry.stop()
    },
  }
}

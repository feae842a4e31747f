// The live set of registry credentials for lookups. Standalone it is filled once from
// dockerconfigjson files; with a cluster, the Secret watcher replaces it on every rotation, and
// the registry client asks it per request, so a rotation applies without a restart.
import { readFile } from 'node:fs/promises'
import { ERR_CONFIG_READ } from '../errors.js'
import { Keyring, type DockerConfigSource, type RegistryCredential } from './keyring.js'
import type { RegistryImage } from '../reference/host-glob.js'

export class CredentialStore {
  private keyring: Keyring = Keyring.fromDockerConfigs([])

  lookup (image: RegistryImage): RegistryCredential[] {
    return this.keyring.lookup(image)
  }

  replace (configs: readonly DockerConfigSource[]): void {
    this.keyring = Keyring.fromDockerConfigs(configs)
  }

  get size (): number { return this.keyring.size }

  toJSON (): unknown { return this.keyring.toJSON() }
}

export async function readDockerConfigFiles (files: readonly string[]): Promise<DockerConfigSource[]> {
  return Promise.all(files.map(async (file) => {
    try {
      return { source: file, json: await readFile(file, 'utf8') }
    } catch (err) {
      throw new ERR_CONFIG_READ(file, (err as NodeJS.ErrnoException).code ?? 'unreadable')
    }
  }))
}

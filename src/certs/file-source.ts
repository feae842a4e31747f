// Provided certificate files (for example a cert-manager Secret mounted into the pod).
import { readFile } from 'node:fs/promises'
import { ERR_TLS_FILES } from '../errors.js'
import type { CertificateSource, TlsMaterial } from './certificate-source.js'

export class FileCertificateSource implements CertificateSource {
  readonly description: string
  constructor (private readonly certFile: string, private readonly keyFile: string, private readonly caFile?: string) {
    this.description = `certificate files ${certFile}, ${keyFile}`
  }

  async load (): Promise<TlsMaterial> {
    try {
      const [cert, key, ca] = await Promise.all([
        readFile(this.certFile, 'utf8'),
        readFile(this.keyFile, 'utf8'),
        this.caFile !== undefined ? readFile(this.caFile, 'utf8') : Promise.resolve(undefined),
      ])
      return ca === undefined ? { cert, key } : { cert, key, ca }
    } catch (err) {
      throw new ERR_TLS_FILES((err as Error).message)
    }
  }
}

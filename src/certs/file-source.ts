// Provided certificate files (for example a cert-manager Secret mounted into the pod).
//
// watch() reloads them when they change. A Secret volume is updated by the kubelet's
// AtomicWriter: the new files go into a fresh timestamped directory and the `..data` symlink is
// swapped to it with a rename, so the files themselves are never written in place and a watch on
// them would miss the change. Watching the directories that hold them sees the rename. Events
// come in bursts, so reloads are debounced; a pair that does not match yet (key and certificate
// replaced one after the other, outside Kubernetes) is skipped until the next event.
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { watch as watchFs, type FSWatcher } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { ERR_TLS_FILES, isCodedError } from '../errors.js'
import type { CertificateSource, TlsMaterial } from './certificate-source.js'

export interface FileWatchOptions {
  /** Quiet time after the last file event before reloading. */
  readonly debounceMs?: number
}

export class FileCertificateSource implements CertificateSource {
  readonly description: string
  constructor (private readonly certFile: string, private readonly keyFile: string, private readonly caFile?: string, private readonly watchOptions: FileWatchOptions = {}) {
    this.description = `certificate files ${certFile}, ${keyFile}`
  }

  async load (): Promise<TlsMaterial> {
    try {
      const [cert, key, ca] = await Promise.all([
        readFile(this.certFile, 'utf8'),
        readFile(this.keyFile, 'utf8'),
        this.caFile !== undefined ? readFile(this.caFile, 'utf8') : Promise.resolve(undefined),
      ])
      this.checkPem(cert, key, ca)
      return ca === undefined ? { cert, key } : { cert, key, ca }
    } catch (err) {
      if (isCodedError(err, 'PULLPIN_TLS_FILES')) throw err
      throw new ERR_TLS_FILES((err as Error).message)
    }
  }

  /**
   * Each file parsed here, so a bad one is named. OpenSSL's own message (thrown later, by the
   * server) names no file; and no message from here quotes any of a file's text: a key file is
   * a secret.
   */
  private checkPem (cert: string, key: string, ca: string | undefined): void {
    try { createPrivateKey(key) } catch { throw new ERR_TLS_FILES(`${this.keyFile} is not a PEM private key`) }
    try { new X509Certificate(cert) } catch { throw new ERR_TLS_FILES(`${this.certFile} is not a PEM certificate`) } // eslint-disable-line no-new
    if (ca !== undefined) {
      try { new X509Certificate(ca) } catch { throw new ERR_TLS_FILES(`${this.caFile ?? ''} is not a PEM certificate`) } // eslint-disable-line no-new
    }
  }

  watch (onChange: (material: TlsMaterial) => void, onError: (err: Error) => void): () => void {
    const files = [this.certFile, this.keyFile, ...(this.caFile !== undefined ? [this.caFile] : [])]
    const dirs = [...new Set(files.map(f => dirname(f)))]
    let last: TlsMaterial | undefined
    let timer: NodeJS.Timeout | undefined
    let stopped = false
    // What the server was started with, so an event that changes nothing does not reload.
    this.load().then((m) => { last ??= m }, () => {})
    const reload = async (): Promise<void> => {
      let material: TlsMaterial
      try {
        material = await this.load()
      } catch (err) {
        // Mid-swap, a file can be briefly missing: report, keep serving the previous pair.
        if (!stopped) onError(err as Error)
        return
      }
      if (stopped) return
      if (last !== undefined && material.cert === last.cert && material.key === last.key && material.ca === last.ca) return
      if (!pairMatches(material)) {
        onError(new ERR_TLS_FILES(`${this.certFile} and ${this.keyFile} do not match (yet); still serving the previous certificate`))
        return
      }
      last = material
      onChange(material)
    }
    const schedule = (): void => {
      if (stopped) return
      clearTimeout(timer)
      timer = setTimeout(() => { reload().catch(onError) }, this.watchOptions.debounceMs ?? 200)
    }
    const watchers: FSWatcher[] = []
    for (const dir of dirs) {
      try {
        const w = watchFs(dir, { persistent: false }, schedule)
        w.on('error', (err) => onError(err))
        watchers.push(w)
      } catch (err) {
        onError(err as Error)
      }
    }
    return () => {
      stopped = true
      clearTimeout(timer)
      for (const w of watchers) w.close()
    }
  }
}

function pairMatches (m: TlsMaterial): boolean {
  try {
    return new X509Certificate(m.cert).checkPrivateKey(createPrivateKey(m.key))
  } catch {
    return false
  }
}

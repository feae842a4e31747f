// Where the serving certificate comes from (the cert-manager model: one interface, several
// issuers). The server only ever asks a source for the current material and is told of changes.
import { X509Certificate } from 'node:crypto'

export interface TlsMaterial {
  readonly cert: string
  readonly key: string
  /** The CA that signed `cert`, when known: written into the webhook's caBundle. */
  readonly ca?: string
}

export interface CertificateSource {
  readonly description: string
  load (): Promise<TlsMaterial>
  /** Calls `onChange` with new material when it is renewed or replaced; returns a stop function. */
  watch? (onChange: (material: TlsMaterial) => void, onError: (err: Error) => void): () => void
}

/** When the (first) certificate of a PEM chain expires, in ms since the epoch. */
export function certificateNotAfter (certPem: string): number {
  return Date.parse(new X509Certificate(certPem).validTo)
}

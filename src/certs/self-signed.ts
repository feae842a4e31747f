// A self-signed CA and a serving certificate it signs, kept in a directory and reused on the next
// start while still valid for the wanted names. Used for `npm start` on a laptop and, through the
// cluster module, as the source of the Secret shared by replicas.
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { generate } from 'selfsigned'
import type { CertificateSource, TlsMaterial } from './certificate-source.js'

export interface SelfSignedOptions {
  /** DNS names and IP addresses the serving certificate must cover. */
  readonly dnsNames: readonly string[]
  readonly ipAddresses: readonly string[]
  readonly validityDays?: number
  /** Reissue when less than this much validity is left. */
  readonly renewBeforeDays?: number
  readonly now?: () => Date
}

const DAY = 86_400_000

export interface CaMaterial { readonly cert: string; readonly key: string }

/**
 * A self-signed CA valid from 5 minutes before `now` (clock skew) for `days`. EC P-256: fast to make
 * and to serve. Each CA gets a unique subject: during a rotation the old and the new CA sit in one
 * caBundle, and OpenSSL-based clients (curl, Node) pick the issuer by subject name, so two CAs with
 * one name make the new certificate fail with "certificate signature failure".
 */
export async function issueCa (commonName: string, now: Date, days: number): Promise<CaMaterial> {
  const ca = await generate([{ name: 'commonName', value: `${commonName} ${randomBytes(6).toString('hex')}` }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now.getTime() - 5 * 60_000),
    notAfterDate: new Date(now.getTime() + days * DAY),
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  })
  return { cert: ca.cert, key: ca.private }
}

/** Issue a new CA plus a serving certificate signed by it; the CA lives twice as long. */
export async function issueSelfSigned (opts: SelfSignedOptions): Promise<TlsMaterial & { caKey: string }> {
  const ca = await issueCa('pullpin webhook CA', opts.now?.() ?? new Date(), (opts.validityDays ?? 365) * 2)
  const serving = await issueServing(ca, opts)
  return { ...serving, caKey: ca.key }
}

/** A serving certificate signed by an existing CA. */
export async function issueServing (ca: CaMaterial, opts: SelfSignedOptions): Promise<TlsMaterial> {
  const now = opts.now?.() ?? new Date()
  const days = opts.validityDays ?? 365
  const leaf = await generate([{ name: 'commonName', value: opts.dnsNames[0] ?? 'pullpin' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now.getTime() - 5 * 60_000),
    notAfterDate: new Date(now.getTime() + days * DAY),
    ca,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          ...opts.dnsNames.map(value => ({ type: 2 as const, value })),
          ...opts.ipAddresses.map(ip => ({ type: 7 as const, ip })),
        ],
      },
    ],
  })
  return { cert: leaf.cert, key: leaf.private, ca: ca.cert }
}

/** True when `material` is signed by its CA, covers every wanted name and has enough life left. */
export function isUsable (material: TlsMaterial, opts: SelfSignedOptions): boolean {
  try {
    const now = opts.now?.() ?? new Date()
    const leaf = new X509Certificate(material.cert)
    createPrivateKey(material.key)
    if (!leaf.checkPrivateKey(createPrivateKey(material.key))) return false
    if (material.ca !== undefined && !leaf.verify(new X509Certificate(material.ca).publicKey)) return false
    const renewBefore = (opts.renewBeforeDays ?? 30) * DAY
    if (new Date(leaf.validTo).getTime() - renewBefore < now.getTime()) return false
    if (new Date(leaf.validFrom).getTime() > now.getTime() + 60_000) return false
    return opts.dnsNames.every(n => leaf.checkHost(n, { subject: 'never' }) !== undefined) &&
      opts.ipAddresses.every(ip => leaf.checkIP(ip) !== undefined)
  } catch {
    return false
  }
}

/** Certificates in a directory (ca.crt, ca.key, tls.crt, tls.key), made when missing or no longer usable. */
export class SelfSignedDirectorySource implements CertificateSource {
  readonly description: string
  constructor (private readonly dir: string, private readonly opts: SelfSignedOptions) {
    this.description = `self-signed certificates in ${dir}`
  }

  async load (): Promise<TlsMaterial> {
    const existing = await this.read()
    if (existing !== undefined && isUsable(existing, this.opts)) return existing
    const issued = await issueSelfSigned(this.opts)
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    // Write then rename so a crash never leaves a half-written key behind.
    const files: Array<[string, string]> = [['ca.crt', issued.ca ?? ''], ['ca.key', issued.caKey], ['tls.crt', issued.cert], ['tls.key', issued.key]]
    for (const [name, body] of files) {
      const tmp = join(this.dir, `.${name}.tmp`)
      await writeFile(tmp, body, { mode: 0o600 })
      await rename(tmp, join(this.dir, name))
    }
    return { cert: issued.cert, key: issued.key, ca: issued.ca ?? '' }
  }

  private async read (): Promise<TlsMaterial | undefined> {
    try {
      const [ca, cert, key] = await Promise.all(['ca.crt', 'tls.crt', 'tls.key'].map(f => readFile(join(this.dir, f), 'utf8')))
      return { ca: ca!, cert: cert!, key: key! }
    } catch {
      return undefined
    }
  }
}

// The self-managed CA and serving certificate kept in a Secret, and when to renew them. Pure
// apart from key generation.
//
// Secret keys: tls.crt / tls.key (serving pair, kubernetes.io/tls layout), ca.crt (the trust
// bundle written into the webhook's caBundle: every CA that may sign a serving certificate now or
// soon), ca.key (the signing CA's key), next-ca.key (key of a pre-published CA).
//
// Renewal without a failed request: the serving certificate is reissued by the same CA well
// before expiry, so the caBundle does not change. A CA nearing its own end is replaced in two
// steps: first the next CA is added to the bundle (the leader patches caBundle), and only at a
// later serving renewal does it start signing; the old CA stays in the bundle until it expires.
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { issueCa as issueSelfSignedCa, issueServing, isUsable, type CaMaterial, type SelfSignedOptions } from '../certs/self-signed.js'
import type { TlsMaterial } from '../certs/certificate-source.js'

const DAY = 86_400_000
/** Time for a caBundle change to reach every API server before the new CA may sign. */
const BUNDLE_PROPAGATION_MS = 10 * 60_000

export interface TlsSecretData {
  readonly 'tls.crt': string
  readonly 'tls.key': string
  readonly 'ca.crt': string
  readonly 'ca.key': string
  readonly 'next-ca.key'?: string
}

export interface TlsPlanOptions {
  readonly dnsNames: readonly string[]
  readonly ipAddresses: readonly string[]
  /** Serving certificate validity. */
  readonly validityDays: number
  readonly renewBeforeDays: number
  /** CA validity; 10 × validityDays by default. */
  readonly caValidityDays?: number
  readonly now: () => Date
}

export function splitPem (bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map(s => `${s}\n`) ?? []
}

export function toMaterial (d: TlsSecretData): TlsMaterial {
  return { cert: d['tls.crt'], key: d['tls.key'], ca: d['ca.crt'] }
}

// Dated names tell the CAs of a bundle apart while one replaces the other.
const issueCa = (now: Date, days: number): Promise<CaMaterial> => issueSelfSignedCa(`pullpin webhook CA ${now.toISOString().slice(0, 10)}`, now, days)

interface Parsed {
  bundle: Array<{ pem: string; x509: X509Certificate }>
  signing: { pem: string; x509: X509Certificate; key: string }
  next: { pem: string; x509: X509Certificate; key: string } | undefined
}

function parse (d: TlsSecretData | undefined): Parsed | undefined {
  if (d === undefined) return undefined
  try {
    const bundle = splitPem(d['ca.crt']).map(pem => ({ pem, x509: new X509Certificate(pem) }))
    const signingKey = createPrivateKey(d['ca.key'])
    const signing = bundle.find(c => c.x509.checkPrivateKey(signingKey))
    if (signing === undefined) return undefined
    let next: Parsed['next']
    if (d['next-ca.key'] !== undefined && d['next-ca.key'] !== '') {
      const nextKey = createPrivateKey(d['next-ca.key'])
      const n = bundle.find(c => c.x509.checkPrivateKey(nextKey))
      if (n !== undefined) next = { ...n, key: d['next-ca.key'] }
    }
    return { bundle, signing: { ...signing, key: d['ca.key'] }, next }
  } catch {
    return undefined
  }
}

const endOf = (c: X509Certificate): number => new Date(c.validTo).getTime()
const startOf = (c: X509Certificate): number => new Date(c.validFrom).getTime()

/** The Secret content to write, or undefined when the current one is good as it is. */
export async function planTls (current: TlsSecretData | undefined, opts: TlsPlanOptions): Promise<{ data: TlsSecretData; reason: string } | undefined> {
  const now = opts.now()
  const t = now.getTime()
  const validity = opts.validityDays * DAY
  const renewBefore = opts.renewBeforeDays * DAY
  const caDays = opts.caValidityDays ?? opts.validityDays * 10
  const serving: SelfSignedOptions = { dnsNames: opts.dnsNames, ipAddresses: opts.ipAddresses, validityDays: opts.validityDays, renewBeforeDays: opts.renewBeforeDays, now: opts.now }
  const parsed = parse(current)

  if (parsed === undefined || endOf(parsed.signing.x509) - renewBefore <= t) {
    const ca = await issueCa(now, caDays)
    const leaf = await issueServing(ca, serving)
    return { data: { 'tls.crt': leaf.cert, 'tls.key': leaf.key, 'ca.crt': splitPem(ca.cert).join(''), 'ca.key': ca.key }, reason: current === undefined ? 'created' : 'unusable or expiring CA replaced' }
  }

  let { signing, next } = parsed
  let bundle = parsed.bundle.map(c => c.pem)
  const reasons: string[] = []
  if (next === undefined && endOf(signing.x509) - t < validity + 2 * renewBefore) {
    const ca = await issueCa(now, caDays)
    next = { pem: ca.cert, x509: new X509Certificate(ca.cert), key: ca.key }
    bundle.push(ca.cert)
    reasons.push('next CA published')
  }
  let leaf = { cert: current!['tls.crt'], key: current!['tls.key'] }
  if (!isUsable({ ...leaf, ca: signing.pem }, serving)) {
    const published = next !== undefined && startOf(next.x509) + 5 * 60_000 <= t - BUNDLE_PROPAGATION_MS
    const signingTooShort = endOf(signing.x509) - t < validity
    if (next !== undefined && (published || signingTooShort)) {
      signing = next
      next = undefined
      reasons.push('signing CA rotated')
    }
    leaf = await issueServing({ cert: signing.pem, key: signing.key }, serving)
    reasons.push('serving certificate renewed')
  }
  // Expired CAs leave the bundle; the signing CA goes first.
  bundle = [signing.pem, ...bundle.filter(p => p !== signing.pem && endOf(new X509Certificate(p)) > t)]
  const data: TlsSecretData = {
    'tls.crt': leaf.cert,
    'tls.key': leaf.key,
    'ca.crt': bundle.join(''),
    'ca.key': signing.key,
    ...(next !== undefined ? { 'next-ca.key': next.key } : {}),
  }
  const same = data['tls.crt'] === current!['tls.crt'] && data['ca.crt'] === current!['ca.crt'] && data['ca.key'] === current!['ca.key'] && data['next-ca.key'] === current!['next-ca.key']
  return same ? undefined : { data, reason: reasons.join(', ') || 'CA bundle pruned' }
}

/** When the serving certificate `cert` (PEM) must next be looked at (its renewal point). */
export function renewalDue (cert: string, renewBeforeDays: number): number | undefined {
  try {
    return endOf(new X509Certificate(cert)) - renewBeforeDays * DAY
  } catch {
    return undefined
  }
}

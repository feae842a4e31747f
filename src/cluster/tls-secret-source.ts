// Self-managed TLS in the cluster: the CA and serving certificate live in one Secret of pullpin's
// namespace, shared by every replica. The first replica to start creates it (a concurrent
// create loses with 409 AlreadyExists and re-reads); any replica renews it when due, with the
// write conditional on the resourceVersion (a concurrent renewal loses with 409 and re-reads).
// Every replica watches the Secret and hands new material to the server, which swaps it with
// tls.Server#setSecureContext: open connections keep going, new handshakes get the new pair.
import type { Logger } from 'pino'
import type { V1Secret } from '@kubernetes/client-node'
import type { CertificateSource, TlsMaterial } from '../certs/certificate-source.js'
import type { ClusterConnection } from './connection.js'
import { sleep } from '../async/sleep.js'
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE } from './copy-plan.js'
import { secretInformer, type InformerSettings } from './resource-informers.js'
import type { Informer } from './informer.js'
import { callOptions, describeError, isConflict, isNotFound, timeoutSignal } from './kube-api.js'
import { planTls, renewalDue, toMaterial, type TlsSecretData } from './tls-rotation.js'

export interface SecretCertificateOptions {
  readonly connection: ClusterConnection
  readonly namespace: string
  readonly secretName: string
  readonly dnsNames: readonly string[]
  readonly ipAddresses: readonly string[]
  readonly validityDays: number
  readonly renewBeforeDays: number
  readonly logger: Logger
  readonly informer?: Omit<InformerSettings, 'logger'>
  /** How often each replica checks whether renewal is due, besides the timer set for it. Default 1 h. */
  readonly checkIntervalMs?: number
  readonly now?: () => Date
}

const KEYS = ['tls.crt', 'tls.key', 'ca.crt', 'ca.key', 'next-ca.key'] as const
const MAX_TIMER_MS = 2 ** 31 - 1

function decode (secret: V1Secret | undefined): TlsSecretData | undefined {
  const data = secret?.data
  if (data === undefined) return undefined
  const out: Record<string, string> = {}
  for (const k of KEYS) if (data[k] !== undefined) out[k] = Buffer.from(data[k], 'base64').toString('utf8')
  if (out['tls.crt'] === undefined || out['tls.key'] === undefined || out['ca.crt'] === undefined || out['ca.key'] === undefined) return undefined
  return out as unknown as TlsSecretData
}

function encode (d: TlsSecretData): Record<string, string> {
  const out: Record<string, string> = {}
  for (const k of KEYS) if (d[k] !== undefined) out[k] = Buffer.from(d[k]).toString('base64')
  return out
}

export class SecretCertificateSource implements CertificateSource {
  readonly description: string
  private last: TlsMaterial | undefined
  private renewing: Promise<boolean> | undefined

  constructor (private readonly opts: SecretCertificateOptions) {
    this.description = `self-managed certificates in Secret ${opts.namespace}/${opts.secretName}`
  }

  async load (): Promise<TlsMaterial> {
    // At start the API server may still be coming up (or the pod's network): a few tries, then fail
    // the start so Kubernetes restarts the pod with its own backoff.
    for (let attempt = 1; ; attempt++) {
      try {
        const material = await this.ensure()
        this.last = material
        return material
      } catch (err) {
        if (attempt >= 5) throw new Error(`cannot load ${this.description}: ${describeError(err)}`)
        this.opts.logger.warn({ secret: this.opts.secretName, error: describeError(err), attempt }, 'TLS Secret not available yet; retrying')
        await sleep(250 * 2 ** attempt)
      }
    }
  }

  /** Renew when due; true when this call wrote a new certificate. Safe to call from every replica. */
  renewIfDue (): Promise<boolean> {
    this.renewing ??= this.write().finally(() => { this.renewing = undefined })
    return this.renewing
  }

  watch (onChange: (material: TlsMaterial) => void, onError: (err: Error) => void): () => void {
    const informer: Informer<V1Secret> = secretInformer(this.opts.connection, this.opts.namespace, this.opts.secretName, { logger: this.opts.logger, ...this.opts.informer })
    const deliver = (secret: V1Secret | undefined): void => {
      const data = decode(secret)
      if (data === undefined) return
      const material = toMaterial(data)
      if (this.last !== undefined && material.cert === this.last.cert && material.key === this.last.key && material.ca === this.last.ca) return
      this.last = material
      onChange(material)
      schedule(material.cert)
    }
    const check = (): void => { this.renewIfDue().catch((err: unknown) => onError(new Error(`TLS renewal failed: ${describeError(err)}`))) }
    informer.on((e) => {
      if (e.type === 'delete') check() // deleted by someone: recreate (new CA; the leader re-patches caBundle)
      else deliver(e.object)
    })
    let dueTimer: NodeJS.Timeout | undefined
    const schedule = (cert: string): void => {
      const due = renewalDue(cert, this.opts.renewBeforeDays)
      if (due === undefined) return
      clearTimeout(dueTimer)
      // A little jitter so replicas do not all try in the same millisecond (one wins, the rest re-read).
      const wait = Math.min(MAX_TIMER_MS, Math.max(0, due - (this.opts.now?.() ?? new Date()).getTime()) + Math.random() * 5_000)
      dueTimer = setTimeout(check, wait)
      dueTimer.unref()
    }
    const interval = setInterval(check, this.opts.checkIntervalMs ?? 3_600_000)
    interval.unref()
    if (this.last !== undefined) schedule(this.last.cert)
    informer.start()
    return () => {
      clearInterval(interval)
      clearTimeout(dueTimer)
      informer.stop().catch(() => undefined)
    }
  }

  private async read (): Promise<V1Secret | undefined> {
    try {
      return await this.opts.connection.core.readNamespacedSecret({ name: this.opts.secretName, namespace: this.opts.namespace }, callOptions({ signal: timeoutSignal(5000) }))
    } catch (err) {
      if (isNotFound(err)) return undefined
      throw err
    }
  }

  private async ensure (): Promise<TlsMaterial> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const secret = await this.read()
      const current = decode(secret)
      const plan = await planTls(current, { ...this.opts, now: this.opts.now ?? (() => new Date()) })
      if (plan === undefined) return toMaterial(current!)
      if (await this.put(secret, plan.data, plan.reason)) return toMaterial(plan.data)
    }
    throw new Error('the TLS Secret kept changing under pullpin (5 conflicts in a row)')
  }

  private async write (): Promise<boolean> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const secret = await this.read()
      const plan = await planTls(decode(secret), { ...this.opts, now: this.opts.now ?? (() => new Date()) })
      if (plan === undefined) return false
      if (await this.put(secret, plan.data, plan.reason)) return true
    }
    return false
  }

  /** Create or conditionally replace; false when another replica got there first (re-read and re-plan). */
  private async put (existing: V1Secret | undefined, data: TlsSecretData, reason: string): Promise<boolean> {
    const { core } = this.opts.connection
    const { namespace, secretName: name } = this.opts
    const signal = timeoutSignal(5000)
    try {
      if (existing === undefined) {
        await core.createNamespacedSecret({
          namespace,
          body: { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE } }, type: 'kubernetes.io/tls', data: encode(data) },
        }, callOptions({ signal }))
      } else {
        await core.replaceNamespacedSecret({ name, namespace, body: { ...existing, data: encode(data) } }, callOptions({ signal }))
      }
      this.opts.logger.info({ secret: `${namespace}/${name}`, reason }, 'TLS Secret written')
      return true
    } catch (err) {
      if (isConflict(err)) return false
      throw err
    }
  }
}

// Amazon ECR pull credentials: GetAuthorizationToken through the AWS SDK, whose default
// credential chain finds IRSA web identity, EKS Pod Identity or environment keys on its own, so
// no static AWS key is configured in pullpin. The token is base64 "AWS:<password>" and works for
// the registry named by proxyEndpoint until expiresAt (12 hours; ECR API reference,
// GetAuthorizationToken / AuthorizationData).
import { ECRClient, GetAuthorizationTokenCommand, type ECRClientConfig } from '@aws-sdk/client-ecr'
import { ERR_CREDENTIAL_SOURCE } from '../errors.js'
import type { EcrSourceConfig } from '../policy/config.js'
import { redact, type CredentialFetcher, type FetchedAuth, type FetchedCredentials } from './types.js'

export interface EcrFetcherOptions {
  readonly config: EcrSourceConfig
  /** AWS credentials; undefined: the SDK's default chain. Tests pass static ones. */
  readonly credentials?: ECRClientConfig['credentials']
  /** SDK attempts per fetch (its standard retry covers throttling); the refresher backs off between fetches. */
  readonly maxAttempts?: number
  /** Our clock: expiry is kept on it. */
  readonly now?: () => number
}

export function createEcrFetcher (opts: EcrFetcherOptions): CredentialFetcher {
  const { config } = opts
  const now = opts.now ?? Date.now
  const client = new ECRClient({
    region: config.region,
    ...(config.endpoint !== undefined ? { endpoint: config.endpoint } : {}),
    ...(opts.credentials !== undefined ? { credentials: opts.credentials } : {}),
    maxAttempts: opts.maxAttempts ?? 3,
  })
  const description = `ecr:${config.region}${config.registryIds !== undefined ? `/${config.registryIds.join(',')}` : ''}`
  return {
    description,
    async fetch (signal) {
      const started = now()
      let out
      try {
        out = await client.send(new GetAuthorizationTokenCommand(config.registryIds !== undefined ? { registryIds: [...config.registryIds] } : {}), { abortSignal: signal })
      } catch (err) {
        const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } }
        const status = e.$metadata?.httpStatusCode
        throw new ERR_CREDENTIAL_SOURCE(description, `GetAuthorizationToken failed: ${e.name ?? 'error'}${status !== undefined ? ` (HTTP ${status})` : ''}: ${redact(e.message ?? '')}`)
      }
      const auths: Record<string, FetchedAuth> = {}
      let expiresAt = Infinity
      for (const [i, d] of (out.authorizationData ?? []).entries()) {
        const token = d.authorizationToken
        if (token === undefined || d.proxyEndpoint === undefined) throw new ERR_CREDENTIAL_SOURCE(description, `authorizationData[${i}] lacks authorizationToken or proxyEndpoint`)
        const decoded = Buffer.from(token, 'base64').toString('utf8')
        const colon = decoded.indexOf(':')
        if (colon <= 0) throw new ERR_CREDENTIAL_SOURCE(description, `authorizationData[${i}].authorizationToken is not base64 of "user:password"`)
        let host: string
        try {
          host = new URL(d.proxyEndpoint).host
        } catch {
          throw new ERR_CREDENTIAL_SOURCE(description, `authorizationData[${i}].proxyEndpoint is not a URL`)
        }
        auths[host] = { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
        // AWS's clock says when. SigV4 already needs our clock within minutes of AWS's, and the
        // refresher renews at half the lifetime, so the skew never decides whether a token is used.
        // Without expiresAt: the documented 12 hours, counted from when we asked.
        expiresAt = Math.min(expiresAt, d.expiresAt instanceof Date ? d.expiresAt.getTime() : started + 12 * 3600_000)
      }
      if (Object.keys(auths).length === 0) throw new ERR_CREDENTIAL_SOURCE(description, 'GetAuthorizationToken returned no authorizationData')
      return { auths, expiresAt } satisfies FetchedCredentials
    },
  }
}

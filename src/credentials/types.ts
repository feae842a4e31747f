// What a credential source (ECR, a kubelet credential provider plugin) hands back: registry
// credentials keyed like dockerconfigjson `auths` (kubelet host/path globs) and when they stop
// working. The refresher (./refresher.ts) decides when to ask again.

export interface FetchedAuth {
  readonly username: string
  readonly password: string
}

export interface FetchedCredentials {
  /** dockerconfigjson `auths` keys (host[:port][/path], globs allowed) → credentials. */
  readonly auths: Readonly<Record<string, FetchedAuth>>
  /** ms since the epoch (our clock) after which the credentials must not be used or written. */
  readonly expiresAt: number
}

export interface CredentialFetcher {
  /** e.g. "ecr:eu-west-1" or "exec:/plugins/acr-credential-provider": safe to log. */
  readonly description: string
  /** Rejects with ERR_CREDENTIAL_SOURCE, whose message never carries secret material. */
  fetch (signal: AbortSignal): Promise<FetchedCredentials>
}

/** Time as the refresher sees it; tests drive a manual one. */
export interface Clock {
  now (): number
  setTimeout (fn: () => void, ms: number): unknown
  clearTimeout (handle: unknown): void
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms)
    // A refresh timer alone never keeps the process alive.
    t.unref()
    return t
  },
  clearTimeout: (h) => { clearTimeout(h as NodeJS.Timeout) },
}

/** dockerconfigjson text of fetched credentials (`auth` = base64 "user:password", as docker writes it). */
export function toDockerConfigJson (auths: FetchedCredentials['auths']): string {
  const out: Record<string, { username: string; password: string; auth: string }> = Object.create(null) as Record<string, never>
  for (const [key, a] of Object.entries(auths)) {
    out[key] = { username: a.username, password: a.password, auth: Buffer.from(`${a.username}:${a.password}`).toString('base64') }
  }
  return JSON.stringify({ auths: out })
}

/**
 * Text from outside (an SDK error, a plugin's stderr) made fit for a log line or an error message:
 * bounded, one line, with every known secret and anything shaped like a token replaced.
 */
export function redact (text: string, secrets: readonly string[] = [], max = 200): string {
  let out = text
  // Longest first, so a secret that contains another is replaced whole.
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) if (s.length >= 4) out = out.split(s).join('[redacted]')
  // Long base64/hex-ish runs (tokens, JWTs, passwords in base64) are never useful in a message.
  out = out.replace(/[A-Za-z0-9+/=_.-]{24,}/g, '[redacted]').replace(/\s+/g, ' ').trim()
  return out.length > max ? `${out.slice(0, max)}…` : out
}

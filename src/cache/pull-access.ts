// Pull access per credential: can the credential a pod will use (the pull secret pullpin injects)
// read a repository? pullpin's own lookups try every credential it holds for an image, as the
// kubelet does with the secrets of a pod; this asks with exactly one secret's credentials, so a
// token without the package's scope (GHCR: a PAT without read:packages, or one whose
// organisation's SSO it was not authorised for) is caught at admission, not by ImagePullBackOff.
//
// The answer is per (credentials, repository): a Bearer token is scoped to a repository
// (distribution spec/auth/scope.md), so one repository's answer says nothing about another's.
// Answers are cached like tag answers (fresh for a TTL, then served while one background refresh
// runs) and concurrent probes are coalesced; a registry error is no answer and is not kept.
import { LRUCache } from 'lru-cache'
import { abortable } from '../async/abort.js'
import { InFlight } from '../async/in-flight.js'
import { isCodedError } from '../errors.js'
import type { RepositoryRef } from '../registry/client.js'
import type { RegistryCredential } from '../registry/keyring.js'
import { credentialIdentity } from '../registry/token.js'

/** What probes one repository with a fixed set of credentials (a RegistryClient made for them). */
export interface AccessProbe {
  headManifest (ref: RepositoryRef, reference: string, signal?: AbortSignal): Promise<unknown>
}

export type PullAccess =
  | { readonly access: 'ok' }
  /** The registry refused these credentials (401: not accepted or no scope; 403: not allowed). */
  | { readonly access: 'denied'; readonly status: string }

export interface PullAccessCacheOptions {
  /** A probe that authenticates with exactly `credentials` ([] = anonymous). */
  readonly probeFor: (credentials: readonly RegistryCredential[]) => AccessProbe
  readonly ttlMs: number
  readonly staleWhileRevalidateMs: number
  readonly maxEntries: number
  readonly now?: () => number
}

interface Entry { readonly answer: PullAccess; readonly at: number }

/** Probes kept per credential set: a cluster has a handful of pull secrets, each one set. */
const MAX_PROBES = 64

export class PullAccessCache {
  readonly #opts: PullAccessCacheOptions
  readonly #entries: LRUCache<string, Entry>
  readonly #probes: LRUCache<string, AccessProbe>
  readonly #inFlight = new InFlight<string, PullAccess>()
  readonly #now: () => number

  constructor (opts: PullAccessCacheOptions) {
    this.#opts = opts
    this.#entries = new LRUCache({ max: Math.max(1, opts.maxEntries) })
    this.#probes = new LRUCache({
      max: MAX_PROBES,
      dispose: (p) => { void (p as { close?: () => Promise<void> }).close?.() },
    })
    this.#now = opts.now ?? Date.now
  }

  /** A fresh answer without I/O. */
  peek (ref: RepositoryRef, credentials: readonly RegistryCredential[]): PullAccess | undefined {
    const e = this.#entries.get(entryKey(ref, identityOf(credentials)))
    return e !== undefined && this.#now() - e.at < this.#opts.ttlMs ? e.answer : undefined
  }

  /**
   * Whether `credentials` may pull from `ref`'s repository, asked by a manifest HEAD of `reference`
   * (a 404 still proves the credentials were accepted). Rejects with the registry's coded error
   * when the registry gave no answer about access (unavailable, timeout…).
   */
  async check (ref: RepositoryRef, reference: string, credentials: readonly RegistryCredential[], signal?: AbortSignal): Promise<PullAccess> {
    const identity = identityOf(credentials)
    const key = entryKey(ref, identity)
    const e = this.#entries.get(key)
    const age = e === undefined ? Infinity : this.#now() - e.at
    if (e !== undefined && age < this.#opts.ttlMs) return e.answer
    const fetch = (): Promise<PullAccess> => this.#inFlight.run(key, () => this.#probe(ref, reference, credentials, identity, key))
    if (e !== undefined && age < this.#opts.ttlMs + this.#opts.staleWhileRevalidateMs) {
      fetch().catch(() => {})
      return e.answer
    }
    return abortable(fetch(), signal)
  }

  /** Answers kept. */
  get size (): number { return this.#entries.size }

  close (): void { this.#probes.clear() }

  async #probe (ref: RepositoryRef, reference: string, credentials: readonly RegistryCredential[], identity: string, key: string): Promise<PullAccess> {
    let probe = this.#probes.get(identity)
    if (probe === undefined) this.#probes.set(identity, probe = this.#opts.probeFor(credentials))
    let answer: PullAccess
    try {
      // No caller's signal: the probe fills the cache for the next review (its timeout bounds it).
      await probe.headManifest(ref, reference)
      answer = { access: 'ok' }
    } catch (err) {
      if (isCodedError(err, 'PULLPIN_REGISTRY_NOT_FOUND')) answer = { access: 'ok' }
      else if (isCodedError(err, 'PULLPIN_REGISTRY_UNAUTHORIZED')) answer = { access: 'denied', status: /answered (\d{3})/.exec((err as Error).message)?.[1] ?? '401' }
      else throw err
    }
    this.#entries.set(key, { answer, at: this.#now() })
    return answer
  }
}

// A credential's identity is a hash of its secret: worked out once per credential object (the
// keyring hands out the same objects until a rotation replaces them), not on every review.
const identities = new WeakMap<RegistryCredential, string>()

function identityOf (credentials: readonly RegistryCredential[]): string {
  if (credentials.length === 0) return 'anonymous'
  if (credentials.length === 1) return identity(credentials[0]!)
  return credentials.map(identity).join('+')
}

function identity (c: RegistryCredential): string {
  let id = identities.get(c)
  if (id === undefined) identities.set(c, id = credentialIdentity(c))
  return id
}

// One flat LRU of (credential set, repository) answers: a fetched source's credential gets a
// new identity at every refresh, and the old identities' answers must age out like any other.
function entryKey (ref: RepositoryRef, identity: string): string {
  return `${identity}\u0000${ref.registry}/${ref.repository}`
}

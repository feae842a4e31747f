// A kubelet-style credential keyring built from dockerconfigjson contents, so pullpin asks a
// registry with the same credentials the node would use for the same image
// (k8s.io/kubernetes pkg/credentialprovider: config.go DockerConfigEntry.UnmarshalJSON and
// decodeDockerConfigFieldAuth, keyring.go BasicDockerKeyring.Add/Lookup).
//
// Secret hygiene: passwords live in a private field, never reach an error message, and
// toJSON / toString / util.inspect of the keyring list only keys and sources. Each returned
// credential also redacts its password from JSON.stringify and util.inspect (so logging one
// by accident does not leak it); read `.password` explicitly where it is needed.
import { Buffer } from 'node:buffer'
import { inspect } from 'node:util'
import { ERR_CONFIG_INVALID } from '../errors.js'
import { formatPosition, jsonErrorPosition } from '../json-position.js'
import { compileRegistryKey, isDockerHubImage, type CompiledRegistryKey, type RegistryImage } from '../reference/host-glob.js'
import { tryParseImageReference, type ImageReference } from '../reference/parse.js'

export interface RegistryCredential {
  username: string
  password: string
  /** where it came from, e.g. a file path or "namespace/secret-name" */
  source: string
  /** the auths key exactly as written in that config */
  key: string
}

export interface DockerConfigSource {
  source: string
  /** dockerconfigjson ({"auths": {...}}) or legacy dockercfg ({"host": {...}}) */
  json: string | Uint8Array | object
}

interface KeyringEntry {
  compiled: CompiledRegistryKey
  credentials: RegistryCredential[]
}

// The kubelet files Docker Hub's "https://index.docker.io/v1/" under this key and falls back to
// it for Docker Hub images when no other key matched (keyring.go defaultRegistryHost).
const DEFAULT_REGISTRY_KEY = 'index.docker.io'
const BASE64_CHARS_RE = /^[A-Za-z0-9+/]*$/
const BASE64_PADDED_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

export class Keyring {
  readonly #entries: readonly KeyringEntry[]
  readonly #byKey: ReadonlyMap<string, KeyringEntry>
  readonly #size: number

  private constructor (entries: KeyringEntry[]) {
    // keyring.go: the index is sorted in reverse lexical order so that, for
    // "quay.io/coreos/etcd", "quay.io/coreos" is tried before "quay.io". Byte order, as Go's sort.
    entries.sort((a, b) => (a.compiled.key < b.compiled.key ? 1 : a.compiled.key > b.compiled.key ? -1 : 0))
    this.#entries = entries
    this.#byKey = new Map(entries.map((e) => [e.compiled.key, e]))
    this.#size = entries.reduce((n, e) => n + e.credentials.length, 0)
  }

  /**
   * Builds a keyring from dockerconfigjson / dockercfg contents, in order (for one key,
   * credentials from earlier configs come first). Throws ERR_CONFIG_INVALID naming the source
   * and the offending auths key, never any secret material.
   */
  static fromDockerConfigs (configs: readonly DockerConfigSource[]): Keyring {
    const byKey = new Map<string, KeyringEntry>()
    for (const { source, json } of configs) {
      for (const [key, credential] of parseDockerConfig(source, json)) {
        const compiled = compileRegistryKey(key)
        let entry = byKey.get(compiled.key)
        if (entry === undefined) {
          entry = { compiled, credentials: [] }
          byKey.set(compiled.key, entry)
        }
        entry.credentials.push(credential)
      }
    }
    return new Keyring([...byKey.values()])
  }

  /**
   * Credentials the kubelet would try for `image`, most specific key first: every key whose
   * glob matches the normalized image, in reverse lexical key order; if none matched and the
   * image is on Docker Hub, the credentials under "index.docker.io" (i.e. written as
   * "https://index.docker.io/v1/"). Unparsable images get no credentials.
   */
  lookup (image: RegistryImage): RegistryCredential[] {
    // Parsed once for every key (a pod's images are looked up on every review by the checks).
    let ref: Pick<ImageReference, 'registry' | 'repository'>
    if (typeof image === 'string') {
      const parsed = tryParseImageReference(image)
      if (!parsed.ok) return []
      ref = parsed.ref
    } else {
      ref = image
    }
    const out: RegistryCredential[] = []
    for (const entry of this.#entries) {
      if (entry.compiled.matchesImage(ref)) out.push(...entry.credentials)
    }
    if (out.length > 0) return out
    const fallback = this.#byKey.get(DEFAULT_REGISTRY_KEY)
    if (fallback !== undefined && isDockerHubImage(ref)) {
      out.push(...fallback.credentials)
    }
    return out
  }

  /** Number of credentials held. */
  get size (): number {
    return this.#size
  }

  /** Only keys and sources: safe to log. */
  toJSON (): Array<{ key: string; source: string }> {
    return this.#entries.flatMap((e) => e.credentials.map((c) => ({ key: c.key, source: c.source })))
  }

  toString (): string {
    return `Keyring(${this.#size} credentials)`
  }

  [inspect.custom] (): string {
    return `Keyring ${JSON.stringify(this.toJSON())}`
  }
}

// ---- dockerconfigjson parsing ----

function parseDockerConfig (source: string, json: DockerConfigSource['json']): Array<[string, RegistryCredential]> {
  const root = toObject(source, json)
  let auths: Record<string, unknown>
  if ('auths' in root) {
    // kubernetes.io/dockerconfigjson (docker CLI config.json)
    const value = root.auths
    if (value === null) return []
    if (!isPlainObject(value)) throw new ERR_CONFIG_INVALID(source, '"auths" must be an object')
    auths = value
  } else if ('credsStore' in root || 'credHelpers' in root) {
    // A config.json that only points at credential helpers: there is nothing to read, and
    // pullpin does not run helpers (the kubelet does not either).
    return []
  } else {
    // legacy kubernetes.io/dockercfg: the registries are the top-level keys
    auths = root
  }

  const out: Array<[string, RegistryCredential]> = []
  for (const [key, value] of Object.entries(auths)) {
    // JSON null decodes to an empty entry in Go; an empty entry carries no credentials.
    if (value === null) continue
    const where = `auths entry ${JSON.stringify(key)}`
    if (!isPlainObject(value)) throw new ERR_CONFIG_INVALID(source, `${where} must be an object`)
    const username = optionalString(source, where, value, 'username')
    const password = optionalString(source, where, value, 'password')
    const auth = optionalString(source, where, value, 'auth')
    let user = username ?? ''
    let pass = password ?? ''
    if (auth !== undefined && auth !== '') {
      // As DockerConfigEntry.UnmarshalJSON: a non-empty auth overrides username/password.
      const decoded = decodeAuthField(auth)
      if (decoded === undefined) {
        throw new ERR_CONFIG_INVALID(source, `${where}: "auth" must be base64 of "username:password"`)
      }
      ;[user, pass] = decoded
    }
    // Entries without a username or password are skipped. That covers "identitytoken" (an OAuth2
    // refresh token that must be exchanged at the registry's token endpoint, which the kubelet
    // never does: its DockerConfigEntry has no such field) and "registrytoken" (a bearer token
    // for one registry session); the kubelet would turn such entries into empty, i.e. anonymous,
    // credentials, and pullpin already falls back to anonymous access on its own.
    if (user === '' && pass === '') continue
    out.push([key, makeCredential(user, pass, source, key)])
  }
  return out
}

function toObject (source: string, json: DockerConfigSource['json']): Record<string, unknown> {
  let value: unknown = json
  if (json instanceof Uint8Array) value = Buffer.from(json.buffer, json.byteOffset, json.byteLength).toString('utf8')
  if (typeof value === 'string') {
    const text = value
    if (text.trim() === '') throw new ERR_CONFIG_INVALID(source, 'docker config is empty')
    try {
      value = JSON.parse(text)
    } catch {
      // V8's message quotes the text around the error, which may be a password: only the position is given.
      const at = jsonErrorPosition(text)
      throw new ERR_CONFIG_INVALID(source, `docker config is not valid JSON${at === undefined ? '' : ` (${formatPosition(at)})`}`)
    }
  }
  if (!isPlainObject(value)) throw new ERR_CONFIG_INVALID(source, 'docker config must be a JSON object')
  return value
}

function optionalString (source: string, where: string, entry: Record<string, unknown>, field: string): string | undefined {
  const v = entry[field]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string') throw new ERR_CONFIG_INVALID(source, `${where}: "${field}" must be a string`)
  return v
}

// decodeDockerConfigFieldAuth: padded base64 (StdEncoding) when the trimmed field ends in "=",
// otherwise unpadded (RawStdEncoding); Go's decoder skips "\r" and "\n" but nothing else. The
// decoded text splits on the first ":".
function decodeAuthField (field: string): [string, string] | undefined {
  const data = field.replace(/[\r\n]/g, '')
  if (field.trim().endsWith('=')) {
    if (data.length % 4 !== 0 || !BASE64_PADDED_RE.test(data)) return undefined
  } else if (!BASE64_CHARS_RE.test(data) || data.length % 4 === 1) {
    return undefined
  }
  const decoded = Buffer.from(data, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return undefined
  return [decoded.slice(0, colon), decoded.slice(colon + 1)]
}

function makeCredential (username: string, password: string, source: string, key: string): RegistryCredential {
  const credential: RegistryCredential = { username, password, source, key }
  const redacted = (): Record<string, string> => ({ username, password: '[redacted]', source, key })
  Object.defineProperty(credential, 'toJSON', { value: redacted, enumerable: false })
  Object.defineProperty(credential, inspect.custom, { value: () => `RegistryCredential ${JSON.stringify(redacted())}`, enumerable: false })
  return Object.freeze(credential)
}

function isPlainObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

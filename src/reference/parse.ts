// Image reference parsing and normalization, following github.com/distribution/reference
// (v0.6: regexp.go, reference.go Parse, normalize.go ParseNormalizedNamed/splitDockerDomain/
// TagNameOnly) and github.com/opencontainers/go-digest (Digest.Validate), which is what the
// kubelet (pkg/util/parsers.ParseImageName) and containerd use on the same strings. Any
// difference from those libraries means pullpin would pin or refuse an image the node would
// have treated differently, so the grammar below is a transcription, not an approximation.
//
// Runs on the admission hot path: every regular expression is compiled once at module load.
import { ERR_REFERENCE_INVALID } from '../errors.js'

export interface ImageReference {
  /** the input, as given */
  original: string
  /** the name part exactly as written, without tag or digest ("nginx", "localhost:5000/app") */
  written: string
  /** registry host[:port]; Docker Hub is "docker.io" (index.docker.io is folded into it) */
  registry: string
  /** repository path on that registry ("library/nginx", "org/app") */
  repository: string
  /** `${registry}/${repository}` */
  name: string
  /** the explicit tag, or "latest" when neither tag nor digest was given; undefined for digest-only references */
  tag?: string
  /** "<algorithm>:<hex>" when given */
  digest?: string
  /** true when neither tag nor digest was given and tag is the implied "latest" */
  tagDefaulted: boolean
}

export const DEFAULT_REGISTRY = 'docker.io'
export const DEFAULT_TAG = 'latest'
// normalize.go: legacyDefaultDomain is folded into defaultDomain, and single-component Docker
// Hub names live under officialRepoPrefix.
const LEGACY_DEFAULT_REGISTRY = 'index.docker.io'
const OFFICIAL_REPO_PREFIX = 'library/'
// reference.go RepositoryNameTotalLengthMax. Since distribution/reference v0.6.0 (PR #9,
// "Exclude domain from name length check") it applies to the path only, not to the domain.
const REPOSITORY_NAME_MAX = 255

// ---- grammar (regexp.go) ----
const alphanumeric = '[a-z0-9]+'
const separator = '(?:[._]|__|[-]+)'
const domainNameComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
const optionalPort = '(?::[0-9]+)?'
const tagPat = '[\\w][\\w.-]{0,127}'
// [[:xdigit:]] in RE2 is [0-9A-Fa-f]; go-digest then narrows the hex per algorithm.
const digestPat = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}'
// IPv6 between brackets; zone identifiers and IPv4-mapped forms are deliberately excluded.
const ipv6address = '\\[(?:[a-fA-F0-9:]+)\\]'
const domainName = `${domainNameComponent}(?:\\.${domainNameComponent})*`
const host = `(?:${domainName}|${ipv6address})`
const domainAndPort = host + optionalPort
const pathComponent = `${alphanumeric}(?:${separator}${alphanumeric})*`
const remoteName = `${pathComponent}(?:/${pathComponent})*`
const namePat = `(?:${domainAndPort}/)?${remoteName}`

const REFERENCE_RE = new RegExp(`^(${namePat})(?::(${tagPat}))?(?:@(${digestPat}))?$`)
const ANCHORED_NAME_RE = new RegExp(`^(?:(${domainAndPort})/)?(${remoteName})$`)
const ANCHORED_TAG_RE = new RegExp(`^${tagPat}$`)
const ANCHORED_DIGEST_RE = new RegExp(`^${digestPat}$`)
// normalize.go anchoredIdentifierRegexp: a bare 64-hex string is an image ID, never a name.
const IDENTIFIER_RE = /^[a-f0-9]{64}$/
const HAS_UPPERCASE_RE = /[A-Z]/

// go-digest: the algorithms containerd and the kubelet link in (crypto/sha256, crypto/sha512,
// the latter registering SHA-384 too), each with its exact hex length; encoded must be
// lowercase hex (anchoredEncodedRegexps).
const DIGEST_HEX_LENGTH: ReadonlyMap<string, number> = new Map([['sha256', 64], ['sha384', 96], ['sha512', 128]])
const LOWER_HEX_RE = /^[a-f0-9]*$/

const UPPERCASE_REASON = 'repository name must be lowercase (registries such as GHCR require lowercase owners)'
const MAX_QUOTED_INPUT = 300

/** True when `tag` is a valid tag (`[\w][\w.-]{0,127}`). */
export function isValidTag (tag: string): boolean {
  return ANCHORED_TAG_RE.test(tag)
}

/** True when `digest` is a well-formed digest of a supported algorithm (sha256/sha384/sha512, lowercase hex). */
export function isValidDigest (digest: string): boolean {
  return digestProblem(digest) === undefined
}

/**
 * Parses and normalizes an image reference like ParseNormalizedNamed + TagNameOnly.
 * Throws ERR_REFERENCE_INVALID(input, reason).
 */
export function parseImageReference (input: string): ImageReference {
  const r = parse(input)
  if (typeof r === 'string') throw invalid(input, r)
  return r
}

/** What tryParseImageReference gives: the reference, or why the input is not one. */
export type ReferenceParse =
  | { readonly ok: true; readonly ref: ImageReference }
  | { readonly ok: false; readonly input: string; readonly reason: string; readonly message: string }

/**
 * parseImageReference without exceptions, for loops over user input: a pod may hold thousands of
 * invalid images, and a thrown coded error captures a stack trace each time (BENCHMARKS.md, "Huge
 * pods"). `message` is the text ERR_REFERENCE_INVALID would carry.
 */
export function tryParseImageReference (input: string): ReferenceParse {
  const r = parse(input)
  if (typeof r !== 'string') return { ok: true, ref: r }
  return { ok: false, input, reason: r, message: `invalid image reference ${quoted(input)}: ${r}` }
}

/**
 * No valid reference is longer: a host (253) and port, a repository (255), a tag (128) and a
 * sha512 digest (135), with their separators. Anything longer is refused before the grammar runs,
 * since image strings reach webhooks before the API server validates them (megabytes are possible).
 */
export const REFERENCE_MAX_LENGTH = 1024

// The grammar; an invalid input gives the reason as a string.
function parse (input: string): ImageReference | string {
  if (input === '') return 'empty reference'
  if (input.length > REFERENCE_MAX_LENGTH) return `longer than ${REFERENCE_MAX_LENGTH} characters: no image reference is`
  if (IDENTIFIER_RE.test(input)) {
    return 'invalid repository name: a 64-character hex string is an image ID, not a name (use name@sha256:<hex>)'
  }

  const [domain, remainder] = splitDockerDomain(input)

  // normalize.go checks the remote name before parsing, so an uppercase path is reported as
  // such even when something else is wrong too. The path ends at the tag or digest.
  if (HAS_UPPERCASE_RE.test(pathOf(remainder))) return uppercaseReason(input)

  const full = `${domain}/${remainder}`
  const m = REFERENCE_RE.exec(full)
  if (m === null) return diagnose(full)
  const nameMatch = ANCHORED_NAME_RE.exec(m[1] ?? '')
  const registry = nameMatch?.[1]
  const repository = nameMatch?.[2]
  if (registry === undefined || repository === undefined || registry !== domain) {
    // e.g. "a_b.com/x": the first component looks like a host (it has a dot) but is not a
    // valid one, so the grammar reads the whole string as a registry-less path. Upstream
    // then returns a reference with an empty domain that no runtime can pull from.
    return `invalid reference format: ${JSON.stringify(domain)} is not a valid registry host`
  }
  if (repository.length > REPOSITORY_NAME_MAX) {
    return `repository name must not be longer than ${REPOSITORY_NAME_MAX} characters`
  }

  const tag = m[2]
  const digest = m[3]
  if (digest !== undefined) {
    const problem = digestProblem(digest)
    if (problem !== undefined) return problem
  }

  const suffixLength = (tag === undefined ? 0 : tag.length + 1) + (digest === undefined ? 0 : digest.length + 1)
  const ref: ImageReference = {
    original: input,
    written: input.slice(0, input.length - suffixLength),
    registry,
    repository,
    name: `${registry}/${repository}`,
    tagDefaulted: tag === undefined && digest === undefined,
  }
  if (tag !== undefined) ref.tag = tag
  else if (digest === undefined) ref.tag = DEFAULT_TAG
  if (digest !== undefined) ref.digest = digest
  return ref
}

/**
 * Writes `ref.written` pinned to a tag and/or digest: "nginx:abc", "nginx@sha256:…",
 * "nginx:abc@sha256:…"; neither gives back the written name. Throws ERR_REFERENCE_INVALID
 * when the tag or digest would make an image string the runtime rejects.
 */
export function formatImageReference (ref: Pick<ImageReference, 'written'>, pin: { tag?: string; digest?: string }): string {
  let out = ref.written
  if (pin.tag !== undefined) {
    if (!isValidTag(pin.tag)) throw invalid(`${out}:${pin.tag}`, tagReason())
    out += `:${pin.tag}`
  }
  if (pin.digest !== undefined) {
    const problem = digestProblem(pin.digest)
    if (problem !== undefined) throw invalid(`${out}@${pin.digest}`, problem)
    out += `@${pin.digest}`
  }
  return out
}

// normalize.go splitDockerDomain, applied to the whole input (tag and digest included, as
// upstream does: neither can contain "/").
function splitDockerDomain (name: string): [string, string] {
  const slash = name.indexOf('/')
  if (slash < 0) return [DEFAULT_REGISTRY, OFFICIAL_REPO_PREFIX + name]
  const maybeDomain = name.slice(0, slash)
  const rest = name.slice(slash + 1)
  let domain: string
  let remote: string
  if (maybeDomain === 'localhost') {
    // localhost is a reserved namespace and always a domain.
    ;[domain, remote] = [maybeDomain, rest]
  } else if (maybeDomain === LEGACY_DEFAULT_REGISTRY) {
    ;[domain, remote] = [DEFAULT_REGISTRY, rest]
  } else if (maybeDomain.includes('.') || maybeDomain.includes(':')) {
    ;[domain, remote] = [maybeDomain, rest]
  } else if (maybeDomain.toLowerCase() !== maybeDomain) {
    // Upstream: uppercase namespaces are not allowed, so an uppercase first component is
    // taken to be a host name ("Docker/docker" -> domain "Docker"). Kept for fidelity.
    ;[domain, remote] = [maybeDomain, rest]
  } else {
    ;[domain, remote] = [DEFAULT_REGISTRY, name]
  }
  if (domain === DEFAULT_REGISTRY && !remote.includes('/')) remote = OFFICIAL_REPO_PREFIX + remote
  return [domain, remote]
}

// The repository path of a domain-less remainder: it ends at the tag (":") or digest ("@").
function pathOf (remainder: string): string {
  let end = remainder.length
  const colon = remainder.indexOf(':')
  const at = remainder.indexOf('@')
  if (colon >= 0) end = colon
  if (at >= 0 && at < end) end = at
  return remainder.slice(0, end)
}

// Splits a reference string into name / tag / digest the way the grammar would if it were
// valid: the digest follows the first "@", the tag follows a ":" after the last "/".
function splitSuffixes (s: string): { name: string; tag?: string; digest?: string } {
  const at = s.indexOf('@')
  const beforeDigest = at >= 0 ? s.slice(0, at) : s
  const colon = beforeDigest.lastIndexOf(':')
  const hasTag = colon > beforeDigest.lastIndexOf('/')
  const out: { name: string; tag?: string; digest?: string } = { name: hasTag ? beforeDigest.slice(0, colon) : beforeDigest }
  if (hasTag) out.tag = beforeDigest.slice(colon + 1)
  if (at >= 0) out.digest = s.slice(at + 1)
  return out
}

// Only chooses the wording: validity was already decided by REFERENCE_RE.
function diagnose (full: string): string {
  const parts = splitSuffixes(full)
  if (!ANCHORED_NAME_RE.test(parts.name)) {
    return 'invalid reference format: expected [registry[:port]/]path[:tag][@digest] with lowercase path components of [a-z0-9] joined by ".", "_", "__" or "-"'
  }
  if (parts.tag !== undefined && !ANCHORED_TAG_RE.test(parts.tag)) return tagReason()
  if (parts.digest !== undefined && !ANCHORED_DIGEST_RE.test(parts.digest)) {
    return 'invalid digest format: expected <algorithm>:<hex>, e.g. sha256 followed by 64 lowercase hex characters'
  }
  return 'invalid reference format'
}

function tagReason (): string {
  return 'invalid tag format: a tag is 1 to 128 characters of [A-Za-z0-9_.-] and must not start with "." or "-"'
}

// go-digest Digest.Validate + Algorithm.Validate, for a string that already matched digestPat.
function digestProblem (digest: string): string | undefined {
  if (!ANCHORED_DIGEST_RE.test(digest)) {
    return 'invalid digest format: expected <algorithm>:<hex>, e.g. sha256 followed by 64 lowercase hex characters'
  }
  const colon = digest.indexOf(':')
  const algorithm = digest.slice(0, colon)
  const encoded = digest.slice(colon + 1)
  const length = DIGEST_HEX_LENGTH.get(algorithm)
  if (length === undefined) {
    return `invalid digest format: unsupported digest algorithm ${JSON.stringify(algorithm)} (supported: sha256, sha384, sha512)`
  }
  if (encoded.length !== length || !LOWER_HEX_RE.test(encoded)) {
    return `invalid digest format: a ${algorithm} digest is ${length} lowercase hex characters`
  }
  return undefined
}

function uppercaseReason (input: string): string {
  // Suggest the same reference with its name lowercased (tag and digest kept: tags may be
  // uppercase), but only if that suggestion is itself valid.
  const parts = splitSuffixes(input)
  let suggestion = parts.name.toLowerCase()
  if (parts.tag !== undefined) suggestion += `:${parts.tag}`
  if (parts.digest !== undefined) suggestion += `@${parts.digest}`
  const valid = suggestion !== input && typeof parse(suggestion) !== 'string'
  return valid ? `${UPPERCASE_REASON}: try ${suggestion}` : UPPERCASE_REASON
}

function invalid (input: string, reason: string): Error {
  return new ERR_REFERENCE_INVALID(quoted(input), reason)
}

function quoted (input: string): string {
  // Quoted so empty or space-padded images are visible; long inputs are cut so a hostile pod
  // spec cannot blow up log lines.
  const shown = input.length > MAX_QUOTED_INPUT ? `${input.slice(0, MAX_QUOTED_INPUT)}…` : input
  return JSON.stringify(shown)
}

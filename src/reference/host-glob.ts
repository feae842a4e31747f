// Registry host globs, matched the way the kubelet matches credential keys and credential
// provider matchImages to an image (k8s.io/kubernetes pkg/credentialprovider/keyring.go:
// BasicDockerKeyring.Add, ParseSchemelessURL, SplitURL, URLsMatch, isDefaultRegistryMatch).
//
//  - the pattern is normalized like Add: an "http://" or "https://" scheme is dropped and a
//    leading "/v1/" or "/v2/" path is reduced to "/" (so "https://index.docker.io/v1/" is the
//    key "index.docker.io");
//  - the image is normalized like the kubelet's ParseImageName (ParseNormalizedNamed(...).Name()):
//    "nginx:1" -> "docker.io/library/nginx", tag and digest dropped;
//  - host names are split on "." and must have the same number of parts, each part matched
//    with Go's path/filepath.Match; ports must be equal (no port only equals no port); the
//    pattern's path must be a string prefix of the image's path (so "r.example.com/team" also
//    matches "r.example.com/teamster/app", exactly like the kubelet);
//  - Docker Hub fallback: the key "index.docker.io" (what "https://index.docker.io/v1/" becomes)
//    also matches every Docker Hub image, as the kubelet's Lookup falls back to it.
//
// Deliberate differences, all in corner cases where the kubelet's behaviour is accidental:
//  - "?" and "#" in a pattern are glob/literal characters here; Go's url.Parse would cut the
//    host at them and treat the rest as query/fragment, so "?" globs never work in the kubelet.
//  - bracketed IPv6 hosts without a port ("[::1]") are compared without their brackets; in the
//    kubelet the brackets reach filepath.Match as a character class and never match.
//  - the Docker Hub fallback applies to images whose normalized registry is docker.io. The
//    kubelet's isDefaultRegistryMatch looks at the raw first path component and would also hand
//    Docker Hub credentials to "localhost/app" or "Foo/app" (a host "Foo"); pullpin does not.
import { ERR_CONFIG_INVALID } from '../errors.js'
import { DEFAULT_REGISTRY, tryParseImageReference, type ImageReference } from './parse.js'

/** A raw image string, or an already parsed reference (saves a re-parse on hot paths). */
export type RegistryImage = string | Pick<ImageReference, 'registry' | 'repository'>

export interface CompiledRegistryKey {
  /** the pattern as given */
  pattern: string
  /** the kubelet keyring key it normalizes to ("https://ghcr.io/v2/" -> "ghcr.io") */
  key: string
  /** true for the kubelet's default-registry key "index.docker.io" */
  isDefaultRegistryKey: boolean
  /** why the pattern can never match (malformed glob), or undefined */
  error?: string
  /** URLsMatch against a normalized "host[:port]/path" target, without the Docker Hub fallback */
  matchesUrl(target: string): boolean
  /** The same, against a parsed image's registry and repository (its target is "registry/repository") */
  matchesImage(image: Pick<ImageReference, 'registry' | 'repository'>): boolean
}

/** A "host[:port]/path" target as URLsMatch reads it: the host's parts, its port and the path. */
interface UrlTarget { readonly parts: readonly string[]; readonly port: string; readonly path: string }

/** Splits a normalized "host[:port]/path" target once (ParseSchemelessURL, then SplitURL). */
function splitTarget (target: string): UrlTarget {
  const t = splitSchemeless(target)
  const { parts, port } = splitHostPort(t.host)
  return { parts, port, path: t.path }
}

// keyring.go defaultRegistryHost: what "https://index.docker.io/v1/" is stored under.
const DEFAULT_REGISTRY_KEY = 'index.docker.io'

/**
 * True when `pattern` matches `image` as the kubelet would match that credential key to it,
 * including the Docker Hub fallback. Malformed patterns and unparsable images never match
 * (the kubelet ignores the filepath.Match error and moves on).
 */
export function registryGlobMatches (pattern: string, image: RegistryImage): boolean {
  return matcherFor(compileRegistryKey(pattern), image)
}

/**
 * Compiles a registry glob once for the hot path. Throws ERR_CONFIG_INVALID for an empty or
 * malformed pattern, since that is a configuration mistake that would otherwise fail silently.
 */
export function compileRegistryGlob (pattern: string): (image: RegistryImage) => boolean {
  const compiled = compileRegistryKey(pattern)
  if (compiled.error !== undefined) {
    throw new ERR_CONFIG_INVALID(`registry pattern ${JSON.stringify(pattern)}`, compiled.error)
  }
  return (image) => matcherFor(compiled, image)
}

/**
 * The image as the kubelet hands it to the keyring: "registry/repository", or undefined when
 * the image does not parse (the kubelet would refuse to pull it at all).
 */
export function normalizedImageName (image: RegistryImage): string | undefined {
  if (typeof image !== 'string') return `${image.registry}/${image.repository}`
  const parsed = tryParseImageReference(image)
  return parsed.ok ? parsed.ref.name : undefined
}

/** True when the image lives on Docker Hub (normalized registry docker.io). */
export function isDockerHubImage (image: RegistryImage): boolean {
  if (typeof image !== 'string') return image.registry === DEFAULT_REGISTRY
  const name = normalizedImageName(image)
  return name !== undefined && name.startsWith(`${DEFAULT_REGISTRY}/`)
}

/** BasicDockerKeyring.Add's key normalization: scheme dropped, "/v1/" and "/v2/" reduced. */
export function normalizeRegistryKey (pattern: string): string {
  let rest = pattern
  if (rest.startsWith('https://')) rest = rest.slice('https://'.length)
  else if (rest.startsWith('http://')) rest = rest.slice('http://'.length)
  const { host, path } = splitSchemeless(rest)
  let effectivePath = path
  if (effectivePath.startsWith('/v2/') || effectivePath.startsWith('/v1/')) effectivePath = effectivePath.slice(3)
  return effectivePath.length > 0 && effectivePath !== '/' ? host + effectivePath : host
}

/** URLsMatchStr on two schemeless URLs ("*.gcr.io", "us.gcr.io/proj/app"); no Docker Hub fallback. */
export function registryUrlsMatch (glob: string, target: string): boolean {
  return compileRegistryKey(glob, false).matchesUrl(target)
}

/** Compiles a pattern into its keyring key and URLsMatch predicate (used by the Keyring). */
export function compileRegistryKey (pattern: string, normalize = true): CompiledRegistryKey {
  const key = normalize ? normalizeRegistryKey(pattern) : pattern
  const { host, path: globPath } = splitSchemeless(key)
  const { parts, port: globPort } = splitHostPort(host)
  let error: string | undefined
  if (pattern === '') error = 'empty registry pattern'
  const partMatchers: RegExp[] = []
  for (const part of parts) {
    const compiled = compileGoGlob(part)
    if (typeof compiled === 'string') {
      error ??= `malformed glob ${JSON.stringify(part)}: ${compiled}`
      break
    }
    partMatchers.push(compiled)
  }
  const matchesTarget = error !== undefined
    ? () => false
    : (t: UrlTarget): boolean => {
        if (t.port !== globPort) return false
        if (t.parts.length !== partMatchers.length) return false
        if (!t.path.startsWith(globPath)) return false
        for (let i = 0; i < partMatchers.length; i++) {
          if (!(partMatchers[i] as RegExp).test(t.parts[i] as string)) return false
        }
        return true
      }
  const matchesUrl = (target: string): boolean => matchesTarget(splitTarget(target))
  // A host of literal parts (no glob character) matches exactly the hosts whose parts are equal,
  // that is the same host string: compared as one string, without splitting the image's host.
  const literalHost = error === undefined && parts.every(part => !/[*?[\\]/.test(part)) ? parts.join('.') : undefined
  const matchesImage = error !== undefined
    ? () => false
    : literalHost !== undefined
      ? (image: Pick<ImageReference, 'registry' | 'repository'>): boolean => {
          const hp = image.registry
          // splitHostPort without its split; a bracketed host (or a registry no parse makes) takes the long way.
          if (hp.startsWith('[') || hp.includes('/') || hp.includes('@')) return matchesTarget(refTarget(image))
          const colon = hp.lastIndexOf(':')
          const hasPort = colon >= 0 && hp.indexOf(':') === colon
          const port = hasPort ? hp.slice(colon + 1) : ''
          if (port !== globPort) return false
          if ((hasPort ? hp.slice(0, colon) : hp) !== literalHost) return false
          return globPath === '' || `/${image.repository}`.startsWith(globPath)
        }
      : (image: Pick<ImageReference, 'registry' | 'repository'>): boolean => matchesTarget(refTarget(image))
  const out: CompiledRegistryKey = { pattern, key, isDefaultRegistryKey: key === DEFAULT_REGISTRY_KEY, matchesUrl, matchesImage }
  if (error !== undefined) out.error = error
  return out
}

function matcherFor (compiled: CompiledRegistryKey, image: RegistryImage): boolean {
  if (compiled.error !== undefined) return false
  let ref: Pick<ImageReference, 'registry' | 'repository'>
  if (typeof image === 'string') {
    const parsed = tryParseImageReference(image)
    if (!parsed.ok) return false
    ref = parsed.ref
  } else {
    ref = image
  }
  if (compiled.matchesImage(ref)) return true
  return compiled.isDefaultRegistryKey && ref.registry === DEFAULT_REGISTRY
}

/** A parsed image's target: its name is "registry/repository", so the registry is the host. */
function refTarget (image: Pick<ImageReference, 'registry' | 'repository'>): UrlTarget {
  // A registry that holds a "/" or "@" (never a parsed one's) is read as the kubelet reads the name.
  if (image.registry.includes('/') || image.registry.includes('@')) return splitTarget(`${image.registry}/${image.repository}`)
  const { parts, port } = splitHostPort(image.registry)
  return { parts, port, path: `/${image.repository}` }
}

// url.Parse("https://" + s) reduced to what URLsMatch reads: the host (userinfo dropped, as
// url.URL.Host excludes it) and the path, which keeps its leading "/".
function splitSchemeless (s: string): { host: string; path: string } {
  const slash = s.indexOf('/')
  let authority = slash < 0 ? s : s.slice(0, slash)
  const path = slash < 0 ? '' : s.slice(slash)
  const at = authority.lastIndexOf('@')
  if (at >= 0) authority = authority.slice(at + 1)
  return { host: authority, path }
}

// SplitURL: net.SplitHostPort, falling back to (whole host, no port) when it fails, then the
// host split on ".". Brackets are dropped from IPv6 literals in both branches (see header).
function splitHostPort (hostport: string): { parts: string[]; port: string } {
  let host = hostport
  let port = ''
  if (hostport.startsWith('[')) {
    const end = hostport.indexOf(']')
    if (end > 0) {
      const after = hostport.slice(end + 1)
      if (after === '' || after.startsWith(':')) {
        host = hostport.slice(1, end)
        port = after === '' ? '' : after.slice(1)
      }
    }
  } else {
    const colon = hostport.lastIndexOf(':')
    // more than one colon outside brackets: SplitHostPort fails ("too many colons")
    if (colon >= 0 && hostport.indexOf(':') === colon) {
      host = hostport.slice(0, colon)
      port = hostport.slice(colon + 1)
    }
  }
  return { parts: host.split('.'), port }
}

// Go path/filepath.Match (Unix) compiled to an anchored RegExp, or the reason it is malformed
// (filepath.ErrBadPattern). Grammar:
//   term: '*' | '?' | '[' ['^'] { range } ']' | '\\' c | c      range: c | c '-' c
// "*" and "?" never match the separator "/"; a reversed range matches nothing.
function compileGoGlob (pattern: string): RegExp | string {
  const chars = Array.from(pattern)
  let src = '^'
  let i = 0
  while (i < chars.length) {
    const c = chars[i] as string
    if (c === '*') {
      src += '[^/]*'
      i++
    } else if (c === '?') {
      src += '[^/]'
      i++
    } else if (c === '\\') {
      const next = chars[i + 1]
      if (next === undefined) return 'trailing backslash'
      src += literal(next)
      i += 2
    } else if (c === '[') {
      i++
      let negated = false
      if (chars[i] === '^') {
        negated = true
        i++
      }
      const ranges: string[] = []
      let closed = false
      let nrange = 0
      while (i < chars.length) {
        if (chars[i] === ']' && nrange > 0) {
          closed = true
          i++
          break
        }
        const lo = readClassChar(chars, i)
        if (typeof lo === 'string') return lo
        i = lo.next
        let hi = lo
        if (chars[i] === '-') {
          const h = readClassChar(chars, i + 1)
          if (typeof h === 'string') return h
          hi = h
          i = h.next
        }
        nrange++
        if (lo.cp <= hi.cp) ranges.push(lo.cp === hi.cp ? classChar(lo.cp) : `${classChar(lo.cp)}-${classChar(hi.cp)}`)
      }
      if (!closed) return 'unterminated character class'
      // An empty JS class "[]" matches nothing and "[^]" anything, as Go does for a class
      // whose ranges are all reversed.
      src += negated ? `[^${ranges.join('')}]` : `[${ranges.join('')}]`
    } else {
      src += literal(c)
      i++
    }
  }
  return new RegExp(`${src}$`, 'u')
}

// filepath getEsc: a class character may not be "-" or "]" unescaped, and the class must go on.
function readClassChar (chars: string[], i: number): { cp: number; next: number } | string {
  let c = chars[i]
  let next = i + 1
  if (c === undefined || c === '-' || c === ']') return 'bad character class'
  if (c === '\\') {
    c = chars[i + 1]
    next = i + 2
    if (c === undefined) return 'trailing backslash in character class'
  }
  if (next >= chars.length) return 'unterminated character class'
  return { cp: c.codePointAt(0) as number, next }
}

function literal (c: string): string {
  return /[A-Za-z0-9]/.test(c) ? c : `\\u{${(c.codePointAt(0) as number).toString(16)}}`
}

function classChar (cp: number): string {
  return `\\u{${cp.toString(16)}}`
}

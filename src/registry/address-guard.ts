// Refuses to connect to addresses an attacker could use to reach the cluster's insides through
// pullpin (SSRF): a Pod spec names the registry, so "registry.evil.example" may well resolve to
// 169.254.169.254 (cloud metadata), 127.0.0.1 or a Service IP. The check runs inside the socket's
// DNS `lookup` (net.connect calls it right before connecting), so the address that is checked is
// the address that is connected to: a second, rebinding DNS answer cannot slip past a check made
// earlier. net.connect skips `lookup` for literal IPs, so those are checked separately
// (assertLiteralAddressAllowed) before a request is sent.
//
// Ranges: RFC 6890 special-purpose registries (IANA ipv4/ipv6-special-registry), RFC 1918
// private, RFC 6598 CGNAT, RFC 3927 / RFC 4291 link-local, RFC 4193 unique local, the
// IPv4-mapped (RFC 4291 §2.5.5.2), NAT64 (RFC 6052) and 6to4 (RFC 3056) forms that embed an
// IPv4 address, and the well-known metadata endpoints 169.254.169.254 and fd00:ec2::254 (AWS).
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions, type LookupOptions } from 'node:dns'
import { isIP, isIPv4, type LookupFunction } from 'node:net'
import { ERR_REGISTRY_PRIVATE_ADDRESS } from '../errors.js'

interface Range4 { base: number; bits: number; reason: string }

function ipv4ToInt(address: string): number | undefined {
  const parts = address.split('.')
  if (parts.length !== 4) return undefined
  let n = 0
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return undefined
    const v = Number(p)
    if (v > 255) return undefined
    n = n * 256 + v
  }
  return n
}

function range4(cidr: string, reason: string): Range4 {
  const [addr, bits] = cidr.split('/')
  const base = ipv4ToInt(addr ?? '')
  if (base === undefined) throw new Error(`bad CIDR ${cidr}`)
  return { base, bits: Number(bits), reason }
}

// Most specific first: the first match names the reason.
const V4_REFUSED: readonly Range4[] = [
  range4('169.254.169.254/32', 'cloud metadata endpoint'),
  range4('0.0.0.0/8', 'unspecified ("this network")'),
  range4('10.0.0.0/8', 'private'),
  range4('100.64.0.0/10', 'carrier-grade NAT'),
  range4('127.0.0.0/8', 'loopback'),
  range4('169.254.0.0/16', 'link-local'),
  range4('172.16.0.0/12', 'private'),
  range4('192.0.0.0/24', 'IETF protocol assignments'),
  range4('192.168.0.0/16', 'private'),
  range4('198.18.0.0/15', 'benchmarking'),
  range4('224.0.0.0/4', 'multicast'),
  range4('240.0.0.0/4', 'reserved')
]

function classifyV4(n: number): string | undefined {
  for (const r of V4_REFUSED) {
    // Division instead of bit masks: JS bitwise operators are signed 32-bit.
    const size = 2 ** (32 - r.bits)
    if (Math.floor(n / size) === Math.floor(r.base / size)) return r.reason
  }
  return undefined
}

/** Eight 16-bit groups, or undefined when `address` is not IPv6 text. Zone ids ("%eth0") are ignored. */
function ipv6Groups(address: string): number[] | undefined {
  let text = address
  const zone = text.indexOf('%')
  if (zone >= 0) text = text.slice(0, zone)
  if (isIP(text) !== 6) return undefined
  // A trailing dotted quad (::ffff:1.2.3.4) becomes two hex groups.
  const lastColon = text.lastIndexOf(':')
  const tail = text.slice(lastColon + 1)
  if (tail.includes('.')) {
    const v4 = ipv4ToInt(tail)
    if (v4 === undefined) return undefined
    text = `${text.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`
  }
  const [head = '', rest] = text.split('::')
  const headGroups = head === '' ? [] : head.split(':')
  const tailGroups = rest === undefined || rest === '' ? [] : rest.split(':')
  const missing = 8 - headGroups.length - tailGroups.length
  if (rest === undefined ? missing !== 0 : missing < 1) return undefined
  const groups = [...headGroups, ...Array<string>(rest === undefined ? 0 : missing).fill('0'), ...tailGroups]
  return groups.map((g) => parseInt(g, 16))
}

function prefixMatches(groups: readonly number[], prefix: readonly number[], bits: number): boolean {
  for (let i = 0; i < 8 && bits > 0; i++, bits -= 16) {
    const take = Math.min(16, bits)
    const mask = (0xffff << (16 - take)) & 0xffff
    if (((groups[i] ?? 0) & mask) !== ((prefix[i] ?? 0) & mask)) return false
  }
  return true
}

interface Range6 { prefix: number[]; bits: number; reason: string }

function range6(cidr: string, reason: string): Range6 {
  const [addr, bits] = cidr.split('/')
  const prefix = ipv6Groups(addr ?? '')
  if (prefix === undefined) throw new Error(`bad CIDR ${cidr}`)
  return { prefix, bits: Number(bits), reason }
}

const V6_REFUSED: readonly Range6[] = [
  range6('::/128', 'unspecified'),
  range6('::1/128', 'loopback'),
  range6('fd00:ec2::254/128', 'cloud metadata endpoint'),
  // Deprecated IPv4-compatible addresses (RFC 4291 §2.5.5.1); never legitimate on the wire.
  range6('::/96', 'IPv4-compatible (deprecated)'),
  range6('64:ff9b:1::/48', 'local-use NAT64'),
  range6('100::/64', 'discard-only'),
  range6('fe80::/10', 'link-local'),
  range6('fec0::/10', 'site-local (deprecated)'),
  range6('fc00::/7', 'private (unique local)'),
  range6('ff00::/8', 'multicast')
]

const MAPPED_V4 = range6('::ffff:0:0/96', '')
const NAT64_V4 = range6('64:ff9b::/96', '')
const SIX_TO_FOUR = range6('2002::/16', '')

/**
 * Why `address` must not be connected to (e.g. "loopback", "private", "link-local (IPv4-mapped)"),
 * or undefined when it is an ordinary public unicast address. Anything that is not an IP address
 * at all is refused too ("not an IP address"), so a malformed lookup answer never passes.
 */
export function classifyAddress(address: string): string | undefined {
  if (isIPv4(address)) {
    const n = ipv4ToInt(address)
    return n === undefined ? 'not an IP address' : classifyV4(n)
  }
  const g = ipv6Groups(address)
  if (g === undefined) return 'not an IP address'
  const embedded = (hi: number, lo: number): number => (hi * 0x10000) + lo
  if (prefixMatches(g, MAPPED_V4.prefix, MAPPED_V4.bits)) {
    const why = classifyV4(embedded(g[6] ?? 0, g[7] ?? 0))
    return why === undefined ? undefined : `${why} (IPv4-mapped)`
  }
  if (prefixMatches(g, NAT64_V4.prefix, NAT64_V4.bits)) {
    const why = classifyV4(embedded(g[6] ?? 0, g[7] ?? 0))
    return why === undefined ? undefined : `${why} (via NAT64)`
  }
  if (prefixMatches(g, SIX_TO_FOUR.prefix, SIX_TO_FOUR.bits)) {
    const why = classifyV4(embedded(g[1] ?? 0, g[2] ?? 0))
    if (why !== undefined) return `${why} (via 6to4)`
  }
  for (const r of V6_REFUSED) if (prefixMatches(g, r.prefix, r.bits)) return r.reason
  return undefined
}

/** `[::1]` (URL.hostname form) → `::1`; anything else unchanged. */
export function unbracket(hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname
}

/**
 * For a literal-IP host (which never goes through `lookup`): throws ERR_REGISTRY_PRIVATE_ADDRESS
 * when the address is refused and private addresses are not allowed. Host names pass untouched.
 */
export function assertLiteralAddressAllowed(registry: string, hostname: string, allowPrivate: boolean): void {
  const host = unbracket(hostname)
  if (isIP(host) === 0 || allowPrivate) return
  const why = classifyAddress(host)
  if (why !== undefined) throw new ERR_REGISTRY_PRIVATE_ADDRESS(label(registry, host), host, why)
}

export interface GuardedLookupOptions {
  /** Registry the connections are for: named in errors. */
  registry: string
  /** Read at every lookup, so a configuration reload applies to the next connection. */
  allowPrivate: () => boolean
  /** The resolver to guard (default dns.lookup). */
  lookup?: LookupFunction
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void

/**
 * A `lookup` for net/tls connect options that resolves every address of the host and fails the
 * connection with ERR_REGISTRY_PRIVATE_ADDRESS when any of them is refused. Refusing the host
 * outright (rather than quietly dropping its bad addresses) makes a misconfigured or hostile name
 * visible instead of flaky.
 */
export function guardedLookup(opts: GuardedLookupOptions): LookupFunction {
  const inner = opts.lookup ?? (dnsLookup as unknown as LookupFunction)
  const guarded = (hostname: string, options: LookupOptions, callback: LookupCallback): void => {
    const all: LookupAllOptions = { ...options, all: true }
    inner(hostname, all, (err, result) => {
      if (err) { callback(err, options.all === true ? [] : ''); return }
      const addresses: LookupAddress[] = Array.isArray(result)
        ? result
        : [{ address: result, family: isIP(result) === 6 ? 6 : 4 }]
      if (addresses.length === 0) {
        const e: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${hostname}`)
        e.code = 'ENOTFOUND'
        callback(e, options.all === true ? [] : '')
        return
      }
      if (!opts.allowPrivate()) {
        for (const a of addresses) {
          const why = classifyAddress(a.address)
          if (why !== undefined) {
            callback(new ERR_REGISTRY_PRIVATE_ADDRESS(label(opts.registry, hostname), a.address, why) as NodeJS.ErrnoException, options.all === true ? [] : '')
            return
          }
        }
      }
      // Answer in the shape net asked for: a list with `all` (autoSelectFamily), else the first.
      const family = options.family === 4 || options.family === 6 ? options.family : undefined
      const usable = family === undefined ? addresses : addresses.filter((a) => a.family === family)
      if (options.all === true) { callback(null, usable); return }
      const first = usable[0] ?? addresses[0]
      callback(null, first?.address ?? '', first?.family ?? 4)
    })
  }
  return guarded as unknown as LookupFunction
}

function label(registry: string, host: string): string {
  const registryHost = unbracket(registry.replace(/:\d+$/, ''))
  return registryHost === host ? registry : `${registry} (via ${host})`
}

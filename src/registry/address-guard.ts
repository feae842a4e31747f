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
import { BlockList, isIP, type LookupFunction } from 'node:net'
import { ERR_REGISTRY_PRIVATE_ADDRESS } from '../errors.js'

// Most specific first: the first match names the reason.
const V4_REFUSED: ReadonlyArray<readonly [string, number, string]> = [
  ['169.254.169.254', 32, 'cloud metadata endpoint'],
  ['0.0.0.0', 8, 'unspecified ("this network")'],
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'carrier-grade NAT'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local'],
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'IETF protocol assignments'],
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved']
]

const V6_REFUSED: ReadonlyArray<readonly [string, number, string]> = [
  ['::', 128, 'unspecified'],
  ['::1', 128, 'loopback'],
  ['fd00:ec2::254', 128, 'cloud metadata endpoint'],
  // Deprecated IPv4-compatible addresses (RFC 4291 §2.5.5.1); never legitimate on the wire.
  ['::', 96, 'IPv4-compatible (deprecated)'],
  ['64:ff9b:1::', 48, 'local-use NAT64'],
  ['100::', 64, 'discard-only'],
  ['fe80::', 10, 'link-local'],
  ['fec0::', 10, 'site-local (deprecated)'],
  ['fc00::', 7, 'private (unique local)'],
  ['ff00::', 8, 'multicast']
]

interface Rule { readonly list: BlockList; readonly reason: string }

// The prefix arithmetic is node:net's BlockList; this module only says which ranges, and why.
function rule (address: string, prefix: number, type: 'ipv4' | 'ipv6', reason: string): Rule {
  const list = new BlockList()
  list.addSubnet(address, prefix, type)
  return { list, reason }
}

/** The IPv4 ranges as IPv6 subnets behind `embed` (which places the IPv4 address in the IPv6 one). */
function embedded (embed: (v4: string) => string, offset: number, suffix: string): Rule[] {
  return V4_REFUSED.map(([address, bits, reason]) => rule(embed(address), offset + bits, 'ipv6', `${reason} ${suffix}`))
}

const hexPair = (v4: string): string => {
  const [a = 0, b = 0, c = 0, d = 0] = v4.split('.').map(Number)
  return `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
}

const V4_RULES: readonly Rule[] = V4_REFUSED.map(([address, bits, reason]) => rule(address, bits, 'ipv4', reason))
// An IPv4 BlockList rule also matches the IPv4-mapped form (::ffff:a.b.c.d, RFC 4291 §2.5.5.2).
const MAPPED = rule('::ffff:0:0', 96, 'ipv6', '')
const V6_RULES: readonly Rule[] = [
  ...embedded(v4 => `64:ff9b::${v4}`, 96, '(via NAT64)'), // RFC 6052 well-known prefix
  ...embedded(v4 => `2002:${hexPair(v4)}::`, 16, '(via 6to4)'), // RFC 3056
  ...V6_REFUSED.map(([address, bits, reason]) => rule(address, bits, 'ipv6', reason))
]

/**
 * Why `address` must not be connected to (e.g. "loopback", "private", "link-local (IPv4-mapped)"),
 * or undefined when it is an ordinary public unicast address. Anything that is not an IP address
 * at all is refused too ("not an IP address"), so a malformed lookup answer never passes.
 */
export function classifyAddress (address: string): string | undefined {
  // A zone id ("fe80::1%eth0") names the interface of an IPv6 address and does not change the
  // address; zone ids are defined for IPv6 only (RFC 4007 §11), so "10.0.0.1%eth0" is not an address.
  const zone = address.indexOf('%')
  const ip = zone >= 0 ? address.slice(0, zone) : address
  const family = isIP(ip)
  if (family === 4 && zone < 0) return V4_RULES.find(r => r.list.check(ip, 'ipv4'))?.reason
  if (family !== 6) return 'not an IP address'
  if (MAPPED.list.check(ip, 'ipv6')) {
    const why = V4_RULES.find(r => r.list.check(ip, 'ipv6'))?.reason
    return why === undefined ? undefined : `${why} (IPv4-mapped)`
  }
  return V6_RULES.find(r => r.list.check(ip, 'ipv6'))?.reason
}

/** `[::1]` (URL.hostname form) → `::1`; anything else unchanged. */
export function unbracket (hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname
}

/**
 * For a literal-IP host (which never goes through `lookup`): throws ERR_REGISTRY_PRIVATE_ADDRESS
 * when the address is refused and private addresses are not allowed. Host names pass untouched.
 */
export function assertLiteralAddressAllowed (registry: string, hostname: string, allowPrivate: boolean): void {
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
export function guardedLookup (opts: GuardedLookupOptions): LookupFunction {
  const inner = opts.lookup ?? (dnsLookup)
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
            callback(new ERR_REGISTRY_PRIVATE_ADDRESS(label(opts.registry, hostname), a.address, why), options.all === true ? [] : '')
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
  return guarded
}

function label (registry: string, host: string): string {
  const registryHost = unbracket(registry.replace(/:\d+$/, ''))
  return registryHost === host ? registry : `${registry} (via ${host})`
}

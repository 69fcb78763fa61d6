/**
 * The one parser of client addresses and CIDRs, for rate-limit keys, audit redaction, policy
 * `cidr` conditions and API-key `allowedCidrs`. Node validates (`net.isIP`, which takes every
 * RFC 4291 spelling: compressed, uppercase, embedded IPv4, zone ids) and matches CIDRs
 * (`net.BlockList`); what Node has no API for (the address as numbers, a prefix, RFC 5952 text)
 * is written here, on input Node has already accepted.
 * @packageDocumentation
 */
import { BlockList, isIP, isIPv4 } from 'node:net'

/**
 * A parsed address. An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, `::ffff:0102:0304`) is an IPv4
 * client seen through a dual-stack socket and parses as IPv4. A zone id (`%eth0`) is dropped.
 */
export interface ParsedIp {
  readonly family: 4 | 6
  /** 4 octets (IPv4) or 8 hextets (IPv6). */
  readonly parts: readonly number[]
  /** IPv6 written with a dotted IPv4 tail (`::1.2.3.4`), which express-rate-limit tells apart. */
  readonly dotted: boolean
}

const V4_TAIL = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/

/** Parses `text`, or `undefined` when Node does not take it for an address. */
export function parseIp(text: string): ParsedIp | undefined {
  const family = isIP(text)
  if (family === 4) return { family, parts: text.split('.').map(Number), dotted: false }
  if (family !== 6) return undefined
  let body = text
  const zone = body.indexOf('%')
  if (zone !== -1) body = body.slice(0, zone)
  // An embedded IPv4 tail is rewritten as two hextets first.
  const v4 = V4_TAIL.exec(body)
  if (v4 !== null) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number]
    body = `${body.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [left = '', right] = body.split('::')
  const hex = (part: string): number[] =>
    part === '' ? [] : part.split(':').map((h) => parseInt(h, 16))
  const head = hex(left)
  const tail = right === undefined ? [] : hex(right)
  const parts = [...head, ...Array<number>(8 - head.length - tail.length).fill(0), ...tail]
  if (
    parts[0] === 0 &&
    parts[1] === 0 &&
    parts[2] === 0 &&
    parts[3] === 0 &&
    parts[4] === 0 &&
    parts[5] === 0xffff
  ) {
    const [g, h] = [parts[6] as number, parts[7] as number]
    return { family: 4, parts: [g >> 8, g & 0xff, h >> 8, h & 0xff], dotted: false }
  }
  return { family: 6, parts, dotted: v4 !== null }
}

/** The network of `ip` with its first `bits` bits kept (clamped to the family's length). */
export function maskIp(ip: ParsedIp, bits: number): ParsedIp {
  const width = ip.family === 4 ? 8 : 16
  const parts = ip.parts.map((x, i) => {
    const keep = Math.max(0, Math.min(width, bits - i * width))
    return keep === width
      ? x
      : keep === 0
        ? 0
        : x & ((0xffff << (width - keep)) & ((1 << width) - 1))
  })
  return { family: ip.family, parts, dotted: ip.dotted }
}

/**
 * Writes an address: IPv4 dotted; IPv6 in RFC 5952 form (lower case, no leading zeros, the longest
 * run of two or more zero hextets, the first on a tie, as `::`), or with `compress: false` as all
 * eight hextets (the limit keys' historic form).
 */
export function formatIp(ip: ParsedIp, compress = true): string {
  if (ip.family === 4) return ip.parts.join('.')
  const h = ip.parts
  const hex = (part: readonly number[]): string => part.map((x) => x.toString(16)).join(':')
  if (!compress) return hex(h)
  let start = -1
  let length = 0
  for (let i = 0; i < h.length;) {
    if (h[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < h.length && h[j] === 0) j++
    if (j - i > 1 && j - i > length) {
      start = i
      length = j - i
    }
    i = j
  }
  return start === -1 ? hex(h) : `${hex(h.slice(0, start))}::${hex(h.slice(start + length))}`
}

/** `text` in one spelling per address (see {@link formatIp}), or `undefined` for a non-address. */
export function normalizeIp(text: string): string | undefined {
  if (isIPv4(text)) return text
  const ip = parseIp(text)
  return ip === undefined ? undefined : formatIp(ip)
}

/** A CIDR block: a network address and a prefix length. */
export interface Cidr {
  readonly address: string
  readonly prefix: number
  readonly family: 'ipv4' | 'ipv6'
}

const CIDR = /^([0-9A-Fa-f:.]+)(?:\/(\d{1,3}))?$/

/**
 * Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address (a /32 or /128), or `undefined`. Host
 * bits may be set (`10.1.2.3/8` is `10.0.0.0/8`); a zone id is refused (it names no network).
 */
export function parseCidr(text: string): Cidr | undefined {
  const m = CIDR.exec(text)
  if (m === null) return undefined
  const address = m[1] as string
  const version = isIP(address)
  if (version === 0) return undefined
  const max = version === 4 ? 32 : 128
  const prefix = m[2] === undefined ? max : Number(m[2])
  if (prefix > max) return undefined
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' }
}

/** Recent answers kept per matcher (cleared when full: addresses come from input). */
const MATCH_MEMO_MAX = 1024

/**
 * A compiled list of CIDRs. `BlockList.check` builds a `SocketAddress` (a transferable native
 * object) on every call, a tenth of a full gate decision in the benchmark's CPU profile; a list
 * never changes once compiled, so recent answers are remembered.
 */
export class IpMatcher {
  readonly #block = new BlockList()
  readonly #memo = new Map<string, boolean | undefined>()

  constructor(cidrs: Iterable<Cidr>) {
    for (const c of cidrs) this.#block.addSubnet(c.address, c.prefix, c.family)
  }

  /**
   * Whether `ip` is in one of the blocks; `undefined` when `ip` is not an address. Every spelling
   * of an address gets the same answer; an IPv4-mapped IPv6 address is checked as IPv4 (and
   * `BlockList` also matches it against `::ffff:0:0/96` blocks).
   */
  has(ip: string): boolean | undefined {
    const known = this.#memo.get(ip)
    if (known !== undefined || this.#memo.has(ip)) return known
    const parsed = parseIp(ip)
    const answer =
      parsed === undefined
        ? undefined
        : this.#block.check(formatIp(parsed), parsed.family === 4 ? 'ipv4' : 'ipv6')
    if (this.#memo.size >= MATCH_MEMO_MAX) this.#memo.clear()
    this.#memo.set(ip, answer)
    return answer
  }
}

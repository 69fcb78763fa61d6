/**
 * Client-IP keys for limits: IPv4 as is, IPv4-mapped IPv6 as IPv4, and IPv6 grouped by a prefix
 * (default /56, as express-rate-limit 8 does), because one IPv6 client usually owns a whole /64
 * or larger and could otherwise rotate addresses to escape a per-address limit.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { isIPv4, isIPv6 } from 'node:net'

/** Parses an IPv6 address (already checked by `isIPv6`) into 8 hextets, or `undefined`. */
function hextets(address: string): number[] | undefined {
  let text = address
  const zone = text.indexOf('%')
  if (zone !== -1) text = text.slice(0, zone)
  // An embedded IPv4 tail (::ffff:1.2.3.4) is rewritten as two hextets first.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (v4 !== null) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number]
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const halves = text.split('::')
  if (halves.length > 2) return undefined
  const parse = (part: string | undefined): number[] =>
    part === undefined || part === '' ? [] : part.split(':').map((h) => parseInt(h, 16))
  const left = parse(halves[0])
  const right = parse(halves[1])
  const fill = 8 - left.length - right.length
  if ((halves.length === 1 && fill !== 0) || fill < 0) return undefined
  const out = [...left, ...Array<number>(fill).fill(0), ...right]
  return out.every((h) => Number.isInteger(h) && h >= 0 && h <= 0xffff) ? out : undefined
}

/**
 * The limit key of a client address. IPv6 addresses are masked to `ipv6Subnet` bits and written
 * as `prefix/len`; `false` keeps full addresses. Unknown or malformed input maps to `unknown`,
 * one shared bucket, rather than a key an attacker could vary.
 */
export function clientIpKey(ip: string | undefined, ipv6Subnet: number | false): string {
  if (ip === undefined || ip === '') return 'unknown'
  if (isIPv4(ip)) return ip
  if (!isIPv6(ip)) return 'unknown'
  const h = hextets(ip)
  if (h === undefined) return 'unknown'
  // ::ffff:a.b.c.d is an IPv4 client seen through a dual-stack socket.
  if (h[0] === 0 && h[1] === 0 && h[2] === 0 && h[3] === 0 && h[4] === 0 && h[5] === 0xffff) {
    return `${(h[6] as number) >> 8}.${(h[6] as number) & 0xff}.${(h[7] as number) >> 8}.${(h[7] as number) & 0xff}`
  }
  const bits = ipv6Subnet === false ? 128 : ipv6Subnet
  const masked = h.map((x, i) => {
    const keep = Math.max(0, Math.min(16, bits - i * 16))
    return keep === 16 ? x : keep === 0 ? 0 : x & (0xffff << (16 - keep)) & 0xffff
  })
  const text = masked.map((x) => x.toString(16)).join(':')
  return bits === 128 ? text : `${text}/${bits}`
}

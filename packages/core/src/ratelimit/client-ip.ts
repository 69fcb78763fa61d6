/**
 * Client-IP keys for limits: IPv4 as is, IPv4-mapped IPv6 as IPv4, and IPv6 grouped by a prefix
 * (default /56, as express-rate-limit 8 does), because one IPv6 client usually owns a whole /64
 * or larger and could otherwise rotate addresses to escape a per-address limit.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { isIPv4 } from 'node:net'
import { formatIp, maskIp, parseIp } from '../internal/ip.js'

/**
 * The limit key of a client address. IPv6 addresses are masked to `ipv6Subnet` bits and written
 * as `prefix/len`; `false` keeps full addresses. Unknown or malformed input maps to `unknown`,
 * one shared bucket, rather than a key an attacker could vary.
 */
export function clientIpKey(ip: string | undefined, ipv6Subnet: number | false): string {
  if (ip === undefined || ip === '') return 'unknown'
  if (isIPv4(ip)) return ip
  const parsed = parseIp(ip)
  if (parsed === undefined) return 'unknown'
  // ::ffff:a.b.c.d is an IPv4 client seen through a dual-stack socket.
  if (parsed.family === 4) return formatIp(parsed)
  const bits = ipv6Subnet === false ? 128 : ipv6Subnet
  const text = formatIp(maskIp(parsed, bits), false)
  return bits === 128 ? text : `${text}/${bits}`
}

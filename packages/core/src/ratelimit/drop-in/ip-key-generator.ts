/**
 * express-rate-limit's `ipKeyGenerator` (its `ip-key-generator.ts`), on core's address parser.
 * @packageDocumentation
 */
import { isIPv6 } from 'node:net'
import { DEFAULT_IPV6_SUBNET } from '../../defaults.js'
import { formatIp, maskIp, parseIp } from '../../internal/ip.js'

/**
 * express-rate-limit's `ipKeyGenerator`, byte for byte: IPv4 as is, IPv4-mapped (and
 * IPv4-compatible dotted) IPv6 as IPv4, other IPv6 as its `/ipv6Subnet` network in RFC 5952
 * form (`2001:db8::/56`); a falsy subnet keeps the address as given.
 * @throws {RangeError} for a subnet that is not an integer from 0 to 128
 */
export function ipKeyGenerator(
  ip: string,
  ipv6Subnet: number | false = DEFAULT_IPV6_SUBNET,
): string {
  const parsed = isIPv6(ip) ? parseIp(ip) : undefined
  if (parsed === undefined) return ip
  if (parsed.family === 4) return formatIp(parsed)
  // The deprecated IPv4-compatible notation (::1.2.3.4) is told apart from :: and ::1 by its text.
  const h = parsed.parts
  if (parsed.dotted && h.slice(0, 6).every((x) => x === 0))
    return `${(h[6] as number) >> 8}.${(h[6] as number) & 0xff}.${(h[7] as number) >> 8}.${(h[7] as number) & 0xff}`
  if (ipv6Subnet === false || ipv6Subnet === 0) return ip
  if (!Number.isInteger(ipv6Subnet) || ipv6Subnet < 0 || ipv6Subnet > 128)
    throw new RangeError('Invalid subnet mask.')
  return `${formatIp(maskIp(parsed, ipv6Subnet))}/${ipv6Subnet}`
}

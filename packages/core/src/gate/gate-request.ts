/**
 * The framework-neutral request the gate evaluates. Adapters build one per request.
 *
 * Reachable from `@gatehouse/core`.
 * @packageDocumentation
 */

/** What the gate needs to know about a request; adapters implement it over their framework's request. */
export interface GateRequest {
  /** HTTP method, upper case. */
  readonly method: string
  /** Path without the query string, as received. */
  readonly path: string
  /** The raw query string without `?` (empty when none). */
  readonly query: string
  /** The matched route pattern when known (e.g. `/docs/:id`). */
  readonly route: string | undefined
  /** Client IP as the framework's trust-proxy setting resolves it. */
  readonly ip: string | undefined
  /** Node's raw header list (`[name, value, ...]`) to detect repeated headers; optional. */
  readonly rawHeaders: readonly string[] | undefined
  /** A header's value by lower-case name (Node joins or drops repeats; see `rawHeaders`). */
  header(name: string): string | undefined
}

const ENCODED_UNRESERVED = /%(?:[46][1-9A-F]|[57][0-9A]|3[0-9]|2D|2E|5F|7E)/gi

/**
 * Normalizes a path for policy matching: percent-decodes unreserved characters (RFC 3986 §6.2.2.2),
 * drops `;params`, collapses repeated slashes, resolves `.` and `..` segments, and removes a
 * trailing slash. The result is what routers compare; case is kept (routers differ on it).
 */
export function normalizePath(path: string): string {
  let p = path
  if (p.includes('%'))
    p = p.replace(ENCODED_UNRESERVED, (m) => String.fromCharCode(parseInt(m.slice(1), 16)))
  const semi = p.indexOf(';')
  if (semi !== -1) p = p.replace(/;[^/]*/g, '')
  if (
    !p.includes('//') &&
    !p.includes('/.') &&
    (p.length === 1 || !p.endsWith('/')) &&
    p.startsWith('/')
  )
    return p
  const out: string[] = []
  for (const segment of p.split('/')) {
    if (segment === '' || segment === '.') continue
    if (segment === '..') out.pop()
    else out.push(segment)
  }
  return `/${out.join('/')}`
}

/**
 * The framework-neutral request the gate evaluates. Adapters build one per request.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */

/** What the gate needs to know about a request; adapters implement it over their framework's request. */
export interface GateRequest {
  /** HTTP method, upper case. */
  readonly method: string
  /**
   * Path without the query string, normalized with {@link normalizePath} as the framework's router
   * compares paths (case folded when routing is case-insensitive): what path-based rules match.
   */
  readonly path: string
  /** Path without the query string exactly as received, when the adapter keeps it. */
  readonly rawPath?: string
  /** The raw query string without `?` (empty when none). */
  readonly query: string
  /** The matched route pattern when known (e.g. `/docs/:id`). */
  readonly route: string | undefined
  /** Client IP as the framework's trust-proxy setting resolves it. */
  readonly ip: string | undefined
  /** Node's raw header list (`[name, value, ...]`) to detect repeated headers; optional. */
  readonly rawHeaders: readonly string[] | undefined
  /**
   * The adapter that built the request and answers it (`express`, `koa`, `fastify`), recorded as
   * `request.adapter` in its audit events; absent when application code calls the gate directly,
   * which the events record as `custom`.
   */
  readonly adapter?: string
  /** A header's value by lower-case name (Node joins or drops repeats; see `rawHeaders`). */
  header(name: string): string | undefined
}

const ENCODED_UNRESERVED = /%(?:[46][1-9A-F]|[57][0-9A]|3[0-9]|2D|2E|5F|7E)/gi

/** Options of {@link normalizePath}. */
export interface NormalizePathOptions {
  /** Whether the router compares paths case-sensitively; when not, the path is lower-cased. @default true */
  readonly caseSensitive?: boolean
}

/**
 * Normalizes a path for policy matching: percent-decodes unreserved characters (RFC 3986 §6.2.2.2),
 * drops `;params`, collapses repeated slashes, removes a trailing slash, and lower-cases it when
 * routing is case-insensitive. The first segments of the result are those the router matches, so a
 * rule on a prefix (`/admin`) sees every request the router sends to a route under that prefix.
 *
 * Dot segments (`.`, `..`, also once decoded from `%2e`) are kept, not resolved: Express, Koa's
 * router and Fastify all match them literally (`/admin/..` runs `/admin/:id` with `id = '..'`), so
 * resolving them here would hide the `/admin` prefix of a request that reaches an admin handler.
 */
export function normalizePath(path: string, options?: NormalizePathOptions): string {
  let p = path
  if (p.includes('%'))
    p = p.replace(ENCODED_UNRESERVED, (m) => String.fromCharCode(parseInt(m.slice(1), 16)))
  if (p.includes(';')) p = p.replace(/;[^/]*/g, '')
  if (options?.caseSensitive === false && /[A-Z]/.test(p)) p = p.toLowerCase()
  if (!p.includes('//') && (p.length === 1 || !p.endsWith('/')) && p.startsWith('/')) return p
  const out: string[] = []
  for (const segment of p.split('/')) if (segment !== '') out.push(segment)
  return `/${out.join('/')}`
}

/**
 * The request object a passport strategy receives when the gate runs it.
 *
 * Reachable from `@portcullis/passport`.
 * @packageDocumentation
 */

/**
 * What a strategy run by {@link passportAuthenticator} sees as `req`: built from the gate's
 * request, framework-neutral, without a body or a session. Strategies that read `req.headers`,
 * `req.query`, `req.url`, `req.method` or `req.get()` work; strategies that need a body
 * (passport-local) or a session (OAuth redirects) do not.
 */
export interface PassportRequest {
  /** HTTP method, upper case. */
  readonly method: string
  /** Path and query string, as received. */
  readonly url: string
  /** Same as `url` (Express spelling). */
  readonly originalUrl: string
  /** Path without the query string. */
  readonly path: string
  /** Headers by lower-case name (repeated headers as Node joins them). */
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>
  /** Query parameters; repeated names become arrays. */
  readonly query: Readonly<Record<string, unknown>>
  /** Always `undefined`: the gate runs before any body parser. */
  readonly body: unknown
  /** Client IP as the framework's trust-proxy setting resolved it. */
  readonly ip: string | undefined
  /** A header by name, case-insensitive (Express spelling). */
  get(name: string): string | undefined
  /** A header by name, case-insensitive. */
  header(name: string): string | undefined
}

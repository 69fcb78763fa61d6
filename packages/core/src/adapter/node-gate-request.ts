/**
 * A {@link GateRequest} over the parts of a Node.js `IncomingMessage` that every framework exposes.
 * Express, Koa and Fastify all sit on Node's HTTP server, so their adapters share this class and
 * differ only in where the URL, route pattern and trusted client IP come from.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { normalizePath, type GateRequest } from '../pipeline/gate-request.js'

/** Node's parsed headers: lower-case names, `string[]` only for `set-cookie`-like headers. */
export type NodeHeaders = Readonly<Record<string, string | readonly string[] | undefined>>

/** What an adapter hands to {@link NodeGateRequest}. */
export interface NodeGateRequestInit {
  readonly method: string
  /** Path and query as received (the full, un-mounted URL: `originalUrl` in Express and Koa). */
  readonly url: string
  /** Route pattern when known. */
  readonly route: string | undefined
  /** The client IP as the framework's trust-proxy setting resolves it. */
  readonly ip: string | undefined
  readonly headers: NodeHeaders
  readonly rawHeaders: readonly string[]
  /**
   * Whether the framework's router compares paths case-sensitively (Express's
   * `case sensitive routing`, Fastify's `routerOptions.caseSensitive`); when not, `path` is
   * lower-cased so that path-based rules see `/ADMIN` as the `/admin` it is routed to.
   * @default true
   */
  readonly caseSensitive?: boolean
  /** The adapter building the request (see {@link GateRequest.adapter}). @default 'custom' */
  readonly adapter?: string
}

const CASE_INSENSITIVE = Object.freeze({ caseSensitive: false })

/** The shared {@link GateRequest} of the Node-based adapters. */
export class NodeGateRequest implements GateRequest {
  readonly method: string
  /** The normalized path (see {@link normalizePath}). */
  readonly path: string
  /** The path as received. */
  readonly rawPath: string
  readonly query: string
  /** Set once the router matched (see {@link NodeGateRequest.withRoute}). */
  route: string | undefined
  readonly ip: string | undefined
  readonly rawHeaders: readonly string[]
  /** The adapter that built the request (`custom` when none said). */
  readonly adapter: string
  /**
   * Whether a route step (a route guard) decided this request: when none did, the adapter writes
   * the authentication step's deferred access event once the response is done.
   */
  routeDecided = false
  readonly #headers: NodeHeaders
  readonly #caseSensitive: boolean

  constructor(init: NodeGateRequestInit) {
    const q = init.url.indexOf('?')
    this.method = init.method
    this.rawPath = q === -1 ? init.url : init.url.slice(0, q)
    this.#caseSensitive = init.caseSensitive !== false
    this.path = normalizePath(this.rawPath, this.#caseSensitive ? undefined : CASE_INSENSITIVE)
    this.query = q === -1 ? '' : init.url.slice(q + 1)
    this.route = init.route
    this.ip = init.ip
    this.rawHeaders = init.rawHeaders
    this.adapter = init.adapter ?? 'custom'
    this.#headers = init.headers
  }

  /**
   * This request with its route pattern known (a route guard after a global middleware): the
   * same object, so one request has one GateRequest and its path is normalized once.
   */
  withRoute(route: string | undefined): NodeGateRequest {
    if (route !== undefined) this.route = route
    return this
  }

  header(name: string): string | undefined {
    const v = this.#headers[name]
    return typeof v === 'string' ? v : v?.[0]
  }
}

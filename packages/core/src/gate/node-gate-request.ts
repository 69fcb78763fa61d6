/**
 * A {@link GateRequest} over the parts of a Node.js `IncomingMessage` that every framework exposes.
 * Express, Koa and Fastify all sit on Node's HTTP server, so their adapters share this class and
 * differ only in where the URL, route pattern and trusted client IP come from.
 *
 * Reachable from `@gatehouse/core`.
 * @packageDocumentation
 */
import type { GateRequest } from './gate-request.js'

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
}

/** The shared {@link GateRequest} of the Node-based adapters. */
export class NodeGateRequest implements GateRequest {
  readonly method: string
  readonly path: string
  readonly query: string
  readonly route: string | undefined
  readonly ip: string | undefined
  readonly rawHeaders: readonly string[]
  readonly #headers: NodeHeaders

  constructor(init: NodeGateRequestInit) {
    const q = init.url.indexOf('?')
    this.method = init.method
    this.path = q === -1 ? init.url : init.url.slice(0, q)
    this.query = q === -1 ? '' : init.url.slice(q + 1)
    this.route = init.route
    this.ip = init.ip
    this.rawHeaders = init.rawHeaders
    this.#headers = init.headers
  }

  /** The same request with its route pattern known (a route guard after a global middleware). */
  withRoute(route: string | undefined): NodeGateRequest {
    if (route === this.route) return this
    // The client IP (trust-proxy parsing) and headers are reused, not resolved again.
    return new NodeGateRequest({
      method: this.method,
      url: this.query === '' ? this.path : `${this.path}?${this.query}`,
      route,
      ip: this.ip,
      headers: this.#headers,
      rawHeaders: this.rawHeaders,
    })
  }

  header(name: string): string | undefined {
    const v = this.#headers[name]
    return typeof v === 'string' ? v : v?.[0]
  }
}

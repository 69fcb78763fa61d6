/**
 * `@fastify/rate-limit` 11 as a framework-neutral engine: option resolution, the default memory
 * store, key and limit resolution, headers and the answer of a limited request. The code lives in
 * `route-drop-in/`; `@portcullis/fastify`'s `fastifyRateLimit` is the Fastify glue over it.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
export * from './route-drop-in/types.js'
export { resolveRouteLimitOptions } from './route-drop-in/options.js'
export { RouteLimitMemoryStore } from './route-drop-in/memory-store.js'
export {
  checkRouteLimit,
  normalizeIP,
  routeLimitContext,
  routeLimitHeaders,
  routeLimitProblem,
} from './route-drop-in/limiter.js'

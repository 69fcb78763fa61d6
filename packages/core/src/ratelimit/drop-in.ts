/**
 * express-rate-limit 8 as a framework-neutral engine: its options (resolved and validated once),
 * its `Store` contract, its `req.rateLimit` info and the exact bytes of its headers, counted by
 * default in Portcullis's bounded memory limiter. `@portcullis/express` wraps it as a drop-in
 * `rateLimit()`; a Koa or Fastify adapter wraps the same engine.
 *
 * The code lives in `drop-in/`, in express-rate-limit's own file shapes: `types.ts`, `options.ts`
 * (its `parseOptions` and option validations), `headers.ts`, `rate-limit.ts` (the limiter),
 * `memory-store.ts` and `ip-key-generator.ts`.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
export * from './drop-in/types.js'
export { DROP_IN_DEFAULTS } from './drop-in/defaults.js'
export { ipKeyGenerator } from './drop-in/ip-key-generator.js'
export { BoundedMemoryStore, type BoundedMemoryStoreOptions } from './drop-in/memory-store.js'
export { createDropInLimiter } from './drop-in/rate-limit.js'

/**
 * `@gatehouse/core`: the framework-neutral security gate. Adapters (`@gatehouse/express`, ...)
 * wrap it; stores (`@gatehouse/sqlite`, ...) implement its interfaces.
 *
 * @example
 * ```ts
 * import { createGate, createMemoryKeyStore } from '@gatehouse/core'
 * const gate = createGate({ apiKeys: { store: createMemoryKeyStore(), pepper: process.env.PEPPER } })
 * ```
 * @packageDocumentation
 */
import './decorators/metadata-polyfill.js'
export * from './errors.js'
export * from './ids.js'
export * from './types.js'
export * from './defaults.js'
export * from './logger.js'
export * from './validation/type-validator.js'
export * from './validation/type-converter.js'
export * from './validation/type-serializer.js'
export * from './http/problem.js'
export * from './gate/gate-request.js'
export * from './gate/decision.js'
export * from './gate/gate.js'
export * from './authz/requirements.js'
export * from './context/access-context.js'
export * from './integrations/message-broker.js'
export * from './integrations/metrics.js'
export * from './integrations/cache.js'
export * from './jwt/algorithms.js'
export { decodeBase64urlStrict, encodeBase64url } from './jwt/base64url.js'
export { bindKey, type JsonWebKeyInput, type JwtKeyInput, type JwksOptions } from './jwt/key-set.js'
export * from './jwt/jws.js'
export * from './jwt/jwt-verifier.js'
export * from './apikey/format.js'
export * from './apikey/key-store.js'
export * from './apikey/memory-key-store.js'
export * from './apikey/api-key-verifier.js'
export * from './apikey/api-key-manager.js'
export * from './audit/audit-event.js'
export * from './audit/audit-trail.js'
export * from './audit/memory-audit-sink.js'
export * from './audit/json-lines-file-sink.js'
export * from './gate/node-gate-request.js'
export * from './decorators/controller.js'
export * from './ratelimit/client-ip.js'
export * from './ratelimit/memory-limiter.js'
export * from './ratelimit/backend.js'
export * from './ratelimit/headers.js'
export * from './ratelimit/rate-limit-stage.js'
export * from './ratelimit/quota-stage.js'
export * from './ratelimit/drop-in.js'
export type { Clock } from './internal/clock.js'

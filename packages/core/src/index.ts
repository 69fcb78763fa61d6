/**
 * `@portcullis/core`: the framework-neutral security gate. Adapters (`@portcullis/express`, ...)
 * wrap it; stores (`@portcullis/sqlite`, ...) implement its interfaces.
 *
 * @example
 * ```ts
 * import { createGate, createMemoryKeyStore } from '@portcullis/core'
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
export * from './pipeline/gate-request.js'
export * from './pipeline/decision.js'
export * from './gate/gate.js'
export type { StoreFailureMode } from './pipeline/stage.js'
export {
  NodeGateRequest,
  type NodeGateRequestInit,
  type NodeHeaders,
} from './adapter/node-gate-request.js'
export * from './authz/requirements.js'
export * from './policy/model.js'
export * from './policy/compile.js'
export * from './policy/risk.js'
export * from './policy/access-manager.js'
export * from './policy/policy-store.js'
export * from './policy/gate-policy.js'
export * from './policy/policy-tests.js'
export * from './context/access-context.js'
export * from './integrations/message-broker.js'
export * from './integrations/metrics.js'
export * from './integrations/tracing.js'
export * from './integrations/cache.js'
export * from './integrations/lru-cache.js'
export * from './integrations/tiered-cache.js'
export * from './integrations/broker-message-guard.js'
export * from './jwt/algorithms.js'
export { decodeBase64urlStrict, encodeBase64url } from './jwt/base64url.js'
export { bindKey, type JsonWebKeyInput, type JwtKeyInput, type JwksOptions } from './jwt/key-set.js'
export * from './jwt/jws.js'
export * from './jwt/jwt-verifier.js'
export {
  createMemoryRevocationList,
  isRevocationList,
  resolveRevocationListOptions,
  revocationEntry,
  type MemoryRevocationList,
  type ResolvedRevocationListOptions,
  type RevocationClaims,
  type RevocationEntry,
  type RevocationList,
  type RevocationListOptions,
  type RevocationRule,
  type RevokeSubjectInput,
  type RevokeTokenInput,
} from './jwt/revocation.js'
export * from './apikey/format.js'
export * from './apikey/key-store.js'
export * from './apikey/memory-key-store.js'
export * from './apikey/cached-key-store.js'
export * from './apikey/api-key-verifier.js'
export * from './apikey/api-key-manager.js'
export * from './apikey/stored-record.js'
export type { ApiKeyUsagePolicyInput } from './apikey/usage-policy.js'
export * from './audit/audit-event.js'
export { auditEventJson } from './audit/event-json.js'
export * from './audit/audit-trail.js'
export * from './audit/memory-audit-sink.js'
export * from './audit/json-lines-file-sink.js'
export * from './audit/audit-chain.js'
export * from './audit/compliance.js'
export * from './audit/pseudonyms.js'
export * from './audit/redaction.js'
export * from './audit/webhook-audit-sink.js'
export * from './audit/logger-audit-sink.js'
export * from './decorators/controller.js'
export * from './ratelimit/client-ip.js'
export * from './ratelimit/memory-limiter.js'
export * from './ratelimit/backend.js'
export * from './ratelimit/headers.js'
export * from './ratelimit/rate-limit-stage.js'
export * from './quota/quota-stage.js'
export * from './ratelimit/drop-in.js'
export * from './ratelimit/route-drop-in.js'
export type { Clock } from './internal/clock.js'
// Failed-authentication throttling (issue 17).
export * from './authn/failure-throttle.js'

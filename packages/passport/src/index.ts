/**
 * `@gatehouse/passport`: passport and Gatehouse, both ways.
 *
 * - {@link passportAuthenticator} makes any passport strategy a Gatehouse authenticator, usable
 *   through `@gatehouse/express`, `@gatehouse/koa` and `@gatehouse/fastify`, without sessions.
 * - {@link GatehouseStrategy} makes Gatehouse's API-key and JWT verification a passport strategy
 *   for existing passport apps.
 *
 * @example
 * ```ts
 * import { BasicStrategy } from 'passport-http'
 * import { createGate } from '@gatehouse/core'
 * import { detectAuthorizationScheme, passportAuthenticator } from '@gatehouse/passport'
 *
 * const gate = createGate({
 *   authenticators: [
 *     passportAuthenticator(new BasicStrategy(verify), {
 *       detect: detectAuthorizationScheme('basic'),
 *       toPrincipal: (user) => ({ id: user.name, roles: user.roles }),
 *     }),
 *   ],
 * })
 * ```
 * @packageDocumentation
 */
export * from './defaults.js'
export * from './detect.js'
export * from './passport-request.js'
export * from './passport-authenticator.js'
export * from './gatehouse-strategy.js'

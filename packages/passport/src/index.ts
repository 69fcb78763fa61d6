/**
 * `@portcullis/passport`: passport and Portcullis, both ways.
 *
 * - {@link passportAuthenticator} makes any passport strategy a Portcullis authenticator, usable
 *   through `@portcullis/express`, `@portcullis/koa` and `@portcullis/fastify`, without sessions.
 * - {@link PortcullisStrategy} makes Portcullis's API-key and JWT verification a passport strategy
 *   for existing passport apps.
 *
 * @example
 * ```ts
 * import { BasicStrategy } from 'passport-http'
 * import { createGate } from '@portcullis/core'
 * import { detectAuthorizationScheme, passportAuthenticator } from '@portcullis/passport'
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
export * from './portcullis-strategy.js'

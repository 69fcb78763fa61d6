/**
 * `rateLimit()` for Koa with express-rate-limit 8's options, over the same engine as
 * `@portcullis/express`'s drop-in. Callbacks (`keyGenerator`, `skip`, `handler`, ...) receive
 * `(ctx, ctx.res)`; the info lands on `ctx.rateLimit` (or `requestPropertyName`).
 *
 * Reachable from `@portcullis/koa`.
 * @packageDocumentation
 */
import type { ServerResponse } from 'node:http'
import {
  createDropInLimiter,
  type DropInClientInfo,
  type DropInLimiterOptions,
} from '@portcullis/core'
import type { Context, Next } from 'koa'

/** express-rate-limit 8's options for Koa: callbacks get `(ctx, ctx.res)`. */
export type KoaRateLimitOptions = DropInLimiterOptions<Context, ServerResponse, Next>

/** The middleware, with `resetKey` and `getKey`. */
export type KoaRateLimitMiddleware = ((ctx: Context, next: Next) => Promise<void>) & {
  resetKey(key: string): Promise<void>
  getKey(key: string): Promise<DropInClientInfo | undefined>
}

/**
 * Rate limits requests as express-rate-limit 8 does, on Koa: same options, defaults and headers.
 * A failing store throws `ERR_RATELIMIT_UNAVAILABLE` (503) for `problemHandler` unless
 * `passOnStoreError` is set.
 * @throws {ConfigError} for a bad option, at creation
 * @example
 * ```ts
 * router.post('/login', rateLimit({ windowMs: 15 * MINUTE, limit: 5 }), login)
 * ```
 */
export function rateLimit(options: Readonly<KoaRateLimitOptions> = {}): KoaRateLimitMiddleware {
  const limiter = createDropInLimiter<Context, ServerResponse, Next>(options)
  const middleware = async function portcullisRateLimit(ctx: Context, next: Next): Promise<void> {
    const result = await limiter.hit(ctx, ctx.res)
    if (!result.counted) return next()
    for (const h of result.headers) {
      if (h.append) ctx.append(h.name, h.value)
      else ctx.set(h.name, h.value)
    }
    if (result.limited) {
      const handler = limiter.options.handler
      if (handler !== undefined) return void (await handler(ctx, ctx.res, next, limiter.options))
      ctx.status = result.statusCode
      ctx.body = (await result.message()) as Context['body']
      return
    }
    if (result.settle === undefined) return next()
    let failed = true
    try {
      await next()
      failed = false
    } finally {
      // Settled once the downstream status is known; a throw counts as a failed request.
      void result.settle(failed ? false : undefined)
    }
  }
  return Object.assign(middleware, {
    resetKey: (key: string): Promise<void> => limiter.resetKey(key),
    getKey: (key: string): Promise<DropInClientInfo | undefined> => limiter.getKey(key),
  })
}

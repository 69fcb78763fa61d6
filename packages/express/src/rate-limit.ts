/**
 * `rateLimit()`: a drop-in for express-rate-limit 8 (switch by changing the import), over
 * Portcullis's framework-neutral engine `createDropInLimiter` from `@portcullis/core`.
 *
 * Reachable from `@portcullis/express`.
 * @packageDocumentation
 */
import {
  BoundedMemoryStore,
  createDropInLimiter,
  ipKeyGenerator,
  type DropInClientInfo,
  type DropInLimiterOptions,
  type DropInOptionsUsed,
  type DropInRateLimitInfo,
  type DropInStore,
} from '@portcullis/core'
import type { NextFunction, Request, RequestHandler, Response } from 'express'

export { ipKeyGenerator, BoundedMemoryStore as MemoryStore }

/** express-rate-limit 8's options (`Partial<Options>`), plus `now` and `maxKeys`. */
export type RateLimitOptions = DropInLimiterOptions<Request, Response, NextFunction>

/** The resolved options a custom `handler` receives. */
export type RateLimitOptionsUsed = DropInOptionsUsed<Request, Response, NextFunction>

/** What `req.rateLimit` holds: `{ limit, used, remaining, resetTime, key }`. */
export type RateLimitInfo = DropInRateLimitInfo

/** express-rate-limit's `Store` contract. */
export type RateLimitStore = DropInStore

/** The middleware, with express-rate-limit's `resetKey` and `getKey`. */
export type RateLimitRequestHandler = RequestHandler & {
  /** Forgets a client's count. */
  resetKey(key: string): Promise<void>
  /** A client's count; throws when the store has no `get`. */
  getKey(key: string): Promise<DropInClientInfo | undefined>
}

/**
 * Rate limits requests exactly as express-rate-limit 8 does: same options, defaults, headers,
 * `req.rateLimit`, handler and Store contract. A failing store answers 503
 * (`ERR_RATELIMIT_UNAVAILABLE`, through `next(err)`) unless `passOnStoreError` is set.
 * @throws {ConfigError} for a bad option, at creation
 * @example
 * ```ts
 * import { rateLimit } from '@portcullis/express' // was: from 'express-rate-limit'
 * app.use(rateLimit({ windowMs: 15 * 60 * 1000, limit: 100, standardHeaders: 'draft-8', legacyHeaders: false }))
 * ```
 */
export function rateLimit(options: Readonly<RateLimitOptions> = {}): RateLimitRequestHandler {
  const limiter = createDropInLimiter<Request, Response, NextFunction>(options)
  const middleware = async function portcullisRateLimit(
    req: Request,
    res: Response,
    next: NextFunction,
  ): Promise<void> {
    try {
      const result = await limiter.hit(req, res)
      if (!result.counted) return next()
      if (!res.headersSent)
        for (const h of result.headers)
          if (h.append) res.append(h.name, h.value)
          else res.setHeader(h.name, h.value)
      const settle = result.settle
      if (settle !== undefined) {
        res.once('finish', () => void settle())
        res.once('close', () => {
          if (!res.writableEnded) void settle(false)
        })
        res.once('error', () => void settle(false))
      }
      if (!result.limited) return next()
      const handler = limiter.options.handler
      if (handler !== undefined) return void (await handler(req, res, next, limiter.options))
      res.status(result.statusCode)
      const body = await result.message()
      if (!res.writableEnded) res.send(body)
    } catch (error) {
      next(error)
    }
  }
  return Object.assign(middleware, {
    resetKey: (key: string): Promise<void> => limiter.resetKey(key),
    getKey: (key: string): Promise<DropInClientInfo | undefined> => limiter.getKey(key),
  })
}

/**
 * The default export of `@portcullis/express/rate-limit`, so that switching from express-rate-limit
 * is a change of the import only: `import rateLimit from '@portcullis/express/rate-limit'`.
 */
export default rateLimit

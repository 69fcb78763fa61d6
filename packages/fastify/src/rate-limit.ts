/**
 * `rateLimit()` for Fastify with express-rate-limit 8's options, over the same engine as
 * `@portcullis/express`'s drop-in: an `onRequest` hook for one route (`onRequest: rateLimit(...)`)
 * or for every route (`fastify.addHook('onRequest', rateLimit(...))`). Callbacks receive
 * `(request, reply)`; the info lands on `request.rateLimit` (or `requestPropertyName`).
 *
 * Reachable from `@portcullis/fastify`.
 * @packageDocumentation
 */
import {
  createDropInLimiter,
  type DropInClientInfo,
  type DropInLimiterOptions,
} from '@portcullis/core'
import type { FastifyReply, FastifyRequest } from 'fastify'

type FastifyNext = (error?: unknown) => void

/** express-rate-limit 8's options for Fastify: callbacks get `(request, reply)`. */
export type FastifyRateLimitOptions = DropInLimiterOptions<
  FastifyRequest,
  FastifyReply,
  FastifyNext
>

/** The hook, with `resetKey` and `getKey`. */
export type FastifyRateLimitHook = ((
  request: FastifyRequest,
  reply: FastifyReply,
) => Promise<void>) & {
  resetKey(key: string): Promise<void>
  getKey(key: string): Promise<DropInClientInfo | undefined>
}

/**
 * Rate limits requests as express-rate-limit 8 does, on Fastify. A failing store rejects with
 * `ERR_RATELIMIT_UNAVAILABLE` (503) unless `passOnStoreError` is set.
 * @throws {ConfigError} for a bad option, at creation
 * @example
 * ```ts
 * fastify.post('/login', { onRequest: rateLimit({ windowMs: 15 * MINUTE, limit: 5 }) }, login)
 * ```
 */
export function rateLimit(options: Readonly<FastifyRateLimitOptions> = {}): FastifyRateLimitHook {
  const limiter = createDropInLimiter<FastifyRequest, FastifyReply, FastifyNext>(options)
  const hook = async function portcullisRateLimit(
    request: FastifyRequest,
    reply: FastifyReply,
  ): Promise<void> {
    const result = await limiter.hit(request, reply)
    if (!result.counted) return
    for (const h of result.headers) reply.header(h.name, h.value)
    const settle = result.settle
    if (settle !== undefined) {
      reply.raw.once('finish', () => void settle())
      reply.raw.once('close', () => {
        if (!reply.raw.writableEnded) void settle(false)
      })
    }
    if (!result.limited) return
    const handler = limiter.options.handler
    if (handler !== undefined) {
      await handler(
        request,
        reply,
        (error) => {
          if (error !== undefined) throw error
        },
        limiter.options,
      )
      return
    }
    await reply.code(result.statusCode).send(await result.message())
  }
  return Object.assign(hook, {
    resetKey: (key: string): Promise<void> => limiter.resetKey(key),
    getKey: (key: string): Promise<DropInClientInfo | undefined> => limiter.getKey(key),
  })
}

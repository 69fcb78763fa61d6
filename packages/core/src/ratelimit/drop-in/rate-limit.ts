/**
 * The drop-in engine (express-rate-limit's `rate-limit.ts`): counts a request in the store and
 * answers with its info, headers and whether it is limited.
 * @packageDocumentation
 */
import { AuthError } from '../../errors.js'
import type { Clock } from '../../internal/clock.js'
import { toHeaderSeconds } from '../../validation/type-converter.js'
import { dropInHeaders } from './headers.js'
import { resolveDropInOptions } from './options.js'
import type {
  DropInClientInfo,
  DropInLimiter,
  DropInLimiterOptions,
  DropInNext,
  DropInOptionsUsed,
  DropInRateLimitInfo,
  DropInRequest,
  DropInResult,
} from './types.js'

const NOT_COUNTED: DropInResult = Object.freeze({ counted: false })

/**
 * Creates the express-rate-limit 8 engine. Options are resolved and checked here, once; the
 * store's `init` is called with them (errors logged, as express-rate-limit does).
 * @throws {ConfigError} for a bad option (unknown names are only warned through `logger`)
 * @example
 * ```ts
 * const limiter = createDropInLimiter<MyRequest, MyResponse>({ limit: 100, standardHeaders: 'draft-8' })
 * const result = await limiter.hit(request, response)
 * if (result.counted && result.limited) reply(result.statusCode, await result.message())
 * ```
 */
export function createDropInLimiter<
  TRequest extends DropInRequest = DropInRequest,
  TResponse = unknown,
  TNext = DropInNext,
>(
  options: Readonly<DropInLimiterOptions<TRequest, TResponse, TNext>> = {},
): DropInLimiter<TRequest, TResponse, TNext> {
  const { now, ...used } = resolveDropInOptions(options)
  const resolved = used as DropInOptionsUsed<TRequest, TResponse, TNext>
  const store = resolved.store
  if (store.init !== undefined) {
    try {
      const init = store.init(resolved)
      if (init instanceof Promise)
        init.catch((error: unknown) =>
          resolved.logger.error(
            error,
            'express-rate-limit: async error during store initialization.',
          ),
        )
    } catch (error) {
      resolved.logger.error(error, 'express-rate-limit: error during store initialization.')
    }
  }
  return new DropInEngine(resolved, now)
}

class DropInEngine<TRequest extends DropInRequest, TResponse, TNext> implements DropInLimiter<
  TRequest,
  TResponse,
  TNext
> {
  constructor(
    readonly options: DropInOptionsUsed<TRequest, TResponse, TNext>,
    private readonly now: Clock,
  ) {}

  async hit(request: TRequest, response: TResponse): Promise<DropInResult> {
    const o = this.options
    if (await o.skip(request, response)) return NOT_COUNTED
    const key = await o.keyGenerator(request, response)
    const giveBack = o.skipFailedRequests || o.skipSuccessfulRequests
    let totalHits: number
    let resetTime: Date | undefined
    try {
      const counted = await o.store.increment(key)
      totalHits = counted.totalHits
      // A store may keep mutating its own Date; the decrement check needs this hit's.
      resetTime =
        counted.resetTime && giveBack ? new Date(counted.resetTime.getTime()) : counted.resetTime
    } catch (error) {
      if (o.passOnStoreError) {
        o.logger.error(
          error,
          'express-rate-limit: error from store, allowing request without rate-limiting.',
        )
        return NOT_COUNTED
      }
      throw new AuthError('ERR_RATELIMIT_UNAVAILABLE', 'Rate limiting is unavailable', {
        cause: error,
        reason: 'rate limit store failed to increment',
      })
    }
    const limit = await (typeof o.limit === 'function' ? o.limit(request, response) : o.limit)
    const info: DropInRateLimitInfo = {
      limit,
      used: totalHits,
      remaining: Math.max(limit - totalHits, 0),
      resetTime,
      key,
    }
    Object.defineProperty(info, 'current', { enumerable: false, value: totalHits })
    // Set before `identifier` runs: the default one (and users' ones) read it from the request.
    ;(request as unknown as Record<string, unknown>)[o.requestPropertyName] = info
    const headers = await dropInHeaders(o, request, response, info, this.now())
    const limited = totalHits > limit
    if (limited && (o.legacyHeaders || o.standardHeaders !== false)) {
      const custom = await (typeof o.retryAfter === 'function'
        ? o.retryAfter(request, response)
        : o.retryAfter)
      headers.push({
        name: 'Retry-After',
        value: String(custom ?? this.#resetSeconds(resetTime)),
        append: false,
      })
    }
    return {
      counted: true,
      info,
      headers,
      limited,
      statusCode: o.statusCode,
      message: async () =>
        typeof o.message === 'function' ? await o.message(request, response) : o.message,
      settle: giveBack ? this.#settler(request, response, key, resetTime) : undefined,
    }
  }

  #resetSeconds(resetTime: Date | undefined): string {
    return toHeaderSeconds(resetTime ? resetTime.getTime() - this.now() : this.options.windowMs)
  }

  #settler(
    request: TRequest,
    response: TResponse,
    key: string,
    resetTime: Date | undefined,
  ): (success?: boolean) => Promise<void> {
    const o = this.options
    let done = false
    return async (success?: boolean): Promise<void> => {
      let ok = success
      if (ok === undefined) {
        try {
          ok = await o.requestWasSuccessful(request, response)
        } catch (error) {
          o.logger.error(error, 'express-rate-limit: error in requestWasSuccessful callback.')
          return
        }
      }
      if (done || !(ok ? o.skipSuccessfulRequests : o.skipFailedRequests)) return
      done = true
      // A hit of an ended window is gone already; giving it back would eat into the next one.
      if (resetTime && this.now() >= resetTime.getTime()) return
      try {
        await o.store.decrement(key)
      } catch (error) {
        o.logger.error(error, 'express-rate-limit: error from store during decrement.')
      }
    }
  }

  async resetKey(key: string): Promise<void> {
    await this.options.store.resetKey(key)
  }

  getKey(key: string): Promise<DropInClientInfo | undefined> {
    const store = this.options.store
    if (store.get === undefined)
      throw new Error('The current store does not support the get/getKey method')
    return Promise.resolve(store.get(key))
  }
}

/**
 * The limit and quota stages' fast path for counters in this process's memory.
 * @internal
 * @packageDocumentation
 */
import type { RateLimiterLike } from './backend.js'
import { BoundedMemoryLimiter } from './memory-limiter.js'

/**
 * Whether `limiter` is exactly a {@link BoundedMemoryLimiter} (not a subclass, which may override
 * `consume`): the stages then count with {@link BoundedMemoryLimiter.consumeNow}, without a promise
 * or a turn of the microtask queue.
 */
export function isMemoryLimiter(
  limiter: RateLimiterLike,
): limiter is RateLimiterLike & BoundedMemoryLimiter {
  return Object.getPrototypeOf(limiter) === BoundedMemoryLimiter.prototype
}

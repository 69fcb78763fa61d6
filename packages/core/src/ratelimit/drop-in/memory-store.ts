/**
 * The drop-in's default store (express-rate-limit's `memory-store.ts`), bounded and timer-free.
 * @packageDocumentation
 */
import { DEFAULT_RATE_LIMIT_MAX_KEYS } from '../../defaults.js'
import { systemClock, type Clock } from '../../internal/clock.js'
import { BoundedMemoryLimiter } from '../memory-limiter.js'
import { DROP_IN_DEFAULTS } from './defaults.js'
import type { DropInClientInfo, DropInStore, DropInStoreInitOptions } from './types.js'

/** Options of {@link BoundedMemoryStore}. */
export interface BoundedMemoryStoreOptions {
  /** Keys kept; the least recently used window is dropped beyond. @default 100000 */
  readonly maxKeys?: number
  /** Clock. @default Date.now */
  readonly now?: Clock
}

/**
 * An express-rate-limit `Store` over {@link BoundedMemoryLimiter}: fixed windows per key like its
 * `MemoryStore`, but at most `maxKeys` keys (LRU) and no timers, so a flood of distinct client
 * addresses cannot grow the heap. The default store of {@link createDropInLimiter}.
 */
export class BoundedMemoryStore implements DropInStore {
  readonly localKeys: boolean = true
  readonly maxKeys: number
  readonly #now: Clock
  #at = 0
  #windowMs: number = DROP_IN_DEFAULTS.windowMs
  #limiter: BoundedMemoryLimiter

  constructor(options: Readonly<BoundedMemoryStoreOptions> = {}) {
    this.maxKeys = options.maxKeys ?? DEFAULT_RATE_LIMIT_MAX_KEYS
    this.#now = options.now ?? systemClock
    this.#limiter = this.#create()
  }

  #create(): BoundedMemoryLimiter {
    // The limit is the engine's (it may be a function of the request), so the limiter never refuses.
    // Its clock is the time read once per store call, so a reset time is exactly start + window.
    return new BoundedMemoryLimiter({
      points: Number.MAX_SAFE_INTEGER,
      durationMs: this.#windowMs,
      maxKeys: this.maxKeys,
      now: () => this.#at,
    })
  }

  #tick(): number {
    this.#at = this.#now()
    return this.#at
  }

  /** Takes `windowMs` from the limiter's options and starts empty. */
  init(options: DropInStoreInitOptions): void {
    this.#windowMs = options.windowMs
    this.#limiter = this.#create()
  }

  /** Keys currently remembered. */
  get size(): number {
    return this.#limiter.size
  }

  /** The live window of `key`, or `undefined`. */
  async get(key: string): Promise<DropInClientInfo | undefined> {
    const now = this.#tick()
    const r = await this.#limiter.get(key)
    return r === null
      ? undefined
      : { totalHits: r.consumedPoints, resetTime: new Date(now + r.msBeforeNext) }
  }

  /** Counts a hit, opening a window when none is live. */
  async increment(key: string): Promise<DropInClientInfo> {
    const now = this.#tick()
    const r = await this.#limiter.consume(key)
    return { totalHits: r.consumedPoints, resetTime: new Date(now + r.msBeforeNext) }
  }

  /** Gives a hit back to a live window; without one there is nothing to give back. */
  async decrement(key: string): Promise<void> {
    this.#tick()
    if ((await this.#limiter.get(key)) !== null) await this.#limiter.reward(key)
  }

  /** Forgets `key`. */
  async resetKey(key: string): Promise<void> {
    await this.#limiter.delete(key)
  }

  /** Forgets every key. */
  async resetAll(): Promise<void> {
    this.#limiter = this.#create()
  }

  /** Forgets every key (there are no timers to stop). */
  shutdown(): void {
    this.#limiter = this.#create()
  }
}

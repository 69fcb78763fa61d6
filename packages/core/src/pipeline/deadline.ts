/**
 * Deadlines on the calls the gate makes to its dependencies (key stores, JWKS, authenticators,
 * limit and quota stores, policy hooks and resource loaders). A call that has not settled in time
 * is answered by the deadline; its late settlement is ignored, and a late rejection is handled so
 * it never becomes an unhandled rejection.
 * @internal
 * @packageDocumentation
 */

/**
 * `pending`'s outcome, or `expired()`'s once `ms` milliseconds passed first. Only promises get a
 * timer: synchronous answers never reach here. The timer is `unref`ed, so a pending call never
 * keeps the process alive, and cleared as soon as the call settles.
 */
export function withDeadline<T>(pending: PromiseLike<T>, ms: number, expired: () => T): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false
    const timer = setTimeout(() => {
      if (done) return
      done = true
      try {
        resolve(expired())
      } catch (error) {
        reject(error)
      }
    }, ms)
    timer.unref()
    pending.then(
      (value) => {
        if (done) return
        done = true
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        if (done) return
        done = true
        clearTimeout(timer)
        reject(error)
      },
    )
  })
}

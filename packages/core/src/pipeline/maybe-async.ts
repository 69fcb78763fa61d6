/**
 * "Maybe async": a step answers with a value when nothing waited (a cached key, a counter in
 * memory) and with a promise only when something did. This file is the one place that knows how to
 * carry on from either, so a request that waits on nothing costs no extra microtask turn.
 * @internal
 * @packageDocumentation
 */

/** A value now, or later. */
export type MaybePromise<T> = T | Promise<T>

/** Whether a value is a promise (any thenable), rather than the answer itself. */
export function isThenable<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as PromiseLike<T> | undefined)?.then === 'function'
}

/**
 * Continues with `next(value)` at once when `value` is not a promise, or when it resolves; a
 * rejection goes to `failed`. The result is synchronous exactly when both the value and `next`'s
 * answer are.
 */
export function andThen<T, TResult>(
  value: T | PromiseLike<T>,
  next: (value: T) => MaybePromise<TResult>,
  failed: (error: unknown) => MaybePromise<TResult>,
): MaybePromise<TResult> {
  if (!isThenable(value)) return next(value)
  return Promise.resolve(value).then(next, failed)
}

/**
 * Calls `run()` and carries on as {@link andThen} does; a synchronous throw goes to `failed` too,
 * so a dependency that throws and one that rejects are answered alike.
 */
export function attempt<T, TResult>(
  run: () => T | PromiseLike<T>,
  next: (value: T) => MaybePromise<TResult>,
  failed: (error: unknown) => MaybePromise<TResult>,
): MaybePromise<TResult> {
  let value: T | PromiseLike<T>
  try {
    value = run()
  } catch (error) {
    return failed(error)
  }
  return andThen(value, next, failed)
}

/**
 * Defaults of `@portcullis/passport`, one named constant each.
 *
 * Reachable from `@portcullis/passport`.
 * @packageDocumentation
 */

/** How long a strategy may take to call `success`, `fail`, `error`, ... before the gate answers 503. */
export const DEFAULT_STRATEGY_TIMEOUT_MS = 5000

/** The name {@link PortcullisStrategy} registers under with `passport.use()`. */
export const DEFAULT_PORTCULLIS_STRATEGY_NAME = 'portcullis'

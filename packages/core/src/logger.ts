/**
 * The logger interface core writes to. Core never calls `console` itself.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */

/** A minimal structured logger; pino, bunyan and `console` all fit. */
export interface Logger {
  /** Something an operator should look at. */
  warn(message: string, fields?: Readonly<Record<string, unknown>>): void
  /** Something failed. */
  error(message: string, fields?: Readonly<Record<string, unknown>>): void
  /** Routine detail. */
  debug?(message: string, fields?: Readonly<Record<string, unknown>>): void
}

/** A logger that drops everything: the default. */
export const silentLogger: Logger = Object.freeze({
  warn(): void {},
  error(): void {},
  debug(): void {},
})

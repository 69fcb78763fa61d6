/**
 * The logger interface core writes to. Core never calls `console` itself.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */

/** Structured fields of one log line (`{ sink: 'postgres', error: '...' }`); may be empty. */
export type LogFields = Readonly<Record<string, unknown>>

/**
 * A minimal structured logger in pino's argument order, `(fields, message)`: every call passes a
 * fields object first (`{}` when there is nothing to add) and the message second. A pino or
 * bunyan logger and Fastify's `app.log` / `request.log` fit as they are, and keep the fields.
 *
 * `console` takes its arguments the other way round (it would print the fields before the
 * message); wrap it:
 * ```ts
 * const logger: Logger = {
 *   warn: (fields, message) => console.warn(message, fields),
 *   error: (fields, message) => console.error(message, fields),
 * }
 * ```
 * @example
 * ```ts
 * import pino from 'pino'
 * const gate = createGate({ apiKeys: { store, pepper }, logger: pino() })
 * // {"level":50,...,"sink":"webhook","error":"...","retryInMs":1000,"msg":"audit sink write failed; will retry"}
 * ```
 */
export interface Logger {
  /** Something an operator should look at. */
  warn(fields: LogFields, message: string): void
  /** Something failed. */
  error(fields: LogFields, message: string): void
  /** Routine detail. */
  debug?(fields: LogFields, message: string): void
}

/** A logger that drops everything: the default. */
export const silentLogger: Logger = Object.freeze({
  warn(): void {},
  error(): void {},
  debug(): void {},
})

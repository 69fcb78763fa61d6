/**
 * An audit sink for development: each event goes to a pino-like logger (`logger.info(obj, msg)`),
 * or, without one, to standard output as one JSON line.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import type { AuditEvent, AuditSink } from './audit-event.js'
import { auditEventJson } from './event-json.js'

/** The part of a pino (or bunyan) logger the sink uses. */
export interface PinoLikeLogger {
  info(object: Record<string, unknown>, message?: string): void
}

/** Options of {@link createLoggerAuditSink}. */
export interface LoggerAuditSinkOptions {
  /** A pino-like logger. @default JSON lines on standard output */
  readonly logger?: PinoLikeLogger
  /** Sink name. @default 'logger' */
  readonly name?: string
}

/** Creates a console/pino sink (no durability: for development). */
export function createLoggerAuditSink(options: Readonly<LoggerAuditSinkOptions> = {}): AuditSink {
  const logger = options.logger
  return {
    name: options.name ?? 'logger',
    async write(events: readonly AuditEvent[]): Promise<void> {
      for (const event of events) {
        if (logger !== undefined) logger.info({ audit: event }, `audit ${event.type}`)
        else process.stdout.write(auditEventJson(event) + '\n')
      }
    },
  }
}

/**
 * Conversions between what users write and what the gate works with: durations such as `15m`,
 * header values.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */

/** One second in milliseconds. */
export const SECOND = 1000
/** One minute in milliseconds. */
export const MINUTE: number = 60 * SECOND
/** One hour in milliseconds. */
export const HOUR: number = 60 * MINUTE
/** One day in milliseconds. */
export const DAY: number = 24 * HOUR

/** One week in milliseconds. */
const WEEK: number = 7 * DAY
/** A year as the `ms` package counts it: 365.25 days. */
const YEAR: number = 365.25 * DAY

// One group per unit, in the factors' order; the long names are the `ms` package's (`1 minute`).
const DURATION_PART =
  /(\d+(?:\.\d+)?) *(?:(milliseconds?|msecs?|ms)|(seconds?|secs?|s)|(minutes?|mins?|m)|(hours?|hrs?|h)|(days?|d)|(weeks?|wks?|w))/iy
const FACTORS: readonly number[] = [1, SECOND, MINUTE, HOUR, DAY, WEEK]

/** A duration: milliseconds as a number, or a string such as `500ms`, `15m`, `1h30m`, `1 minute`. */
export type DurationInput = number | string

/**
 * Converts a duration to milliseconds. Numbers are taken as milliseconds. Strings are one or more
 * `<number><unit>` parts with units `ms s m h d w`, e.g. `1h30m`, or the `ms` package's words
 * after spaces (`1 minute`, `2 hours`, `30 secs`, case-insensitive). Returns `undefined` for
 * anything else (a bare number string, negative, empty, unknown unit, non-finite), so callers can
 * report the option by name.
 */
export function parseDurationMs(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined
  if (typeof value !== 'string' || value.length === 0 || value.length > 64) return undefined
  const text = value.trim()
  DURATION_PART.lastIndex = 0
  let total = 0
  let consumed = 0
  let match: RegExpExecArray | null
  while ((match = DURATION_PART.exec(text)) !== null) {
    const unit = match.findIndex((group, i) => i > 1 && group !== undefined) - 2
    total += Number(match[1]) * (FACTORS[unit] as number)
    consumed = DURATION_PART.lastIndex
  }
  if (consumed === 0 || consumed !== text.length || !Number.isFinite(total)) return undefined
  return Math.round(total)
}

/**
 * Milliseconds in words, as the `ms` package's long format writes them (what @fastify/rate-limit
 * puts in "retry in ..."): `500 ms`, `1 second`, `30 seconds`, `2 minutes`, `1 hour`, `3 days`,
 * rounded to the largest unit that fits.
 */
export function formatDuration(ms: number): string {
  const abs = Math.abs(ms)
  if (abs < SECOND) return `${ms} ms`
  const [size, unit] =
    abs < MINUTE
      ? [SECOND, 'second']
      : abs < HOUR
        ? [MINUTE, 'minute']
        : abs < DAY
          ? [HOUR, 'hour']
          : abs < YEAR
            ? [DAY, 'day']
            : [YEAR, 'year']
  const n = Math.round(abs / size)
  return `${ms < 0 ? '-' : ''}${n} ${unit}${n === 1 ? '' : 's'}`
}

/**
 * The single value of a header as Node gives it (`string | string[] | undefined`): `undefined`
 * when absent, the string, or `undefined` plus `multiple` when the header was sent several times.
 */
export function singleHeaderValue(
  value: string | readonly string[] | undefined,
): string | undefined {
  if (value === undefined || typeof value === 'string') return value
  return value.length === 1 ? value[0] : undefined
}

/** Counts how often a header appears in Node's `rawHeaders` list (name case-insensitive). */
export function countRawHeader(rawHeaders: readonly string[], lowerName: string): number {
  let n = 0
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string
    if (name.length === lowerName.length && name.toLowerCase() === lowerName) n++
  }
  return n
}

/** Formats seconds for a header: a non-negative integer, rounded up (`Retry-After`, `RateLimit`). */
export function toHeaderSeconds(ms: number): string {
  return String(Math.max(0, Math.ceil(ms / SECOND)))
}

/**
 * Makes any text safe inside a quoted-string of an HTTP header (RFC 9110 §5.6.4): drops control
 * characters and non-ASCII, escapes `"` and `\`.
 */
export function toQuotedHeaderText(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '').replace(/["\\]/g, '\\$&')
}

/** The conversions, grouped as in the original design. */
export const TypeConverter: {
  readonly durationMs: typeof parseDurationMs
  readonly formatDuration: typeof formatDuration
  readonly singleHeaderValue: typeof singleHeaderValue
  readonly countRawHeader: typeof countRawHeader
  readonly toHeaderSeconds: typeof toHeaderSeconds
  readonly toQuotedHeaderText: typeof toQuotedHeaderText
} = Object.freeze({
  durationMs: parseDurationMs,
  formatDuration,
  singleHeaderValue,
  countRawHeader,
  toHeaderSeconds,
  toQuotedHeaderText,
})

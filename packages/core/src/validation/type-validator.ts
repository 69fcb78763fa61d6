/**
 * Option validation with precise error paths, e.g. `jwt.algorithms[1]: unknown algorithm "HS257"`.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { ConfigError } from '../errors.js'

/** One problem found while validating, located by a dotted path. */
export interface TypeValidationIssue {
  /** Where: `jwt.algorithms[1]`. */
  readonly path: string
  /** What is wrong, naming the received value. */
  readonly message: string
}

/** The result of validating a value: `ok` exactly when there are no issues. */
export interface TypeValidationResult {
  /** Whether the value passed. */
  readonly ok: boolean
  /** Every issue found (not only the first). */
  readonly issues: readonly TypeValidationIssue[]
  /** Unknown option names found, as warnings (with a suggestion when one is close). */
  readonly warnings: readonly string[]
}

/** Renders a received value for an error message, briefly and without throwing. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'undefined'
  if (value === null) return 'null'
  if (typeof value === 'string') {
    const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value
    return JSON.stringify(shown)
  }
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'bigint') return `${value}n`
  if (typeof value === 'symbol') return value.toString()
  if (Array.isArray(value)) return `an array of ${value.length}`
  if (typeof value === 'object') return 'an object'
  return String(value)
}

function levenshtein(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] as number
      row[j] = Math.min(
        (row[j] as number) + 1,
        (row[j - 1] as number) + 1,
        prev + (a[i - 1]?.toLowerCase() === b[j - 1]?.toLowerCase() ? 0 : 1),
      )
      prev = tmp
    }
  }
  return row[b.length] as number
}

/** The closest candidate to `name`, if any is close enough to be a likely typo. */
export function suggest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Math.max(2, Math.floor(name.length / 3)) + 1
  for (const candidate of candidates) {
    const d = levenshtein(name, candidate)
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  return best
}

/** Numeric bounds for {@link TypeValidator.integer} and {@link TypeValidator.number}. */
export interface NumberBounds {
  /** Smallest allowed value. */
  readonly min?: number
  /** Largest allowed value. */
  readonly max?: number
}

/**
 * Collects validation issues for one options object. Methods return the value when it is valid
 * (typed), or `undefined` after recording an issue, so callers resolve and validate in one pass.
 *
 * @example
 * ```ts
 * const v = new TypeValidator('jwt')
 * const skew = v.integer('clockToleranceSeconds', options.clockToleranceSeconds, { min: 0, max: 300 })
 * v.assert() // throws ConfigError listing every issue
 * ```
 */
export class TypeValidator {
  #issues: TypeValidationIssue[] = []
  #warnings: string[] = []
  readonly #base: string

  /** @param base - path prefix of every issue, e.g. `jwt`; empty for the top level. */
  constructor(base = '') {
    this.#base = base
  }

  /** The full path of a field under this validator. */
  path(field: string | number): string {
    if (typeof field === 'number') return `${this.#base}[${field}]`
    return this.#base === '' ? field : `${this.#base}.${field}`
  }

  /** A validator for a nested field, sharing this one's issues so one `assert()` reports all. */
  child(field: string | number): TypeValidator {
    const nested = new TypeValidator(this.path(field))
    nested.#issues = this.#issues
    nested.#warnings = this.#warnings
    return nested
  }

  /** Records an issue at `field`. Always returns `undefined`, for use in expressions. */
  fail(field: string | number, message: string): undefined {
    this.#issues.push({ path: this.path(field), message })
    return undefined
  }

  /** Records an unknown-key warning. */
  warn(message: string): void {
    this.#warnings.push(message)
  }

  /** A plain object (not an array, not null). */
  object(field: string | number, value: unknown): Record<string, unknown> | undefined {
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      return value as Record<string, unknown>
    }
    return this.fail(field, `must be an object, received ${describeValue(value)}`)
  }

  /** Warns about keys of `value` that are not in `known`, suggesting the closest known key. */
  knownKeys(value: Readonly<Record<string, unknown>>, known: readonly string[]): void {
    for (const key of Object.keys(value)) {
      if (known.includes(key)) continue
      const hint = suggest(key, known)
      this.warn(
        `${this.path(key)}: unknown option ${JSON.stringify(key)}` +
          (hint === undefined ? '' : `; did you mean ${JSON.stringify(hint)}?`),
      )
    }
  }

  /** A string, optionally non-empty and matching a pattern. */
  string(
    field: string | number,
    value: unknown,
    options: {
      readonly nonEmpty?: boolean
      readonly pattern?: RegExp
      readonly maxLength?: number
    } = {},
  ): string | undefined {
    if (typeof value !== 'string') {
      return this.fail(field, `must be a string, received ${describeValue(value)}`)
    }
    if ((options.nonEmpty ?? true) && value.length === 0)
      return this.fail(field, 'must not be empty')
    if (options.maxLength !== undefined && value.length > options.maxLength) {
      return this.fail(
        field,
        `must be at most ${options.maxLength} characters, received ${value.length}`,
      )
    }
    if (options.pattern !== undefined && !options.pattern.test(value)) {
      return this.fail(field, `must match ${options.pattern}, received ${describeValue(value)}`)
    }
    return value
  }

  /** A finite number within bounds. */
  number(field: string | number, value: unknown, bounds: NumberBounds = {}): number | undefined {
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      return this.fail(field, `must be a finite number, received ${describeValue(value)}`)
    }
    return this.#bounded(field, value, bounds, 'a number')
  }

  /** An optional integer within bounds: `fallback` when `value` is `undefined`. */
  integerOr(
    field: string | number,
    value: unknown,
    fallback: number | undefined,
    bounds: NumberBounds = {},
  ): number | undefined {
    return value === undefined ? fallback : this.integer(field, value, bounds)
  }

  /** An integer within bounds. */
  integer(field: string | number, value: unknown, bounds: NumberBounds = {}): number | undefined {
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
      return this.fail(field, `must be an integer, received ${describeValue(value)}`)
    }
    return this.#bounded(field, value, bounds, 'an integer')
  }

  #bounded(
    field: string | number,
    value: number,
    b: NumberBounds,
    kind: string,
  ): number | undefined {
    if (b.min !== undefined && value < b.min) {
      const what =
        b.min === 1 && kind === 'an integer' ? 'a positive integer' : `${kind} >= ${b.min}`
      return this.fail(field, `must be ${what}, received ${value}`)
    }
    if (b.max !== undefined && value > b.max) {
      return this.fail(field, `must be ${kind} <= ${b.max}, received ${value}`)
    }
    return value
  }

  /** A boolean. */
  boolean(field: string | number, value: unknown): boolean | undefined {
    if (typeof value === 'boolean') return value
    return this.fail(field, `must be a boolean, received ${describeValue(value)}`)
  }

  /** A function. */
  function<TFn extends (...args: never[]) => unknown>(
    field: string | number,
    value: unknown,
  ): TFn | undefined {
    if (typeof value === 'function') return value as TFn
    return this.fail(field, `must be a function, received ${describeValue(value)}`)
  }

  /** One of a fixed set of values. */
  oneOf<const TValue extends string>(
    field: string | number,
    value: unknown,
    allowed: readonly TValue[],
    noun = 'value',
  ): TValue | undefined {
    if (typeof value === 'string' && (allowed as readonly string[]).includes(value))
      return value as TValue
    const hint = typeof value === 'string' ? suggest(value, allowed) : undefined
    return this.fail(
      field,
      `unknown ${noun} ${describeValue(value)}; expected one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}` +
        (hint === undefined ? '' : ` (did you mean ${JSON.stringify(hint)}?)`),
    )
  }

  /** An array whose items each pass `item` (called with a validator positioned at the item). */
  array<TItem>(
    field: string | number,
    value: unknown,
    item: (v: TypeValidator, index: number, value: unknown) => TItem | undefined,
    options: { readonly nonEmpty?: boolean; readonly maxLength?: number } = {},
  ): TItem[] | undefined {
    if (!Array.isArray(value))
      return this.fail(field, `must be an array, received ${describeValue(value)}`)
    if (options.nonEmpty === true && value.length === 0)
      return this.fail(field, 'must not be empty')
    if (options.maxLength !== undefined && value.length > options.maxLength) {
      return this.fail(
        field,
        `must have at most ${options.maxLength} items, received ${value.length}`,
      )
    }
    const inner = this.child(field)
    const out: TItem[] = []
    let bad = false
    for (let i = 0; i < value.length; i++) {
      const r = item(inner, i, value[i])
      if (r === undefined) bad = true
      else out.push(r)
    }
    return bad ? undefined : out
  }

  /** The result so far. */
  result(): TypeValidationResult {
    const issues = this.#issues
    return { ok: issues.length === 0, issues: [...issues], warnings: [...this.#warnings] }
  }

  /**
   * Throws a {@link ConfigError} listing every issue, if there is any; otherwise reports unknown
   * keys through `warn` (once each) and returns.
   * @throws {ConfigError}
   */
  assert(warn?: (message: string) => void): void {
    const issues = this.#issues
    if (issues.length > 0) {
      throw new ConfigError(issues.map((i) => `${i.path}: ${i.message}`))
    }
    if (warn !== undefined) for (const w of this.#warnings) warn(w)
  }
}

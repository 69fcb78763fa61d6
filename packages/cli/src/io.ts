/**
 * What every command shares: output (human tables by default, JSON with `--json`), error printing
 * (one clear line on stderr, a stack only with `--debug`) and the exit codes.
 *
 * Reachable from `@portcullis/cli`.
 * @packageDocumentation
 */
import { isAuthError } from '@portcullis/core'
import { CommanderError, InvalidArgumentError, type Command } from 'commander'

/** The hint printed after a usage error. */
export const USAGE_HINT = '(add --help for usage)'

/** Exit code of a command that did what was asked. */
export const EXIT_OK = 0
/** Exit code of a command that failed (unknown key, store unavailable, unexpected error). */
export const EXIT_FAILURE = 1
/** Exit code of a command line that is wrong (unknown flag, bad value, missing argument). */
export const EXIT_USAGE = 2

/** Where a run writes, and what it reads from the environment. Tests pass their own. */
export interface CliIo {
  /** Receives normal output (tables, JSON, keys). */
  readonly stdout: (text: string) => void
  /** Receives errors, warnings and help shown after an error. */
  readonly stderr: (text: string) => void
  /** Environment variables (`PORTCULLIS_DB`, `PORTCULLIS_PEPPER`, ...). */
  readonly env: Readonly<Record<string, string | undefined>>
  /** Working directory that relative paths are resolved against. */
  readonly cwd: string
}

/** The global flags every command sees (`portcullis --json keys list` or `portcullis keys list --json`). */
export interface GlobalOptions {
  readonly json?: boolean
  readonly debug?: boolean
  readonly db?: string
  readonly postgres?: string
  readonly pepperFile?: string
  readonly config?: string
  readonly redis?: string
}

/**
 * What a command module receives at registration: the I/O and the helpers to print and fail. A
 * command reads its global flags with {@link CliContext.globals} inside its action.
 */
export interface CliContext {
  readonly io: CliIo
  /** The global options, merged from the root program (call inside an action). */
  globals(command: Command): GlobalOptions
  /** Prints `value` as JSON with `--json`, otherwise calls `human()` and prints its text. */
  output(command: Command, value: unknown, human: () => string): void
  /**
   * Reports a failure that must not stop the command (its output, e.g. a new key, still has to
   * be printed): prints `error: message` on stderr now, and the run exits 1 at the end.
   */
  failLater(message: string): void
  /** Whether {@link CliContext.failLater} was called. */
  readonly failed: boolean
}

/** A failure a command reports on purpose: its message is printed as is, with its exit code. */
export class CliError extends Error {
  /** {@link EXIT_FAILURE} or {@link EXIT_USAGE}. */
  readonly exitCode: number

  constructor(message: string, exitCode: number = EXIT_FAILURE, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'CliError'
    this.exitCode = exitCode
  }
}

/** A command line that is wrong in a way commander cannot see (conflicting flags, missing value). */
export function usageError(message: string): CliError {
  return new CliError(message, EXIT_USAGE)
}

/**
 * Turns a flag value parser into a commander argument parser: `undefined` from `parse` rejects the
 * value with `message`, which commander prints as `option '--x <v>' argument 'y' is invalid. message`
 * (exit code 2).
 */
export function argParser<TValue>(
  parse: (value: string) => TValue | undefined,
  message: string,
): (value: string) => TValue {
  return (value) => {
    const parsed = parse(value)
    if (parsed === undefined) throw new InvalidArgumentError(message)
    return parsed
  }
}

/** A repeatable flag (`--scope a --scope b`, also `--scope a,b`), each item checked by `parse`. */
export function listParser(
  parse: (value: string) => string | undefined,
  message: string,
): (value: string, previous: readonly string[] | undefined) => string[] {
  return (value, previous) => {
    const items = value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '')
    const out = [...(previous ?? [])]
    for (const item of items) {
      const parsed = parse(item)
      if (parsed === undefined)
        throw new InvalidArgumentError(`${JSON.stringify(item)}: ${message}`)
      if (!out.includes(parsed)) out.push(parsed)
    }
    return out
  }
}

/** Pads cells into aligned columns: the human form of a list. An empty list prints `empty`. */
export function formatTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  empty = '(none)',
): string {
  if (rows.length === 0) return `${empty}\n`
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd()
  return [line(headers), ...rows.map(line)].join('\n') + '\n'
}

/** `label: value` lines with aligned values: the human form of one record. */
export function formatFields(fields: readonly (readonly [string, string])[]): string {
  const width = Math.max(...fields.map(([k]) => k.length)) + 1
  return fields.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`).join('\n') + '\n'
}

/** An epoch-ms instant as ISO 8601 (UTC), or `never`/`-` for none. */
export function formatInstant(ms: number | null | undefined, none = '-'): string {
  return ms === null || ms === undefined ? none : new Date(ms).toISOString()
}

/** Builds the {@link CliContext} of a run. */
export function createCliContext(io: CliIo): CliContext {
  const globals = (command: Command): GlobalOptions => command.optsWithGlobals<GlobalOptions>()
  let failed = false
  return {
    io,
    globals,
    output(command, value, human) {
      io.stdout(globals(command).json === true ? `${JSON.stringify(value, null, 2)}\n` : human())
    },
    failLater(message) {
      failed = true
      io.stderr(`error: ${message}\n`)
    },
    get failed() {
      return failed
    },
  }
}

/**
 * The exit code for an error a run ended with, after printing it: commander's own (help, version,
 * usage), a {@link CliError}, a Portcullis error (`ERR_CONFIG_INVALID` or `ERR_APIKEY_NONCOMPLIANT`
 * for a value the library refused is a usage error), or anything else (a failure). Stacks are
 * printed only with `debug`.
 */
export function reportError(io: CliIo, error: unknown, debug: boolean): number {
  if (error instanceof CommanderError) {
    // Commander already printed its message (and help); only the code is left to decide.
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version')
      return EXIT_OK
    return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE
  }
  const code = error instanceof CliError ? error.exitCode : exitCodeOf(error)
  const message = error instanceof Error ? error.message : String(error)
  const label = isAuthError(error) ? ` [${error.code}]` : ''
  io.stderr(`error${label}: ${message}\n`)
  if (debug && error instanceof Error && error.stack !== undefined) io.stderr(`${error.stack}\n`)
  else if (code === EXIT_USAGE) io.stderr(`${USAGE_HINT}\n`)
  return code
}

// Input the library refused (an invalid value, or one a compliance rule forbids) is the command
// line's fault: a usage error. Everything else (store down, corrupt data) is a failure.
const USAGE_CODES: ReadonlySet<string> = new Set(['ERR_CONFIG_INVALID', 'ERR_APIKEY_NONCOMPLIANT'])

function exitCodeOf(error: unknown): number {
  return isAuthError(error) && USAGE_CODES.has(error.code) ? EXIT_USAGE : EXIT_FAILURE
}

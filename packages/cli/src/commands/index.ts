/**
 * The registration point of every `portcullis` command group.
 *
 * Contract: each command module (`src/commands/<name>.ts`) exports
 *
 * ```ts
 * export function register(program: Command, context: CliContext): void
 * ```
 *
 * which adds its command group to `program` (e.g. `program.command('keys')` with subcommands).
 * Actions are `async`, print through `context.output()` (human text, or JSON with `--json`), and
 * signal failure by throwing: a `CliError` (from `../io.js`) with `EXIT_FAILURE` or `EXIT_USAGE`,
 * `usageError(message)` for a bad combination of flags, or commander's `InvalidArgumentError`
 * (use `argParser()`/`listParser()` from `../io.js`) for a bad flag value. Never call
 * `process.exit()` or write to `process.stdout` directly: `runCli()` owns the exit code and the
 * output streams, so that tests can run the program in-process. Resources a command opens (a store)
 * are closed by the command in a `finally`.
 *
 * To add a command group, add ONE line below: `export * as <name> from './<name>.js'`. The program
 * registers the modules in the order of their names.
 *
 * Reachable from `@portcullis/cli`.
 * @packageDocumentation
 */
export * as audit from './audit.js'
export * as keys from './keys.js'
export * as policy from './policy.js'
export * as tokens from './tokens.js'

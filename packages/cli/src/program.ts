/**
 * The `portcullis` program: global flags, every registered command group, and {@link runCli}, which
 * runs one command line and returns its exit code (0 ok, 1 failure, 2 usage error).
 *
 * Reachable from `@portcullis/cli`.
 * @packageDocumentation
 */
import { readFileSync } from 'node:fs'
import { Command } from 'commander'
import * as commands from './commands/index.js'
import {
  EXIT_FAILURE,
  EXIT_OK,
  USAGE_HINT,
  createCliContext,
  reportError,
  type CliContext,
  type CliIo,
} from './io.js'

function packageVersion(): string {
  try {
    const text = readFileSync(new URL('../package.json', import.meta.url), 'utf8')
    return (JSON.parse(text) as { version?: string }).version ?? '0.0.0'
  } catch {
    return '0.0.0'
  }
}

/**
 * Builds the commander program with the global flags and every command group listed in
 * `src/commands/index.ts`. Errors never exit the process: commander throws (`exitOverride`), and
 * {@link runCli} turns that into an exit code.
 */
export function createProgram(context: CliContext): Command {
  const { io } = context
  const program = new Command('portcullis')
  program
    .description('Manage Portcullis API keys, policies and audit trails.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('--json', 'print JSON for scripts instead of human tables')
    .option('--debug', 'print stack traces of unexpected errors')
    .option(
      '--db <path>',
      'SQLite key store file (env PORTCULLIS_DB) (default: ".portcullis/keys.db")',
    )
    .option(
      '--postgres <url>',
      'PostgreSQL key store instead of SQLite (env PORTCULLIS_POSTGRES_URL)',
    )
    .option(
      '--redis <url>',
      'publish key changes on this Redis so running gates drop cached copies at once (env PORTCULLIS_REDIS_URL)',
    )
    .option(
      '--config <path>',
      'JSON or YAML settings, e.g. keys.compliance and keys.prefix (env PORTCULLIS_CONFIG)',
    )
    .option(
      '--pepper-file <path>',
      'file holding the pepper that keys the hashes (env PORTCULLIS_PEPPER)',
    )
    // Settings below are copied to every subcommand created afterwards.
    .exitOverride()
    .showHelpAfterError(USAGE_HINT)
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .configureOutput({
      writeOut: (s) => io.stdout(s),
      writeErr: (s) => io.stderr(s),
    })
  for (const name of Object.keys(commands).sort()) {
    const module = (commands as Record<string, { register(p: Command, c: CliContext): void }>)[name]
    module?.register(program, context)
  }
  return program
}

/** The process's own I/O: stdout, stderr, `process.env` and `process.cwd()`. */
export function processIo(): CliIo {
  return {
    stdout: (text) => void process.stdout.write(text),
    stderr: (text) => void process.stderr.write(text),
    env: process.env,
    cwd: process.cwd(),
  }
}

/**
 * Runs one `portcullis` command line (without the `node` and script arguments) and resolves to its
 * exit code: 0 ok, 1 failure, 2 usage error. Never rejects and never exits the process.
 * @example
 * ```ts
 * import { runCli } from '@portcullis/cli'
 * process.exitCode = await runCli(['keys', 'list', '--json'])
 * ```
 */
export async function runCli(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  const context = createCliContext(io)
  const program = createProgram(context)
  try {
    await program.parseAsync([...argv], { from: 'user' })
    return context.failed ? EXIT_FAILURE : EXIT_OK
  } catch (error) {
    return reportError(io, error, argv.includes('--debug'))
  }
}

/**
 * `@portcullis/cli`: the `portcullis` command (`portcullis keys ...`) and its building blocks, for
 * running it in-process or adding command groups.
 *
 * @example
 * ```ts
 * import { runCli } from '@portcullis/cli'
 * const code = await runCli(['keys', 'list', '--json', '--db', './data/keys.db'])
 * ```
 * @packageDocumentation
 */
export { createProgram, processIo, runCli } from './program.js'
export {
  CliError,
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  USAGE_HINT,
  argParser,
  createCliContext,
  formatFields,
  formatInstant,
  formatTable,
  listParser,
  reportError,
  usageError,
  type CliContext,
  type CliIo,
  type GlobalOptions,
} from './io.js'
export {
  DEFAULT_CLI_DB_PATH,
  keysConfig,
  openKeyStore,
  readCliConfig,
  readPepper,
  requirePepper,
  resolveStoreLocation,
  type CliKeysConfig,
  type OpenedKeyStore,
} from './store.js'

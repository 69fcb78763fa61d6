/**
 * The configured key store and pepper of a run: SQLite by default (`--db`, `PORTCULLIS_DB`,
 * `.portcullis/keys.db`), PostgreSQL with `--postgres URL` (`PORTCULLIS_POSTGRES_URL`), and the pepper
 * from `--pepper-file` or `PORTCULLIS_PEPPER`. Both stores are optional peers, imported only when a
 * command opens one, so the CLI runs with whichever of them is installed.
 *
 * Reachable from `@portcullis/cli`.
 * @packageDocumentation
 */
import { mkdirSync, readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { AuditEvent, KeyStore, Logger, MessageBroker, Pepper } from '@portcullis/core'
import { parse as parseYaml } from 'yaml'
import { CliError, EXIT_FAILURE, usageError, type CliIo, type GlobalOptions } from './io.js'

/** SQLite file used when neither `--db` nor `PORTCULLIS_DB` is given (relative to the cwd). */
export const DEFAULT_CLI_DB_PATH = '.portcullis/keys.db'

/** An open store and how to close it. */
export interface OpenedKeyStore {
  readonly store: KeyStore
  /** `sqlite:<path>` or `postgres:<host/db>` (never the password), for messages. */
  readonly description: string
  close(): Promise<void>
}

/** What the CLI uses of `@portcullis/sqlite`, an optional peer loaded by {@link loadSqlite}. */
export interface CliSqliteModule {
  createSqliteKeyStore(options: { readonly database: string }): KeyStore & {
    close(): Promise<void>
  }
  readSqliteAuditEvents(path: string, options?: { readonly tablePrefix?: string }): AuditEvent[]
}

/** The command that installs what the SQLite store needs, as the CLI prints it when missing. */
export const SQLITE_INSTALL_COMMAND = 'npm install @portcullis/sqlite better-sqlite3'

/**
 * Imports `@portcullis/sqlite` (and through it `better-sqlite3`), the optional peers behind the
 * default key store and `audit --sqlite`.
 *
 * @param what - what needs SQLite, for the message, e.g. `'--sqlite'`.
 * @throws {CliError} exit code 1, saying exactly what to install, when either is missing.
 */
export async function loadSqlite(what: string): Promise<CliSqliteModule> {
  // A variable specifier: TypeScript and bundlers leave the optional peer alone; the annotation
  // still checks at build time that the package offers what CliSqliteModule says.
  const specifier = '@portcullis/sqlite'
  let mod: typeof import('@portcullis/sqlite')
  try {
    mod = (await import(specifier)) as typeof import('@portcullis/sqlite')
  } catch (cause) {
    const missing = (cause as { code?: unknown } | null)?.code === 'ERR_MODULE_NOT_FOUND'
    throw new CliError(
      missing
        ? `${what} needs @portcullis/sqlite and better-sqlite3, which are not installed: ${SQLITE_INSTALL_COMMAND}`
        : `cannot load @portcullis/sqlite for ${what}: ${(cause as Error).message ?? String(cause)}`,
      EXIT_FAILURE,
      { cause },
    )
  }
  return mod
}

interface PostgresModule {
  createPostgresKeyStore(options: { readonly connectionString: string }): KeyStore & {
    ready?: () => Promise<void>
    close?: () => Promise<void>
  }
}

/** Where the keys live, from the flags and the environment (flags win). */
export function resolveStoreLocation(
  globals: GlobalOptions,
  io: CliIo,
):
  | { readonly kind: 'sqlite'; readonly path: string }
  | { readonly kind: 'postgres'; readonly url: string } {
  if (globals.db !== undefined && globals.postgres !== undefined)
    throw usageError('--db and --postgres name two different stores; give one')
  const url =
    globals.postgres ?? (globals.db === undefined ? io.env.PORTCULLIS_POSTGRES_URL : undefined)
  if (url !== undefined && url !== '') {
    if (!/^postgres(?:ql)?:\/\//.test(url))
      throw usageError(`--postgres must be a postgres:// or postgresql:// URL`)
    return { kind: 'postgres', url }
  }
  const path = globals.db ?? (io.env.PORTCULLIS_DB || undefined) ?? DEFAULT_CLI_DB_PATH
  if (path === '') throw usageError('--db must not be empty')
  return { kind: 'sqlite', path: path === ':memory:' ? path : resolve(io.cwd, path) }
}

/**
 * Opens the configured store. Each store's package is loaded only when asked for, so the CLI runs
 * where `@portcullis/postgres` and `pg`, or `@portcullis/sqlite` and `better-sqlite3`, are not
 * installed; a missing one fails with exit code 1 and the `npm install` line that adds it.
 */
export async function openKeyStore(globals: GlobalOptions, io: CliIo): Promise<OpenedKeyStore> {
  const location = resolveStoreLocation(globals, io)
  if (location.kind === 'sqlite') {
    // Loaded before the folder is made: a missing module must not leave an empty .portcullis/.
    const { createSqliteKeyStore } = await loadSqlite('the SQLite key store (the default)')
    if (location.path !== ':memory:') mkdirSync(dirname(location.path), { recursive: true })
    const store = openOrFail(() => createSqliteKeyStore({ database: location.path }))
    return { store, description: `sqlite:${location.path}`, close: () => store.close() }
  }
  let mod: Partial<PostgresModule>
  // A variable specifier: TypeScript and bundlers leave the optional dependency alone.
  const specifier = '@portcullis/postgres'
  try {
    mod = (await import(specifier)) as Partial<PostgresModule>
  } catch (cause) {
    throw new CliError(
      '--postgres needs @portcullis/postgres and pg: npm install @portcullis/postgres pg',
      EXIT_FAILURE,
      { cause },
    )
  }
  if (typeof mod.createPostgresKeyStore !== 'function')
    throw new CliError('this @portcullis/postgres has no createPostgresKeyStore()', EXIT_FAILURE)
  const create = mod.createPostgresKeyStore
  const store = openOrFail(() => create({ connectionString: location.url }))
  try {
    // Connects and migrates now, so an unreachable database is one clear error up front.
    await store.ready?.()
  } catch (cause) {
    await store.close?.().catch(() => undefined)
    throw new CliError(
      `cannot open the key store postgres:${describeUrl(location.url)}: ${(cause as Error).message ?? String(cause)}`,
      EXIT_FAILURE,
      { cause },
    )
  }
  return {
    store,
    description: `postgres:${describeUrl(location.url)}`,
    close: async () => {
      await store.close?.()
    },
  }
}

function openOrFail<TStore>(open: () => TStore): TStore {
  try {
    return open()
  } catch (cause) {
    throw new CliError(
      `cannot open the key store: ${(cause as Error).message ?? String(cause)}`,
      EXIT_FAILURE,
      { cause },
    )
  }
}

function describeUrl(url: string): string {
  try {
    const u = new URL(url)
    return `${u.host}${u.pathname}`
  } catch {
    return '(url)'
  }
}

/**
 * The pepper from `--pepper-file` (the file's text, a trailing newline dropped; or a JSON list of
 * `{ id, secret }`, current first, for pepper rotation) or `PORTCULLIS_PEPPER`; `undefined` if
 * neither is given.
 */
export function readPepper(globals: GlobalOptions, io: CliIo): string | Pepper[] | undefined {
  if (globals.pepperFile !== undefined) {
    let text: string
    try {
      text = readFileSync(resolve(io.cwd, globals.pepperFile), 'utf8')
    } catch (cause) {
      throw new CliError(
        `cannot read --pepper-file ${JSON.stringify(globals.pepperFile)}: ${(cause as Error).message}`,
        EXIT_FAILURE,
        { cause },
      )
    }
    const trimmed = text.replace(/\r?\n$/, '')
    if (trimmed.trimStart().startsWith('[')) {
      try {
        return JSON.parse(trimmed) as Pepper[]
      } catch {
        throw usageError('--pepper-file starts with "[" but is not a JSON list of { id, secret }')
      }
    }
    return trimmed
  }
  const env = io.env.PORTCULLIS_PEPPER
  return env === undefined || env === '' ? undefined : env
}

/** The pepper, or a usage error saying how to give one. */
export function requirePepper(globals: GlobalOptions, io: CliIo, what: string): string | Pepper[] {
  const pepper = readPepper(globals, io)
  if (pepper === undefined)
    throw usageError(
      `${what} needs the pepper the gate uses: pass --pepper-file PATH or set PORTCULLIS_PEPPER`,
    )
  return pepper
}

/**
 * A throwaway pepper for commands that never hash a key (list, show, update, revoke, due): the
 * manager insists on one at creation, and these commands must work without the real secret.
 */
export function unusedPepper(): Pepper[] {
  return [{ id: 'cli-unused', secret: randomBytes(32) }]
}

/**
 * The settings file from `--config` or `PORTCULLIS_CONFIG` (JSON or YAML; `{}` when neither is
 * given). Each command group reads its own section (`keys`: `prefix`, `testPrefix`, `compliance`
 * as in `createApiKeyManager`); sections are validated by the code that uses them.
 */
export function readCliConfig(
  globals: GlobalOptions,
  io: CliIo,
): Readonly<Record<string, unknown>> {
  const path = globals.config ?? io.env.PORTCULLIS_CONFIG
  if (path === undefined || path === '') return {}
  let text: string
  try {
    text = readFileSync(resolve(io.cwd, path), 'utf8')
  } catch (cause) {
    throw new CliError(
      `cannot read --config ${JSON.stringify(path)}: ${(cause as Error).message}`,
      EXIT_FAILURE,
      { cause },
    )
  }
  let parsed: unknown
  try {
    // YAML 1.2 is a superset of JSON: one parser reads both.
    parsed = parseYaml(text)
  } catch (cause) {
    throw usageError(
      `--config ${JSON.stringify(path)} is not valid JSON or YAML: ${(cause as Error).message}`,
    )
  }
  if (parsed === null || parsed === undefined) return {}
  if (typeof parsed !== 'object' || Array.isArray(parsed))
    throw usageError(`--config ${JSON.stringify(path)} must hold an object of sections, e.g. keys:`)
  return parsed as Record<string, unknown>
}

/** The `keys` section of the settings file: options of `createApiKeyManager` the CLI passes on. */
export interface CliKeysConfig {
  readonly prefix?: string
  readonly testPrefix?: string
  readonly compliance?: Readonly<Record<string, unknown>>
}

const KEYS_CONFIG_NAMES = ['prefix', 'testPrefix', 'compliance']

/** Reads and checks the `keys` section (unknown fields are refused, so a typo cannot drop a rule). */
export function keysConfig(config: Readonly<Record<string, unknown>>): CliKeysConfig {
  const section = config.keys
  if (section === undefined || section === null) return {}
  if (typeof section !== 'object' || Array.isArray(section))
    throw usageError('--config: keys must be an object (prefix, testPrefix, compliance)')
  for (const name of Object.keys(section))
    if (!KEYS_CONFIG_NAMES.includes(name))
      throw usageError(
        `--config: unknown setting keys.${name}; known: ${KEYS_CONFIG_NAMES.join(', ')}`,
      )
  return section as CliKeysConfig
}

/** How long {@link openBroker} waits for Redis before giving up. */
export const CLI_REDIS_CONNECT_TIMEOUT_MS = 5_000

/** A broker that publishes the CLI's key changes, and whether any publish failed. */
export interface OpenedBroker {
  readonly broker: MessageBroker
  /** Messages of failed publishes so far (other instances missed them). */
  readonly failures: readonly string[]
  close(): Promise<void>
}

interface RedisModule {
  createRedisBroker(options: {
    readonly subscriber: string
    readonly pingIntervalMs?: number
    readonly logger?: Logger
  }): MessageBroker & { ready(): Promise<void>; close(): Promise<void> }
}

/**
 * Connects to Redis (`--redis`, `PORTCULLIS_REDIS_URL`) through `@portcullis/redis`'s broker, so
 * that revocations, rotations and updates reach every running gate at once instead of when their
 * cached copies expire; `undefined` when neither is given. Fails (exit 1) when Redis cannot be
 * reached within {@link CLI_REDIS_CONNECT_TIMEOUT_MS}, before anything is changed.
 */
export async function openBroker(
  globals: GlobalOptions,
  io: CliIo,
): Promise<OpenedBroker | undefined> {
  const url = globals.redis ?? io.env.PORTCULLIS_REDIS_URL
  if (url === undefined || url === '') return undefined
  if (!/^rediss?:\/\//.test(url)) throw usageError('--redis must be a redis:// or rediss:// URL')
  let mod: Partial<RedisModule>
  const specifier = '@portcullis/redis'
  try {
    mod = (await import(specifier)) as Partial<RedisModule>
  } catch (cause) {
    throw new CliError(
      '--redis needs @portcullis/redis and ioredis: npm install @portcullis/redis ioredis',
      EXIT_FAILURE,
      { cause },
    )
  }
  if (typeof mod.createRedisBroker !== 'function')
    throw new CliError('this @portcullis/redis has no createRedisBroker()', EXIT_FAILURE)
  const failures: string[] = []
  const logger: Logger = {
    warn: (_fields, message) => void failures.push(message),
    error: (_fields, message) => void failures.push(message),
  }
  const broker = mod.createRedisBroker({ subscriber: url, pingIntervalMs: 0, logger })
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      broker.ready(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${CLI_REDIS_CONNECT_TIMEOUT_MS} ms`)),
          CLI_REDIS_CONNECT_TIMEOUT_MS,
        )
      }),
    ])
  } catch (cause) {
    await broker.close().catch(() => undefined)
    throw new CliError(
      `cannot reach Redis at ${describeUrl(url)}: ${(cause as Error).message ?? String(cause)}; nothing was changed`,
      EXIT_FAILURE,
      { cause },
    )
  } finally {
    clearTimeout(timer)
  }
  return { broker, failures, close: () => broker.close() }
}

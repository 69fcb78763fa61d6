/**
 * Hot reload of policy sets: from a file, from any loader, or when another instance announces a
 * new set on the message broker (`policy.changed`). A new set is compiled completely before it
 * replaces the old one in a single reference swap, so each evaluation sees the old set or the new
 * one, never a mix; a set that does not compile is refused, the old one keeps running and the
 * reasons are logged.
 *
 * Reachable from `@portcullis/core`.
 * @packageDocumentation
 */
import { readFileSync, watch, type FSWatcher } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { isConfigError } from '../errors.js'
import { unrefTimeout } from '../internal/clock.js'
import type { MessageBroker } from '../integrations/message-broker.js'
import { parseStrictJson } from '../internal/strict-json.js'
import { silentLogger, type Logger } from '../logger.js'
import { TypeValidator } from '../validation/type-validator.js'
import { compilePolicySet, type CompiledPolicySet } from './compile.js'
import type { PolicySource } from './access-manager.js'
import type { PolicySetInput } from './model.js'

/** Parses a policy file's text. */
export type PolicyParser = (text: string, file: string) => unknown

/** Options of {@link createPolicyStore}. */
export interface PolicyStoreOptions {
  /** The set to start with (data or compiled). Required unless `file` is given. */
  readonly initial?: PolicySetInput | CompiledPolicySet
  /** A policy file, read at creation (synchronously) and on each reload. */
  readonly file?: string
  /** Parses the file. @default strict JSON (YAML: pass `(text) => YAML.parse(text)` from `yaml`) */
  readonly parse?: PolicyParser
  /** Loads the set on reload (a database, a config service); used instead of `file`. */
  readonly load?: () => Promise<unknown>
  /** Reload when the file changes (debounced). @default false */
  readonly watch?: boolean
  /** Spreads reloads: a reload here publishes `policy.changed`; a message from elsewhere reloads here. */
  readonly broker?: MessageBroker
  /** Logger for refused reloads. @default silent */
  readonly logger?: Logger
}

/** The outcome of a reload. */
export type PolicyReloadResult =
  | { readonly ok: true; readonly changed: boolean; readonly version: string }
  | { readonly ok: false; readonly errors: readonly string[]; readonly version: string }

/** Holds the compiled set in force and swaps it atomically on reload. */
export interface PolicyStore extends PolicySource {
  /** The set in force. */
  readonly current: CompiledPolicySet
  /** Reloads from the file or loader; keeps the current set when the new one is bad. */
  reload(): Promise<PolicyReloadResult>
  /** Installs a set given as data; keeps the current set when it is bad. */
  update(input: unknown): PolicyReloadResult
  /** Stops watching and unsubscribes. */
  close(): void
}

const jsonParser: PolicyParser = (text) => parseStrictJson(text)

/**
 * Creates a policy store.
 * @throws {ConfigError} when the initial set (or file) is invalid: a service must not start
 *   without a valid policy
 * @example
 * ```ts
 * import YAML from 'yaml'
 * const policies = createPolicyStore({ file: 'policy.yaml', parse: (t) => YAML.parse(t), broker, watch: true })
 * const gate = createGate({ jwt, policy: createAccessManager({ policy: policies }) })
 * ```
 */
export function createPolicyStore(options: Readonly<PolicyStoreOptions>): PolicyStore {
  const v = new TypeValidator()
  v.knownKeys(options as Record<string, unknown>, [
    'initial',
    'file',
    'parse',
    'load',
    'watch',
    'broker',
    'logger',
  ])
  const file = options.file === undefined ? undefined : v.string('file', options.file)
  const parse =
    options.parse === undefined
      ? jsonParser
      : (v.function<PolicyParser>('parse', options.parse) ?? jsonParser)
  const load =
    options.load === undefined
      ? undefined
      : v.function<() => Promise<unknown>>('load', options.load)
  const doWatch = options.watch === undefined ? false : (v.boolean('watch', options.watch) ?? false)
  if (options.initial === undefined && file === undefined)
    v.fail('initial', 'give an initial set or a file')
  if (doWatch && file === undefined) v.fail('watch', 'needs a file')
  const logger = options.logger ?? silentLogger
  v.assert((m) => logger.warn({}, `policy store: ${m}`))
  const readSync = (): unknown =>
    parseFile(readFileSync(file as string, 'utf8'), file as string, parse)
  const initial = compilePolicySet(
    options.initial ?? readSync(),
    file === undefined ? {} : { file },
  )
  return new Store(initial, { file, parse, load, watch: doWatch, broker: options.broker, logger })
}

function parseFile(text: string, file: string, parse: PolicyParser): unknown {
  try {
    return parse(text, file)
  } catch (error) {
    throw new Error(
      `${file}: malformed policy file: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    )
  }
}

interface StoreConfig {
  readonly file: string | undefined
  readonly parse: PolicyParser
  readonly load: (() => Promise<unknown>) | undefined
  readonly watch: boolean
  readonly broker: MessageBroker | undefined
  readonly logger: Logger
}

class Store implements PolicyStore {
  #current: CompiledPolicySet
  readonly #c: StoreConfig
  readonly #unsubscribe: (() => void) | undefined
  #watcher: FSWatcher | undefined
  #timer: NodeJS.Timeout | undefined
  // Reloads run one at a time, in order; a burst of triggers collapses into one more reload.
  #running: Promise<PolicyReloadResult> | undefined
  #again = false

  constructor(initial: CompiledPolicySet, config: StoreConfig) {
    this.#current = initial
    this.#c = config
    this.#unsubscribe = config.broker?.subscribe('policy.changed', (m) => {
      if (m.version !== this.#current.version) void this.#reload(false)
    })
    if (config.watch && config.file !== undefined) {
      this.#watcher = watch(config.file, () => {
        if (this.#timer !== undefined) clearTimeout(this.#timer)
        this.#timer = unrefTimeout(() => void this.reload(), 50)
      })
      this.#watcher.unref()
    }
  }

  get current(): CompiledPolicySet {
    return this.#current
  }

  update(input: unknown): PolicyReloadResult {
    return this.#install(input, true)
  }

  reload(): Promise<PolicyReloadResult> {
    return this.#reload(true)
  }

  #reload(announce: boolean): Promise<PolicyReloadResult> {
    if (this.#running !== undefined) {
      this.#again = true
      return this.#running
    }
    const run = async (): Promise<PolicyReloadResult> => {
      let result: PolicyReloadResult
      do {
        this.#again = false
        result = await this.#fetchAndInstall(announce)
      } while (this.#again)
      return result
    }
    this.#running = run().finally(() => {
      this.#running = undefined
    })
    return this.#running
  }

  async #fetchAndInstall(announce: boolean): Promise<PolicyReloadResult> {
    const { file, load, parse } = this.#c
    let input: unknown
    try {
      if (load !== undefined) input = await load()
      else if (file !== undefined) input = parseFile(await readFile(file, 'utf8'), file, parse)
      else return { ok: true, changed: false, version: this.#current.version }
    } catch (error) {
      return this.#refuse([error instanceof Error ? error.message : String(error)])
    }
    return this.#install(input, announce)
  }

  #install(input: unknown, announce: boolean): PolicyReloadResult {
    let next: CompiledPolicySet
    try {
      next = compilePolicySet(input, this.#c.file === undefined ? {} : { file: this.#c.file })
    } catch (error) {
      return this.#refuse(
        isConfigError(error) ? (error as { issues: readonly string[] }).issues : [String(error)],
      )
    }
    if (next.version === this.#current.version)
      return { ok: true, changed: false, version: next.version }
    // The swap: one reference assignment. Evaluations read `current` once each.
    this.#current = next
    this.#c.logger.warn(
      { version: next.version, rules: next.rules.length, warnings: next.warnings.length },
      'policy store: new policy set in force',
    )
    if (announce && this.#c.broker !== undefined) {
      this.#c.broker
        .publish('policy.changed', { version: next.version })
        .catch((error: unknown) =>
          this.#c.logger.error(
            { error: String(error) },
            'policy store: could not announce the new set',
          ),
        )
    }
    return { ok: true, changed: true, version: next.version }
  }

  #refuse(errors: readonly string[]): PolicyReloadResult {
    this.#c.logger.error(
      { version: this.#current.version, errors },
      'policy store: new policy set refused; the previous set stays in force',
    )
    return { ok: false, errors, version: this.#current.version }
  }

  close(): void {
    this.#unsubscribe?.()
    this.#watcher?.close()
    if (this.#timer !== undefined) clearTimeout(this.#timer)
  }
}

/**
 * `portcullis keys create|list|show|update|rotate|revoke|import|due`: the API-key lifecycle of core's
 * `createApiKeyManager`, against the configured store.
 *
 * Reachable from `@portcullis/cli`.
 * @packageDocumentation
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import {
  apiKeyStatus,
  createApiKeyManager,
  parseApiKeyId,
  parseDurationMs,
  parseRoleId,
  parseUserId,
  type ApiKeyId,
  type ApiKeyListQuery,
  type ApiKeyManager,
  type ApiKeyRecord,
  type ApiKeyStoredStatus,
  type ApiKeyUsagePolicyInput,
  type UserID,
} from '@portcullis/core'
import { InvalidArgumentError, Option, type Command } from 'commander'
import {
  CliError,
  EXIT_FAILURE,
  argParser,
  formatFields,
  formatInstant,
  formatTable,
  listParser,
  usageError,
  type CliContext,
} from '../io.js'
import {
  keysConfig,
  openBroker,
  openKeyStore,
  readCliConfig,
  readPepper,
  requirePepper,
  unusedPepper,
} from '../store.js'

// RFC 6749 §3.3 scope-token: printable ASCII except space, `"` and `\`.
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]{1,256}$/
// Core's tag: printable ASCII, inner spaces allowed; commas split repeated values here.
const TAG = /^[\x21-\x7e](?:[\x20-\x7e]{0,62}[\x21-\x7e])?$/
const SHA256_HEX = /^[0-9a-fA-F]{64}$/
const MAX_LIST_LIMIT = 1000

const keyIdArg = argParser<ApiKeyId>(
  parseApiKeyId,
  'must be a key id: the 16 letters and digits after the prefix (see `portcullis keys list`)',
)
const ownerArg = argParser<UserID>(
  parseUserId,
  'must be a user id: 1-256 printable ASCII characters without spaces, quotes or backslashes',
)
const durationArg = argParser<number>((v) => {
  const ms = parseDurationMs(v)
  return ms !== undefined && ms > 0 ? ms : undefined
}, 'must be a positive duration such as 90d, 12h, 30m or 1h30m')
const graceArg = argParser<number>(
  (v) => parseDurationMs(v),
  'must be a duration such as 24h, 30m or 0',
)
const instantArg = argParser<number>((v) => {
  const ms = /^\d{4}-\d{2}-\d{2}/.test(v) ? Date.parse(v) : NaN
  return Number.isFinite(ms) ? ms : undefined
}, 'must be an ISO 8601 date or date-time, e.g. 2027-01-31 or 2027-01-31T12:00:00Z')
const limitArg = argParser<number>((v) => {
  const n = /^\d{1,4}$/.test(v) ? Number(v) : NaN
  return n >= 1 && n <= MAX_LIST_LIMIT ? n : undefined
}, `must be an integer from 1 to ${MAX_LIST_LIMIT}`)
const metadataArg = argParser<Record<string, unknown>>((v) => {
  try {
    const parsed = JSON.parse(v) as unknown
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : undefined
  } catch {
    return undefined
  }
}, 'must be a JSON object, e.g. \'{"team":"billing"}\'')
const purposeArg = argParser<string>(
  (v) => (v.trim() !== '' && v.length <= 500 ? v : undefined),
  'must be 1-500 characters',
)
const nameArg = argParser<string>(
  (v) => (v.trim() !== '' && v.length <= 200 ? v : undefined),
  'must be 1-200 characters',
)
const scopesArg = listParser(
  (v) => (SCOPE_TOKEN.test(v) ? v : undefined),
  'a scope is 1-256 printable ASCII characters without spaces, quotes or backslashes (e.g. documents:read)',
)
const TAG_MESSAGE = 'a tag is 1-64 printable ASCII characters, not starting or ending with a space'
const tagArg = argParser<string>((v) => (TAG.test(v) ? v : undefined), TAG_MESSAGE)
const tagsArg = listParser((v) => (TAG.test(v) ? v : undefined), TAG_MESSAGE)
const rolesArg = listParser(
  (v) => parseRoleId(v),
  'a role is letters, digits and _ . : - /, starting with a letter or digit',
)
const cidrsArg = listParser(
  (v) => (/^[0-9A-Fa-f:.]+(?:\/\d{1,3})?$/.test(v) ? v : undefined),
  'must be an IP address or CIDR range, e.g. 10.0.0.0/8 or 2001:db8::/32',
)
const originsArg = listParser(
  (v) => (/^(?:https?:\/\/)?[\x21-\x7e]+$/.test(v) ? v : undefined),
  'must be an origin (https://app.example.com) or a host wildcard (*.example.com)',
)
const rateLimitArg = (
  value: string,
  previous: readonly { limit: number; windowMs: number }[] | undefined,
): { limit: number; windowMs: number }[] => {
  const match = /^(\d{1,9})\/(.+)$/.exec(value)
  const windowMs = match === null ? undefined : parseDurationMs(match[2])
  if (match === null || windowMs === undefined || windowMs <= 0 || Number(match[1]) < 1)
    throw new InvalidArgumentError('must be LIMIT/WINDOW, e.g. 100/1m or 5000/1h')
  return [...(previous ?? []), { limit: Number(match[1]), windowMs }]
}
const quotaArg = argParser<{ limit: number; period: 'day' | 'month' }>((v) => {
  const match = /^(\d{1,12})\/(day|month)$/.exec(v)
  return match === null || Number(match[1]) < 1
    ? undefined
    : { limit: Number(match[1]), period: match[2] as 'day' | 'month' }
}, 'must be LIMIT/day or LIMIT/month, e.g. 10000/day')
const sha256Arg = argParser<string>(
  (v) => (SHA256_HEX.test(v) ? v : undefined),
  'must be 64 hexadecimal digits',
)

/** Options shared by `create`, `update` and `import`. */
interface FieldOptions {
  readonly name?: string
  readonly scope?: string[]
  readonly role?: string[]
  readonly metadata?: Record<string, unknown>
  readonly tag?: string[]
  /** `false` from `--no-purpose` (update only). */
  readonly purpose?: string | false
  readonly environment?: 'live' | 'test'
  readonly allowCidr?: string[]
  readonly allowOrigin?: string[]
  readonly rateLimit?: { limit: number; windowMs: number }[]
  readonly quota?: { limit: number; period: 'day' | 'month' }
  /** `false` from `--no-policy` (update only). */
  readonly policy?: false
}

/** The usage policy the flags describe, or `undefined` when no policy flag was given. */
function policyOf(opts: FieldOptions): ApiKeyUsagePolicyInput | undefined {
  const policy: ApiKeyUsagePolicyInput = {
    ...(opts.allowCidr === undefined ? {} : { allowedCidrs: opts.allowCidr }),
    ...(opts.allowOrigin === undefined ? {} : { allowedOrigins: opts.allowOrigin }),
    ...(opts.rateLimit === undefined ? {} : { rateLimits: opts.rateLimit }),
    ...(opts.quota === undefined ? {} : { quota: opts.quota }),
  }
  return Object.keys(policy).length === 0 ? undefined : policy
}

/** What create and import share, from the flags. */
function newKeyFields(opts: FieldOptions & { owner: UserID; expiresIn?: number }): {
  name: string
  ownerId: UserID
  scopes?: string[]
  roles?: string[]
  metadata?: Record<string, unknown>
  tags?: string[]
  purpose?: string
  environment?: 'live' | 'test'
  policy?: ApiKeyUsagePolicyInput
  expiresIn?: number
} {
  return {
    name: opts.name as string,
    ownerId: opts.owner,
    scopes: opts.scope,
    roles: opts.role,
    metadata: opts.metadata,
    tags: opts.tag,
    purpose: opts.purpose === false ? undefined : opts.purpose,
    environment: opts.environment,
    policy: policyOf(opts),
    expiresIn: opts.expiresIn,
  }
}

/** A record as the CLI shows it: the stored hashes are replaced by when each secret ends. */
function publicView(record: ApiKeyRecord, now: number): Record<string, unknown> {
  const { hashes, ...rest } = record
  return {
    ...rest,
    state: apiKeyStatus(record, now),
    secrets: hashes.map((h) => ({
      pepperId: h.pepperId,
      algorithm: h.algorithm ?? 'hmac-sha256',
      notAfter: h.notAfter,
    })),
  }
}

function humanRecord(record: ApiKeyRecord, now: number): string {
  const fields: [string, string][] = [
    ['id', record.id],
    ['name', record.name],
    ['owner', record.ownerId],
    ['state', apiKeyStatus(record, now)],
    ['prefix', record.prefix],
    ['scopes', record.scopes.join(' ') || '-'],
    ['roles', record.roles.join(' ') || '-'],
  ]
  if (record.tags !== undefined) fields.push(['tags', record.tags.join(' ') || '-'])
  if (record.purpose !== undefined) fields.push(['purpose', record.purpose ?? '-'])
  if (record.environment !== undefined) fields.push(['environment', record.environment])
  if (record.policy !== undefined && Object.keys(record.policy).length > 0)
    fields.push(['policy', JSON.stringify(record.policy)])
  fields.push(
    ['created', formatInstant(record.createdAt)],
    ['expires', formatInstant(record.expiresAt, 'never')],
  )
  if (record.revokedAt !== null) fields.push(['revoked', formatInstant(record.revokedAt)])
  if (record.rotatedAt !== undefined && record.rotatedAt !== null)
    fields.push(['rotated', formatInstant(record.rotatedAt)])
  if (record.lastUsedAt !== undefined)
    fields.push(['last used', formatInstant(record.lastUsedAt, 'never')])
  if (record.usageCount !== undefined) fields.push(['uses', String(record.usageCount)])
  const secrets = record.hashes.map((h) =>
    h.notAfter === null ? 'current' : `until ${formatInstant(h.notAfter)}`,
  )
  fields.push(['secrets', secrets.join(', ')])
  if (Object.keys(record.metadata).length > 0)
    fields.push(['metadata', JSON.stringify(record.metadata)])
  return formatFields(fields)
}

function listRows(items: readonly ApiKeyRecord[], now: number): string[][] {
  return items.map((r) => [
    r.id,
    r.name,
    r.ownerId,
    apiKeyStatus(r, now),
    r.scopes.join(' ') || '-',
    formatInstant(r.expiresAt, 'never'),
  ])
}

const LIST_HEADERS = ['ID', 'NAME', 'OWNER', 'STATE', 'SCOPES', 'EXPIRES']

const SHOWN_ONCE =
  'Store this key now: it is shown only once, and Portcullis keeps only its hash.\n'

/** Prints a newly issued key (create, rotate): the plaintext once, then the record. */
function printIssued(
  context: CliContext,
  command: Command,
  issued: { readonly key: string; readonly record: ApiKeyRecord },
  now: number,
): void {
  context.output(
    command,
    { key: issued.key, record: publicView(issued.record, now) },
    () => `${issued.key}\n\n${humanRecord(issued.record, now)}\n${SHOWN_ONCE}`,
  )
  if (context.globals(command).json === true) context.io.stderr(SHOWN_ONCE)
}

/**
 * Runs `work` with a manager over the configured store and closes the store afterwards. `hashing`
 * names the command when it needs the real pepper (it hashes a key); other commands get the
 * configured pepper if there is one, else a throwaway one they never use.
 */
async function withManager<TResult>(
  context: CliContext,
  command: Command,
  hashing: string | undefined,
  work: (manager: ApiKeyManager) => Promise<TResult>,
): Promise<TResult> {
  const globals = context.globals(command)
  const pepper =
    hashing === undefined
      ? (readPepper(globals, context.io) ?? unusedPepper())
      : requirePepper(globals, context.io, hashing)
  const settings = keysConfig(readCliConfig(globals, context.io))
  const opened = await openKeyStore(globals, context.io)
  let published: Awaited<ReturnType<typeof openBroker>>
  try {
    published = await openBroker(globals, context.io)
  } catch (error) {
    await opened.close()
    throw error
  }
  try {
    const manager = createApiKeyManager({
      store: opened.store,
      pepper,
      ...(published === undefined ? {} : { broker: published.broker }),
      ...(settings.prefix === undefined ? {} : { prefix: settings.prefix }),
      ...(settings.testPrefix === undefined ? {} : { testPrefix: settings.testPrefix }),
      ...(settings.compliance === undefined ? {} : { compliance: settings.compliance }),
    })
    const result = await work(manager)
    // The change is made (a rotated key must still be printed): report, and exit 1 at the end.
    if (published !== undefined && published.failures.length > 0)
      context.failLater(
        `the store was changed, but publishing on Redis failed (${published.failures.join('; ')}); ` +
          'running gates drop their cached copy only when it expires (apiKeys.cache.ttlMs)',
      )
    return result
  } finally {
    await published?.close()
    await opened.close()
  }
}

function notFound(id: string): CliError {
  return new CliError(`no API key with id ${id}`, EXIT_FAILURE)
}

function readKeyFile(context: CliContext, path: string): string {
  try {
    const text =
      path === '-' ? readFileSync(0, 'utf8') : readFileSync(resolve(context.io.cwd, path), 'utf8')
    return text.trim()
  } catch (cause) {
    throw new CliError(
      `cannot read --key-file ${JSON.stringify(path)}: ${(cause as Error).message}`,
      EXIT_FAILURE,
      { cause },
    )
  }
}

function fieldOptions(command: Command, what: 'create' | 'update' | 'import'): Command {
  const required = what !== 'update'
  const name = new Option('--name <name>', 'human name of the key').argParser(nameArg)
  command.addOption(required ? name.makeOptionMandatory() : name)
  if (required)
    command.addOption(
      new Option('--owner <id>', 'user or service that owns the key')
        .argParser(ownerArg)
        .makeOptionMandatory(),
    )
  return command
    .option(
      '--scope <scope>',
      `scope granted (repeat, or comma-separated)${required ? '' : '; replaces the list'}`,
      scopesArg,
    )
    .option(
      '--role <role>',
      `role granted (repeat, or comma-separated)${required ? '' : '; replaces the list'}`,
      rolesArg,
    )
    .option('--metadata <json>', 'JSON object of attributes, available to policies', metadataArg)
    .option(
      '--tag <tag>',
      `label to list by (repeat, or comma-separated)${required ? '' : '; replaces the list'}`,
      tagsArg,
    )
    .option('--purpose <text>', 'why the key exists', purposeArg)
    .option(
      '--allow-cidr <cidr>',
      `client IPs allowed to use the key (repeat)${required ? '' : '; with other policy flags, replaces the usage policy'}`,
      cidrsArg,
    )
    .option('--allow-origin <origin>', 'Origin allowed to use the key (repeat)', originsArg)
    .option('--rate-limit <limit/window>', 'per-key rate limit, e.g. 100/1m (repeat)', rateLimitArg)
    .option('--quota <limit/period>', 'per-key quota, e.g. 10000/day or 50000/month', quotaArg)
}

/** `--environment live|test` of create and import. */
function environmentOption(): Option {
  return new Option(
    '--environment <env>',
    'live or test: picks the prefix (ptcl or ptcl_test)',
  ).choices(['live', 'test'])
}

/** Registers `portcullis keys …` (see `src/commands/index.ts` for the contract). */
export function register(program: Command, context: CliContext): void {
  const keys = program
    .command('keys')
    .description('create, list, rotate and revoke API keys in the configured store')

  fieldOptions(
    keys.command('create').description('create a key; its plaintext is printed once'),
    'create',
  )
    .option('--expires-in <duration>', 'lifetime, e.g. 90d (default: no expiry)', durationArg)
    .addOption(environmentOption())
    .option('--prefix <prefix>', 'key prefix, e.g. acme (default: that of the environment)')
    .action(
      async (
        opts: FieldOptions & { owner: UserID; expiresIn?: number; prefix?: string },
        command: Command,
      ) => {
        const now = Date.now()
        const issued = await withManager(context, command, 'keys create', (m) =>
          m.create({ ...newKeyFields(opts), prefix: opts.prefix }),
        )
        printIssued(context, command, issued, now)
      },
    )

  keys
    .command('list')
    .description('list keys, by id')
    .option('--owner <id>', 'only keys of this owner', ownerArg)
    .option('--tag <tag>', 'only keys carrying this tag', tagArg)
    .addOption(
      new Option('--status <status>', 'only keys with this stored status').choices([
        'active',
        'revoked',
      ]),
    )
    .option('--limit <n>', `page size, 1-${MAX_LIST_LIMIT} (default: 100)`, limitArg)
    .option('--cursor <cursor>', "next page, from the previous page's cursor")
    .option('--all', 'follow the cursor through every page')
    .action(
      async (
        opts: {
          owner?: UserID
          tag?: string
          status?: ApiKeyStoredStatus
          limit?: number
          cursor?: string
          all?: boolean
        },
        command: Command,
      ) => {
        const now = Date.now()
        const query: ApiKeyListQuery = {
          ownerId: opts.owner,
          tag: opts.tag,
          status: opts.status,
          limit: opts.limit,
          cursor: opts.cursor,
        }
        const page = await withManager(context, command, undefined, async (m) => {
          let result = await m.list(query)
          if (opts.all !== true) return result
          const items = [...result.items]
          while (result.nextCursor !== null) {
            result = await m.list({ ...query, cursor: result.nextCursor })
            items.push(...result.items)
          }
          return { items, nextCursor: null }
        })
        context.output(
          command,
          { items: page.items.map((r) => publicView(r, now)), nextCursor: page.nextCursor },
          () =>
            formatTable(LIST_HEADERS, listRows(page.items, now), '(no keys)') +
            (page.nextCursor === null ? '' : `more: --cursor ${page.nextCursor}\n`),
        )
      },
    )

  keys
    .command('show')
    .description('show one key')
    .argument('<id>', 'key id', keyIdArg)
    .action(async (id: ApiKeyId, _opts: unknown, command: Command) => {
      const now = Date.now()
      const record = await withManager(context, command, undefined, (m) => m.get(id))
      if (record === undefined) throw notFound(id)
      context.output(command, publicView(record, now), () => humanRecord(record, now))
    })

  fieldOptions(
    keys
      .command('update')
      .description(
        "change a key's name, scopes, roles, expiry, metadata, tags, purpose or usage policy",
      )
      .argument('<id>', 'key id', keyIdArg),
    'update',
  )
    .addOption(
      new Option('--expires-in <duration>', 'expire this long from now')
        .argParser(durationArg)
        .conflicts(['expiresAt', 'expiry']),
    )
    .addOption(
      new Option('--expires-at <date>', 'expire at this ISO 8601 instant')
        .argParser(instantArg)
        .conflicts(['expiry']),
    )
    .option('--no-expiry', 'remove the expiry')
    .option('--no-purpose', 'clear the purpose')
    .option('--no-policy', 'remove the usage policy (IP ranges, origins, limits, quota)')
    .action(
      async (
        id: ApiKeyId,
        opts: FieldOptions & { expiresIn?: number; expiresAt?: number; expiry?: boolean },
        command: Command,
      ) => {
        const now = Date.now()
        const expiresAt =
          opts.expiry === false
            ? null
            : opts.expiresIn !== undefined
              ? now + opts.expiresIn
              : opts.expiresAt
        const given = policyOf(opts)
        if (given !== undefined && opts.policy === false)
          throw usageError('--no-policy cannot be combined with policy flags')
        const policy = opts.policy === false ? null : given
        const patch = {
          ...(opts.name === undefined ? {} : { name: opts.name }),
          ...(opts.scope === undefined ? {} : { scopes: opts.scope }),
          ...(opts.role === undefined ? {} : { roles: opts.role }),
          ...(opts.metadata === undefined ? {} : { metadata: opts.metadata }),
          ...(expiresAt === undefined ? {} : { expiresAt }),
          ...(opts.tag === undefined ? {} : { tags: opts.tag }),
          ...(opts.purpose === undefined
            ? {}
            : { purpose: opts.purpose === false ? null : opts.purpose }),
          ...(policy === undefined ? {} : { policy }),
        }
        if (Object.keys(patch).length === 0)
          throw usageError(
            'nothing to update: give at least one of --name, --scope, --role, --metadata, --tag, --purpose, a policy flag, --expires-in, --expires-at, --no-expiry, --no-purpose, --no-policy',
          )
        const record = await withManager(context, command, undefined, (m) => m.update(id, patch))
        if (record === undefined) throw notFound(id)
        context.output(command, publicView(record, now), () => humanRecord(record, now))
      },
    )

  keys
    .command('rotate')
    .description('issue a new secret for a key; the old one keeps working during the grace period')
    .argument('<id>', 'key id', keyIdArg)
    .option(
      '--grace <duration>',
      'how long the old secret keeps working, e.g. 24h (default: 0)',
      graceArg,
    )
    .action(async (id: ApiKeyId, opts: { grace?: number }, command: Command) => {
      const now = Date.now()
      const issued = await withManager(context, command, 'keys rotate', (m) =>
        m.rotate(id, { grace: opts.grace ?? 0 }),
      )
      if (issued === undefined) throw notFound(id)
      printIssued(context, command, issued, now)
    })

  keys
    .command('revoke')
    .description('revoke a key at once')
    .argument('<id>', 'key id', keyIdArg)
    .action(async (id: ApiKeyId, _opts: unknown, command: Command) => {
      const now = Date.now()
      const record = await withManager(context, command, undefined, (m) => m.revoke(id))
      if (record === undefined) throw notFound(id)
      context.output(
        command,
        publicView(record, now),
        () => `revoked ${record.id} (${record.name})\n`,
      )
    })

  fieldOptions(
    keys
      .command('import')
      .description('bring an existing key under Portcullis: its plaintext, or only its SHA-256'),
    'import',
  )
    .addOption(
      new Option(
        '--key-file <path>',
        'file holding the plaintext key ("-": standard input)',
      ).conflicts('sha256'),
    )
    .option('--sha256 <hex>', "the key's SHA-256, 64 hex digits", sha256Arg)
    .option(
      '--expires-in <duration>',
      'lifetime from now, e.g. 90d (default: no expiry)',
      durationArg,
    )
    .addOption(environmentOption())
    .action(
      async (
        opts: FieldOptions & {
          owner: UserID
          expiresIn?: number
          keyFile?: string
          sha256?: string
        },
        command: Command,
      ) => {
        if ((opts.keyFile === undefined) === (opts.sha256 === undefined))
          throw usageError(
            'give the key to import: --key-file PATH (or - for stdin) or --sha256 HEX',
          )
        const key = opts.keyFile === undefined ? undefined : readKeyFile(context, opts.keyFile)
        const now = Date.now()
        const record = await withManager(context, command, 'keys import', (m) =>
          m.import({
            ...newKeyFields(opts),
            ...(key === undefined ? {} : { key }),
            ...(opts.sha256 === undefined ? {} : { sha256: opts.sha256.toLowerCase() }),
          }),
        )
        context.output(command, publicView(record, now), () => humanRecord(record, now))
      },
    )

  keys
    .command('due')
    .description('list active keys whose rotation is due, oldest first')
    .addOption(
      new Option(
        '--rotation-period <duration>',
        'how often keys must be rotated, e.g. 90d (default: keys.compliance.rotationPeriod of --config)',
      ).argParser(durationArg),
    )
    .action(async (opts: { rotationPeriod?: number }, command: Command) => {
      const now = Date.now()
      const settings = keysConfig(readCliConfig(context.globals(command), context.io))
      const period =
        opts.rotationPeriod ?? parseDurationMs(settings.compliance?.rotationPeriod ?? undefined)
      if (period === undefined || period <= 0)
        throw usageError(
          'keys due needs --rotation-period (e.g. 90d), or keys.compliance.rotationPeriod in --config',
        )
      const due = await withManager(context, command, undefined, (m) =>
        m.dueForRotation({ now, rotationPeriod: period }),
      )
      const since = (r: ApiKeyRecord): number => (r.rotatedAt ?? r.createdAt) + period
      context.output(
        command,
        { items: due.map((r) => ({ ...publicView(r, now), rotationDueAt: since(r) })) },
        () =>
          formatTable(
            ['ID', 'NAME', 'OWNER', 'LAST ROTATED', 'DUE SINCE'],
            due.map((r) => [
              r.id,
              r.name,
              r.ownerId,
              formatInstant(r.rotatedAt ?? r.createdAt),
              formatInstant(since(r)),
            ]),
            '(no key is due for rotation)',
          ),
      )
    })
}

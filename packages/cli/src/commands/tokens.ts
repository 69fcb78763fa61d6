/**
 * `portcullis tokens revoke`: revoke JWTs on every running gate, by `jti` or by subject issued
 * before an instant, through the Redis revocation list of `@portcullis/redis` (written to Redis,
 * announced on the broker), audited as a `token.revoked` event on the Redis audit stream.
 *
 * Reachable from `@portcullis/cli`.
 * @packageDocumentation
 */
import {
  createAuditTrail,
  parseTokenId,
  parseUserId,
  type AuditSink,
  type MessageBroker,
  type RevocationEntry,
  type RevocationList,
} from '@portcullis/core'
import type { Command } from 'commander'
import {
  CliError,
  EXIT_FAILURE,
  argParser,
  formatFields,
  formatInstant,
  usageError,
  type CliContext,
} from '../io.js'
import { openBroker, readCliConfig } from '../store.js'

/** The `tokens` section of the settings file. */
export interface CliTokensConfig {
  /**
   * The gates' longest accepted token lifetime, in seconds (their `jwt.maxTokenLifetimeSeconds`):
   * how long Redis keeps an entry past its cut-off. @default 86400
   */
  readonly maxTokenLifetimeSeconds?: number
  /** First segment of the Redis keys, as given to the gates' list. @default 'ptcl' */
  readonly prefix?: string
  /** The Redis stream the `token.revoked` event is appended to. @default 'ptcl:audit' */
  readonly auditStream?: string
}

const TOKENS_CONFIG_NAMES = ['maxTokenLifetimeSeconds', 'prefix', 'auditStream']

/** Reads and checks the `tokens` section (unknown fields are refused). */
export function tokensConfig(config: Readonly<Record<string, unknown>>): CliTokensConfig {
  const section = config.tokens
  if (section === undefined || section === null) return {}
  if (typeof section !== 'object' || Array.isArray(section))
    throw usageError(`--config: tokens must be an object (${TOKENS_CONFIG_NAMES.join(', ')})`)
  const s = section as Record<string, unknown>
  for (const name of Object.keys(s))
    if (!TOKENS_CONFIG_NAMES.includes(name))
      throw usageError(
        `--config: unknown setting tokens.${name}; known: ${TOKENS_CONFIG_NAMES.join(', ')}`,
      )
  const max = s.maxTokenLifetimeSeconds
  if (max !== undefined && (typeof max !== 'number' || !Number.isInteger(max) || max < 1))
    throw usageError('--config: tokens.maxTokenLifetimeSeconds must be a positive integer')
  for (const name of ['prefix', 'auditStream'])
    if (s[name] !== undefined && (typeof s[name] !== 'string' || s[name] === ''))
      throw usageError(`--config: tokens.${name} must be a non-empty string`)
  return s as CliTokensConfig
}

/** An instant: `now`, an ISO 8601 date(-time), or a NumericDate (seconds since the epoch). */
function parseInstant(value: string, allowNow: boolean): number | undefined {
  if (allowNow && value === 'now') return Date.now()
  if (/^\d{1,11}$/.test(value)) return Number(value) * 1000
  const ms = /^\d{4}-\d{2}-\d{2}/.test(value) ? Date.parse(value) : NaN
  return Number.isFinite(ms) ? ms : undefined
}

const jtiArg = argParser<string>(
  (v) => parseTokenId(v),
  'must be a token id (the jti claim): 1-256 printable ASCII characters without spaces',
)
const subjectArg = argParser<string>(
  (v) => parseUserId(v),
  'must be a subject (the sub claim): 1-256 printable ASCII characters without spaces',
)
const expiresArg = argParser<number>(
  (v) => parseInstant(v, false),
  "must be the token's exp: seconds since the epoch (as in the token) or an ISO 8601 date-time",
)
const beforeArg = argParser<number>(
  (v) => parseInstant(v, true),
  'must be now, seconds since the epoch, or an ISO 8601 date-time, e.g. 2027-01-31T12:00:00Z',
)

interface RedisModule {
  createRedisRevocationList(options: {
    readonly client: string
    readonly broker?: MessageBroker
    readonly prefix?: string
    readonly maxTokenLifetimeSeconds?: number
    readonly resyncIntervalMs?: number
  }): RevocationList & { close(): Promise<void> }
  createRedisStreamAuditSink(options: {
    readonly client: unknown
    readonly stream?: string
  }): AuditSink
}

interface IoredisModule {
  Redis: new (
    url: string,
    options: Record<string, unknown>,
  ) => { quit(): Promise<unknown>; disconnect(): void; on(e: string, f: () => void): unknown }
}

interface RevokeOptions {
  readonly jti?: string
  readonly expires?: number
  readonly subject?: string
  readonly before?: number
  readonly actor?: string
}

async function load<TModule>(specifier: string): Promise<TModule> {
  try {
    return (await import(specifier)) as TModule
  } catch (cause) {
    throw new CliError(
      'tokens revoke needs @portcullis/redis and ioredis: npm install @portcullis/redis ioredis',
      EXIT_FAILURE,
      { cause },
    )
  }
}

/** Registers `portcullis tokens`. */
export function register(program: Command, context: CliContext): void {
  const tokens = program
    .command('tokens')
    .description('revoke JWTs on every running gate (through Redis)')

  tokens
    .command('revoke')
    .description(
      'deny one token (--jti) or every token of a subject issued before an instant (--subject --before)',
    )
    .option('--jti <id>', 'the jti of the token to deny', jtiArg)
    .option(
      '--expires <time>',
      "the token's exp (seconds since the epoch or ISO 8601): the entry is kept until then (default: now + tokens.maxTokenLifetimeSeconds)",
      expiresArg,
    )
    .option('--subject <sub>', 'the sub whose tokens to deny', subjectArg)
    .option('--before <time>', 'deny the tokens issued (iat) before this: now or a time', beforeArg)
    .option('--actor <id>', 'who revokes, for the audit event (default: $USER)')
    .action(async (opts: RevokeOptions, command: Command) => {
      const byJti = opts.jti !== undefined
      const bySubject = opts.subject !== undefined
      if (byJti === bySubject)
        throw usageError('give --jti <id> or --subject <sub> --before <time>')
      if (byJti && opts.before !== undefined)
        throw usageError('--before goes with --subject, not --jti')
      if (bySubject && opts.before === undefined)
        throw usageError('--subject needs --before <time|now>')
      if (bySubject && opts.expires !== undefined)
        throw usageError('--expires goes with --jti, not --subject')
      const globals = context.globals(command)
      const url = globals.redis ?? context.io.env.PORTCULLIS_REDIS_URL
      if (url === undefined || url === '')
        throw usageError(
          'tokens revoke writes to Redis: give --redis <url> or PORTCULLIS_REDIS_URL',
        )
      const settings = tokensConfig(readCliConfig(globals, context.io))
      const actor = opts.actor ?? (context.io.env.USER || null)
      const redisModule = await load<Partial<RedisModule>>('@portcullis/redis')
      if (
        typeof redisModule.createRedisRevocationList !== 'function' ||
        typeof redisModule.createRedisStreamAuditSink !== 'function'
      )
        throw new CliError(
          'this @portcullis/redis has no createRedisRevocationList(); upgrade it',
          EXIT_FAILURE,
        )
      const { Redis } = await load<IoredisModule>('ioredis')

      const published = await openBroker(globals, context.io)
      if (published === undefined) throw usageError('--redis is required')
      let list: (RevocationList & { close(): Promise<void> }) | undefined
      let auditClient: InstanceType<IoredisModule['Redis']> | undefined
      try {
        list = redisModule.createRedisRevocationList({
          client: url,
          broker: published.broker,
          resyncIntervalMs: 0,
          ...(settings.prefix === undefined ? {} : { prefix: settings.prefix }),
          ...(settings.maxTokenLifetimeSeconds === undefined
            ? {}
            : { maxTokenLifetimeSeconds: settings.maxTokenLifetimeSeconds }),
        })
        let entry: RevocationEntry
        try {
          entry =
            opts.jti !== undefined
              ? await list.revokeToken({
                  jti: opts.jti,
                  ...(opts.expires === undefined ? {} : { expiresAtMs: opts.expires }),
                })
              : await list.revokeSubject({
                  subject: opts.subject as string,
                  beforeMs: opts.before as number,
                })
        } catch (cause) {
          throw new CliError(
            `cannot revoke: ${(cause as Error).message ?? String(cause)}`,
            EXIT_FAILURE,
            { cause },
          )
        }
        if (published.failures.length > 0)
          context.failLater(
            `the revocation is stored in Redis, but announcing it failed (${published.failures.join('; ')}); ` +
              'running gates refuse the token at their next resync (resyncIntervalMs)',
          )

        // Audited after the fact: a revocation must not wait on, nor be undone by, the audit.
        auditClient = new Redis(url, { maxRetriesPerRequest: 1, commandTimeout: 2000 })
        auditClient.on('error', () => {})
        const trail = createAuditTrail({
          sinks: [
            redisModule.createRedisStreamAuditSink({
              client: auditClient,
              ...(settings.auditStream === undefined ? {} : { stream: settings.auditStream }),
            }),
          ],
          flushIntervalMs: 0,
        })
        try {
          await trail.commit({
            type: 'token.revoked',
            outcome: 'success',
            actor: { id: actor },
            action: 'token.revoke',
            target:
              entry.kind === 'jti'
                ? { type: 'jwt', id: entry.jti }
                : { type: 'subject', id: entry.subject },
            data:
              entry.kind === 'jti'
                ? {
                    rule: 'jti',
                    ...(opts.expires === undefined
                      ? {}
                      : { expiresAt: formatInstant(opts.expires) }),
                    retainUntil: formatInstant(entry.retainUntilMs),
                  }
                : {
                    rule: 'subject',
                    issuedBefore: formatInstant(entry.beforeMs),
                    retainUntil: formatInstant(entry.retainUntilMs),
                  },
          })
        } catch (cause) {
          context.failLater(
            `the token is revoked, but the audit event could not be written: ${(cause as Error).message ?? String(cause)}`,
          )
        } finally {
          await trail.close()
        }

        const view =
          entry.kind === 'jti'
            ? { kind: 'jti', jti: entry.jti, retainUntil: formatInstant(entry.retainUntilMs) }
            : {
                kind: 'subject',
                subject: entry.subject,
                before: formatInstant(entry.beforeMs),
                retainUntil: formatInstant(entry.retainUntilMs),
              }
        context.output(command, view, () =>
          entry.kind === 'jti'
            ? `revoked the token with jti ${entry.jti}\n` +
              formatFields([['kept until', formatInstant(entry.retainUntilMs)]])
            : `revoked the tokens of ${entry.subject} issued before ${formatInstant(entry.beforeMs)}\n` +
              formatFields([['kept until', formatInstant(entry.retainUntilMs)]]),
        )
      } finally {
        await list?.close()
        if (auditClient !== undefined)
          await auditClient.quit().catch(() => auditClient?.disconnect())
        await published.close()
      }
    })
}

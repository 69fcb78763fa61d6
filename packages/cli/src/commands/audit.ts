/**
 * `portcullis audit verify|tail|export|report`: check an audit trail's hash chain (a JSON-lines
 * file and its rotated predecessors, a SQLite database or PostgreSQL), read it, and report which
 * compliance controls a configuration covers.
 *
 * Reachable from `@portcullis/cli`.
 * @packageDocumentation
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import {
  COMPLIANCE_PROFILES,
  auditComplianceReport,
  listAuditFiles,
  readJsonLinesAuditEvents,
  verifyAuditChain,
  type AuditCheckpoint,
  type AuditEvent,
  type AuditIpMode,
  type AuditLevel,
  type ComplianceProfileName,
} from '@portcullis/core'
import type { Command } from 'commander'
import { parse as parseYaml } from 'yaml'
import {
  CliError,
  EXIT_FAILURE,
  argParser,
  formatTable,
  listParser,
  usageError,
  type CliContext,
} from '../io.js'
import { loadSqlite } from '../store.js'

/**
 * Exit code of `audit verify` when the trail's only fault is an incomplete last line (a crash in
 * the middle of a write): distinct from 1 (a broken chain: tampering) so scripts can tell them apart.
 */
const EXIT_TORN_TAIL = 3

interface SourceOptions {
  readonly sqlite?: string
  readonly postgres?: string
  readonly tablePrefix?: string
}

interface PostgresAuditModule {
  readPostgresAuditEvents(options: {
    readonly connectionString: string
  }): Promise<readonly AuditEvent[]> | AsyncIterable<AuditEvent>
}

/** Reads the events of the trail named by a file argument, `--sqlite` or `--postgres`, in stored order. */
async function readSource(
  context: CliContext,
  file: string | undefined,
  options: SourceOptions,
): Promise<AuditEvent[]> {
  const given = [file, options.sqlite, options.postgres].filter((x) => x !== undefined)
  if (given.length !== 1)
    throw usageError('name exactly one trail: a FILE, --sqlite <file> or --postgres <url>')
  const cwd = context.io.cwd
  if (file !== undefined) {
    const path = resolve(cwd, file)
    const files = await listAuditFiles(path)
    if (files.length === 0) throw new CliError(`no audit file at ${path}`, EXIT_FAILURE)
    const out: AuditEvent[] = []
    for await (const e of readJsonLinesAuditEvents(files)) out.push(e)
    return out
  }
  if (options.sqlite !== undefined) {
    const { readSqliteAuditEvents } = await loadSqlite('--sqlite')
    try {
      return readSqliteAuditEvents(resolve(cwd, options.sqlite), {
        ...(options.tablePrefix === undefined ? {} : { tablePrefix: options.tablePrefix }),
      })
    } catch (error) {
      throw new CliError(`cannot read ${options.sqlite}: ${String(error)}`, EXIT_FAILURE, {
        cause: error,
      })
    }
  }
  const url = options.postgres as string
  if (!/^postgres(?:ql)?:\/\//.test(url))
    throw usageError('--postgres must be a postgres:// or postgresql:// URL')
  let mod: PostgresAuditModule
  try {
    mod = (await import('@portcullis/postgres' as string)) as PostgresAuditModule
  } catch (error) {
    throw new CliError('--postgres needs @portcullis/postgres and pg installed', EXIT_FAILURE, {
      cause: error,
    })
  }
  if (typeof mod.readPostgresAuditEvents !== 'function')
    throw new CliError('this @portcullis/postgres has no audit reader', EXIT_FAILURE)
  const result = mod.readPostgresAuditEvents({ connectionString: url })
  if (Symbol.asyncIterator in Object(result)) {
    const out: AuditEvent[] = []
    for await (const e of result as AsyncIterable<AuditEvent>) out.push(e)
    return out
  }
  return [...(await (result as Promise<readonly AuditEvent[]>))]
}

function readKey(context: CliContext, keyFile: string | undefined): string {
  if (keyFile !== undefined) {
    try {
      return readFileSync(resolve(context.io.cwd, keyFile), 'utf8').trim()
    } catch (error) {
      throw new CliError(`cannot read the key file ${keyFile}`, EXIT_FAILURE, { cause: error })
    }
  }
  const env = context.io.env.PORTCULLIS_AUDIT_KEY
  if (env === undefined || env === '')
    throw usageError('give the chain key with --key-file <path> or PORTCULLIS_AUDIT_KEY')
  return env
}

function readAnchors(
  context: CliContext,
  files: readonly string[],
): Pick<AuditCheckpoint, 'chain' | 'seq' | 'head'>[] {
  const out: Pick<AuditCheckpoint, 'chain' | 'seq' | 'head'>[] = []
  for (const f of files) {
    const text = readFileSync(resolve(context.io.cwd, f), 'utf8')
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue
      const cp = JSON.parse(line) as Partial<AuditCheckpoint>
      if (typeof cp.chain !== 'string' || typeof cp.seq !== 'number' || typeof cp.head !== 'string')
        throw usageError(`${f}: each line must be a checkpoint {chain, seq, head}`)
      out.push({ chain: cp.chain, seq: cp.seq, head: cp.head })
    }
  }
  return out
}

const countArg = argParser<number>((v) => {
  const n = Number(v)
  return Number.isSafeInteger(n) && n > 0 && n <= 1_000_000 ? n : undefined
}, 'must be a whole number from 1 to 1000000')
const profileList = listParser(
  (v) => COMPLIANCE_PROFILES.find((p) => p.toLowerCase() === v.toLowerCase()),
  `must be one of ${COMPLIANCE_PROFILES.join(', ')}`,
)

function sourceOptions(command: Command): Command {
  return command
    .argument('[file]', 'JSON-lines audit file (its rotated files are read first)')
    .option('--sqlite <file>', 'a SQLite audit database')
    .option('--table-prefix <prefix>', 'table prefix of the SQLite trail (default: portcullis_)')
}

function oneLine(e: AuditEvent): string {
  const actor = e.actor?.id ?? '-'
  const seq = e.chain === undefined ? '' : ` #${e.chain.seq}`
  return `${e.time} ${e.type}${e.customType === undefined ? '' : `(${e.customType})`} ${e.outcome} actor=${actor} ${e.action}${seq}`
}

/** Registers `portcullis audit`. */
export function register(program: Command, context: CliContext): void {
  const audit = program.command('audit').description('verify, read and report on audit trails')

  sourceOptions(
    audit
      .command('verify')
      .description(
        'check the hash chain; names the first broken link and exits 1, or 3 when only the last line is torn (a crash)',
      ),
  )
    .option('--key-file <path>', 'file holding the chain HMAC key (env PORTCULLIS_AUDIT_KEY)')
    .option('--public-key <pem>', 'Ed25519 public key (PEM file) of signed checkpoints')
    .option('--anchor <file...>', 'published checkpoints (JSON lines) that reveal truncation')
    .option('--partial', 'accept a trail whose beginning was purged or rotated away')
    .action(async (file: string | undefined, opts: Record<string, unknown>, command: Command) => {
      const globals = context.globals(command)
      const events = await readSource(context, file, {
        ...(opts as SourceOptions),
        ...(globals.postgres === undefined ? {} : { postgres: globals.postgres }),
      })
      const key = readKey(context, opts.keyFile as string | undefined)
      const publicKey =
        opts.publicKey === undefined
          ? undefined
          : readFileSync(resolve(context.io.cwd, opts.publicKey as string), 'utf8')
      const result = verifyAuditChain(events, {
        keys: key,
        ...(publicKey === undefined ? {} : { checkpointPublicKey: publicKey }),
        anchors: readAnchors(context, (opts.anchor as string[] | undefined) ?? []),
        partial: opts.partial === true,
      })
      context.output(command, result, () =>
        result.ok
          ? `ok: ${result.events} events in ${result.chains.length} chain(s), ${result.checkpoints} checkpoint(s) verified\n`
          : '',
      )
      if (!result.ok) {
        const b = result.firstBroken!
        if (result.reason === 'torn-tail')
          throw new CliError(
            `audit trail ends in a torn line at ${b.line}: ${b.reason} (${result.events} events in ${result.chains.length} chain(s))`,
            EXIT_TORN_TAIL,
          )
        const where = [
          `event #${b.index + 1}`,
          b.line === undefined ? undefined : `line ${b.line}`,
          b.eventId === undefined ? undefined : `id ${b.eventId}`,
          b.chain === undefined ? undefined : `chain ${b.chain} seq ${b.seq}`,
        ]
          .filter((x) => x !== undefined)
          .join(', ')
        throw new CliError(`audit chain broken at ${where}: ${b.reason}`, EXIT_FAILURE)
      }
    })

  sourceOptions(audit.command('tail').description('print the last events'))
    .option('-n, --lines <n>', 'how many (default: 20)', countArg)
    .action(async (file: string | undefined, opts: Record<string, unknown>, command: Command) => {
      const globals = context.globals(command)
      const events = await readSource(context, file, {
        ...(opts as SourceOptions),
        ...(globals.postgres === undefined ? {} : { postgres: globals.postgres }),
      })
      const last = events.slice(-((opts.lines as number | undefined) ?? 20))
      context.output(command, last, () => last.map((e) => `${oneLine(e)}\n`).join(''))
    })

  sourceOptions(audit.command('export').description('print events as JSON lines'))
    .option('--since <time>', 'only events at or after this ISO 8601 time')
    .option('--type <type...>', 'only these event types')
    .action(async (file: string | undefined, opts: Record<string, unknown>, command: Command) => {
      const globals = context.globals(command)
      const since = opts.since === undefined ? undefined : Date.parse(opts.since as string)
      if (since !== undefined && !Number.isFinite(since))
        throw usageError('--since must be an ISO 8601 time')
      const types = opts.type as string[] | undefined
      const events = await readSource(context, file, {
        ...(opts as SourceOptions),
        ...(globals.postgres === undefined ? {} : { postgres: globals.postgres }),
      })
      let text = ''
      for (const e of events) {
        if (since !== undefined && !(Date.parse(e.time) >= since)) continue
        if (types !== undefined && !types.includes(e.type) && !types.includes(e.customType ?? ''))
          continue
        text += JSON.stringify(e) + '\n'
      }
      context.io.stdout(text)
    })

  audit
    .command('report')
    .description(
      'which events and controls an audit configuration covers (the `audit` section of --config), and its gaps',
    )
    .option(
      '--profile <name...>',
      `compliance profiles: ${COMPLIANCE_PROFILES.join(', ')}`,
      profileList,
    )
    .option('--level <level>', 'minimal, standard or verbose')
    .option('--sinks <n>', 'number of sinks', countArg)
    .option('--integrity', 'a chain key is configured')
    .option('--spool', 'a disk spool is configured')
    .option('--retention-days <n>', 'days the trail is kept', countArg)
    .option('--ip <mode>', 'keep, truncate or hmac')
    .option('--pseudonymize', 'principal ids are pseudonymized')
    .option('--fail-open', 'the gate serves requests it could not audit')
    .action((opts: Record<string, unknown>, command: Command) => {
      let file: Record<string, unknown> = {}
      // The global --config (PORTCULLIS_CONFIG): its `audit` section holds the audit options.
      const configPath = context.globals(command).config ?? context.io.env.PORTCULLIS_CONFIG
      if (configPath !== undefined && configPath !== '') {
        const path = resolve(context.io.cwd, configPath)
        let text: string
        try {
          text = readFileSync(path, 'utf8')
        } catch (error) {
          throw new CliError(`cannot read ${path}`, EXIT_FAILURE, { cause: error })
        }
        const parsed = (path.endsWith('.json') ? JSON.parse(text) : parseYaml(text)) as unknown
        const root = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<
          string,
          unknown
        >
        file = (
          typeof root.audit === 'object' && root.audit !== null ? root.audit : root
        ) as Record<string, unknown>
        if (root.failClosedOnAuditBackpressure === false) file.failClosed = false
      }
      const level = (opts.level ?? file.level ?? 'standard') as AuditLevel
      if (!['minimal', 'standard', 'verbose'].includes(level))
        throw usageError('--level must be minimal, standard or verbose')
      const ip = (opts.ip ??
        (file.redaction as { ip?: unknown } | undefined)?.ip ??
        'keep') as AuditIpMode
      if (!['keep', 'truncate', 'hmac'].includes(ip))
        throw usageError('--ip must be keep, truncate or hmac')
      const profiles = ((opts.profile as string[] | undefined) ??
        (Array.isArray(file.compliance) ? file.compliance : [])) as ComplianceProfileName[]
      for (const p of profiles)
        if (!COMPLIANCE_PROFILES.includes(p)) throw usageError(`unknown profile ${p}`)
      const sinks =
        (opts.sinks as number | undefined) ??
        (Array.isArray(file.sinks)
          ? file.sinks.length
          : typeof file.sinks === 'number'
            ? file.sinks
            : 1)
      const retention = (opts.retentionDays ?? file.retentionDays) as number | undefined
      const report = auditComplianceReport({
        profiles,
        level,
        sinks,
        integrity: opts.integrity === true || file.integrity !== undefined,
        spool: opts.spool === true || file.spool !== undefined,
        ...(retention === undefined ? {} : { retentionDays: retention }),
        ip,
        pseudonymize: opts.pseudonymize === true || file.pseudonyms !== undefined,
        failClosed: !(opts.failOpen === true || file.failClosed === false),
      })
      context.output(command, report, () => {
        const rows = report.controls.map((c) => [
          c.profile,
          c.id,
          c.covered ? 'covered' : 'GAP',
          c.gaps.join('; ') || c.title,
        ])
        return (
          formatTable(['profile', 'control', 'status', 'detail'], rows, '(no profile selected)') +
          `events written: ${report.events.written.join(', ') || '(none)'}\n` +
          `minimum retention: ${report.minRetentionDays} days\n` +
          (report.gaps.length === 0
            ? 'no gaps\n'
            : `gaps:\n${report.gaps.map((g) => `  - ${g}\n`).join('')}`)
        )
      })
    })
}

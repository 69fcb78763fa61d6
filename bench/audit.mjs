/**
 * Throughput of the audit pipeline per sink, without HTTP: how many events per second each sink
 * takes from `AuditTrail.emit` to durable (`flush()` resolved), and what `emit` costs the request
 * that calls it. Real services only: a `redis-server` and a PostgreSQL the script starts on
 * loopback (rows are skipped, and say so, when their binaries are missing), a SQLite file, a
 * JSON-lines file, and a webhook receiver in a child process.
 *
 * Every row writes the same event: an `authz.allow` of the full gate, with its request context and
 * a four-stage trace, as the gate emits it. Each row runs 3 rounds (after a warm-up) in a fresh
 * trail and reports the median rate; the events each sink holds afterwards are counted, so a row
 * that lost events fails the run.
 *
 * `node --import tsx bench/audit.mjs [--quick] [--only redis,...]` (tsx, for the PostgreSQL and
 * Redis replica starters the tests use); `run.mjs` runs it as its `audit` part. `--only` keeps the
 * rows of the listed sinks (memory, jsonl, sqlite, postgres, redis, webhook). Prints a Markdown
 * table to stdout.
 * @module
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import pg from 'pg'
import {
  createAuditTrail,
  createJsonLinesFileSink,
  createMemoryAuditSink,
  createWebhookAuditSink,
} from '@portcullis/core'
import { createPostgresAuditSink } from '@portcullis/postgres'
import { createRedisStreamAuditSink } from '@portcullis/redis'
import { createSqliteAuditSink } from '@portcullis/sqlite'
import { redisAvailable, startRedis } from './lib/redis.mjs'

const { values: args } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, only: { type: 'string' } },
})
const SINKS = ['memory', 'jsonl', 'sqlite', 'postgres', 'redis', 'webhook']
const only = args.only === undefined ? SINKS : args.only.split(',')
if (only.some((s) => !SINKS.includes(s)))
  throw new Error(`--only takes a list of ${SINKS.join(', ')}`)
/** Whether the rows of `sink` run. */
const runs = (sink) => only.includes(sink)
const EVENTS = args.quick ? 3_000 : 20_000
const WARMUP = args.quick ? 500 : 2_000
const ROUNDS = 3
const CHAIN = { key: 'bench-audit-chain-key-0123456789abcdef' }

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}
const fmt = (n) => Math.round(n).toLocaleString('en-US')

/** The event the full gate writes for an allowed request. */
function event(i) {
  return {
    type: 'authz.allow',
    outcome: 'success',
    actor: { id: 'user-42', method: 'apikey', tokenId: 'ptcl_1a2b3c4d5e6f7a8b' },
    action: 'GET /docs/:id',
    target: { type: 'documents', id: String(i & 1023) },
    reason: {
      trace: [
        { stage: 'authenticate', outcome: 'allow', by: 'apikey', durationUs: 3 },
        { stage: 'ratelimit', outcome: 'allow', by: 'per-principal', durationUs: 1 },
        { stage: 'quota', outcome: 'allow', by: 'monthly', durationUs: 1 },
        { stage: 'authorize', outcome: 'allow', rules: ['docs-read'], durationUs: 2 },
      ],
    },
    request: {
      id: `req-${i}`,
      method: 'GET',
      path: '/docs/1',
      route: '/docs/:id',
      ip: '203.0.113.7',
      userAgent: 'autocannon',
    },
  }
}

/**
 * Runs one row: `rounds` fresh trails on sinks from `makeSink`, each taking `WARMUP` then `EVENTS`
 * events. `count()` returns how many events the sink(s) hold in total, checked at the end.
 */
async function measure(label, makeSink, trailOptions, count) {
  const rates = []
  const emitNs = []
  let expected = 0
  for (let round = 0; round < ROUNDS; round++) {
    const audit = createAuditTrail({ sinks: [await makeSink(round)], ...trailOptions })
    for (let i = 0; i < WARMUP; i++) audit.emit(event(i))
    await audit.flush()
    const events = Array.from({ length: EVENTS }, (_, i) => event(i))
    let refused = 0
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < EVENTS; i++) if (!audit.emit(events[i])) refused++
    const t1 = process.hrtime.bigint()
    await audit.flush()
    const t2 = process.hrtime.bigint()
    await audit.close()
    if (refused > 0) throw new Error(`${label}: the trail refused ${refused} events`)
    expected += WARMUP + EVENTS
    emitNs.push(Number(t1 - t0) / EVENTS)
    rates.push(EVENTS / (Number(t2 - t0) / 1e9))
  }
  const held = await count()
  // Checkpoints are events too: a sink holds at least what was emitted.
  if (held < expected)
    throw new Error(`${label}: ${expected} events emitted, the sink holds ${held}`)
  return {
    label,
    rate: median(rates),
    min: Math.min(...rates),
    max: Math.max(...rates),
    emitNs: median(emitNs),
  }
}

/** A webhook receiver in its own process (so it does not share this event loop). */
async function startReceiver() {
  const code = `
    const http = require('node:http')
    let events = 0
    const server = http.createServer((req, res) => {
      if (req.method === 'GET') return res.end(String(events))
      const chunks = []
      req.on('data', (c) => chunks.push(c))
      req.on('end', () => {
        events += JSON.parse(Buffer.concat(chunks)).events.length
        res.statusCode = 204
        res.end()
      })
    })
    server.keepAliveTimeout = 60000
    server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'))`
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] })
  const [data] = await once(child.stdout, 'data')
  const port = Number(String(data).trim())
  return {
    url: `http://127.0.0.1:${port}/audit`,
    count: async () => Number(await (await fetch(`http://127.0.0.1:${port}/`)).text()),
    stop: () => child.kill(),
  }
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-audit-'))
  const rows = []
  const skipped = []
  const cleanups = []
  try {
    if (runs('memory')) {
      const memory = []
      rows.push(
        await measure(
          'memory',
          () => (memory.push(createMemoryAuditSink()), memory.at(-1)),
          {},
          () => memory.reduce((n, s) => n + s.events.length, 0),
        ),
      )
      const memoryChained = []
      rows.push(
        await measure(
          'memory, chain on',
          () => (memoryChained.push(createMemoryAuditSink()), memoryChained.at(-1)),
          { integrity: CHAIN },
          () => memoryChained.reduce((n, s) => n + s.events.length, 0),
        ),
      )
    }

    if (runs('jsonl')) {
      const lines = (prefix) => () =>
        [0, 1, 2].reduce(
          (n, r) =>
            n + readFileSync(join(dir, `${prefix}-${r}.jsonl`), 'utf8').split('\n').length - 1,
          0,
        )
      const jsonl = (prefix, fsync) => (round) =>
        createJsonLinesFileSink({ path: join(dir, `${prefix}-${round}.jsonl`), fsync })
      rows.push(await measure('JSON-lines file, fsync off', jsonl('a', false), {}, lines('a')))
      rows.push(
        await measure(
          'JSON-lines file, fsync off, chain on',
          jsonl('b', false),
          { integrity: CHAIN },
          lines('b'),
        ),
      )
      rows.push(
        await measure(
          'JSON-lines file, fsync per batch, chain on',
          jsonl('c', true),
          { integrity: CHAIN },
          lines('c'),
        ),
      )
      rows.push(
        await measure(
          'JSON-lines file, fsync off, chain on, SOC2 + GDPR + HIPAA (redaction, hashed IPs)',
          jsonl('d', false),
          {
            integrity: CHAIN,
            compliance: ['SOC2', 'GDPR', 'HIPAA'],
            redaction: { ipKey: 'bench-ip-key-0123456789abcdef0123' },
          },
          lines('d'),
        ),
      )
    }

    if (runs('sqlite')) {
      const sqlitePath = join(dir, 'audit.db')
      const sqliteSinks = []
      rows.push(
        await measure(
          'SQLite file (WAL), chain on',
          () => createSqliteAuditSink({ database: sqlitePath }),
          { integrity: CHAIN },
          () => {
            const s = createSqliteAuditSink({ database: sqlitePath })
            sqliteSinks.push(s)
            let n = 0
            for (let after = 0; ;) {
              const page = s.read({ afterRow: after, limit: 1000 })
              if (page.length === 0) return n
              n += page.length
              after += page.length
            }
          },
        ),
      )
      for (const s of sqliteSinks) await s.close()
    }

    const { findPostgresBin, startPostgres } = await import('../test/helpers/postgres-server.ts')
    if (!runs('postgres')) {
      // not asked for
    } else if (findPostgresBin() === undefined)
      skipped.push('PostgreSQL (no initdb/postgres found)')
    else {
      const server = await startPostgres()
      cleanups.push(() => server.stop())
      const url = await server.createDatabase('bench_audit')
      const client = new pg.Client({ connectionString: url })
      await client.connect()
      const version = (await client.query('SHOW server_version')).rows[0].server_version
      await client.end()
      rows.push(
        await measure(
          `PostgreSQL ${version.split(' ')[0]} (loopback), chain on`,
          () => createPostgresAuditSink({ connectionString: url }),
          { integrity: CHAIN },
          async () => {
            const client = new pg.Client({ connectionString: url })
            await client.connect()
            const r = await client.query('SELECT count(*)::int AS n FROM portcullis_audit_events')
            await client.end()
            return r.rows[0].n
          },
        ),
      )
    }

    if (!runs('redis')) {
      // not asked for
    } else if (!redisAvailable()) skipped.push('Redis Stream (no redis-server found)')
    else {
      const redis = await startRedis()
      cleanups.push(() => redis.stop())
      const client = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true })
      await client.connect()
      cleanups.push(() => client.quit())
      rows.push(
        await measure(
          `Redis Stream ${redis.version} (loopback, XADD), chain on`,
          () => createRedisStreamAuditSink({ client, stream: 'bench:audit' }),
          { integrity: CHAIN },
          () => client.xlen('bench:audit'),
        ),
      )
      // The same with WAIT 1 against a replica on loopback: each batch is acknowledged only once
      // the replica has it. The sink gets a connection of its own (WAIT holds it).
      const { startRedisReplica } = await import('../test/helpers/redis-server.ts')
      const replica = await startRedisReplica({ port: redis.port })
      cleanups.push(() => replica.stop())
      const waiting = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true })
      await waiting.connect()
      cleanups.push(() => waiting.quit())
      rows.push(
        await measure(
          `Redis Stream ${redis.version} (loopback, XADD, \`waitForReplicas\`: WAIT 1 on a replica on loopback), chain on`,
          () =>
            createRedisStreamAuditSink({
              client: waiting,
              stream: 'bench:audit-wait',
              waitForReplicas: { replicas: 1, timeoutMs: 5000 },
            }),
          { integrity: CHAIN },
          () => client.xlen('bench:audit-wait'),
        ),
      )
    }

    if (runs('webhook')) {
      const receiver = await startReceiver()
      cleanups.push(() => receiver.stop())
      rows.push(
        await measure(
          'HTTP webhook (batched, to a receiver process on loopback), chain on',
          () => createWebhookAuditSink({ url: receiver.url }),
          { integrity: CHAIN },
          receiver.count,
        ),
      )
    }
  } finally {
    for (const c of cleanups.reverse()) await c()
    rmSync(dir, { recursive: true, force: true })
  }

  const out = [
    '| sink | events/s to durable (median) | min–max | `emit` on the request path (ns/event) |',
    '| :--- | ---: | ---: | ---: |',
    ...rows.map(
      (r) => `| ${r.label} | ${fmt(r.rate)} | ${fmt(r.min)}–${fmt(r.max)} | ${fmt(r.emitNs)} |`,
    ),
    '',
    `${EVENTS.toLocaleString('en-US')} events per round, ${ROUNDS} rounds after ${WARMUP.toLocaleString('en-US')} warm-up events, each round a fresh trail with the defaults (batches of 256, 50 ms flush interval). “events/s to durable” counts from the first \`emit\` to \`flush()\` resolving (every event acknowledged by the sink: written, fsync'd when the row says so, committed, or answered 2xx); “\`emit\`” is the time \`emit\` itself takes (a request pays nothing more), measured over a loop that queues all the round's events at once, so it includes the garbage collections that loop triggers: between about 0.07 and 1 µs from run to run. Every event was counted back from its sink. Node ${process.version}.`,
  ]
  if (skipped.length > 0) out.push('', `Skipped: ${skipped.join('; ')}.`)
  process.stdout.write(`${out.join('\n')}\n`)
}

await main()

/**
 * The benchmark suite: `npm run bench` (builds first), or after `npx tsc -b`:
 *
 *     node bench/run.mjs [--quick] [--rounds N]
 *
 * HTTP part: per round, for bare Express, API key and JWT in turn, starts `servers/express.mjs`
 * (pinned to one CPU when `taskset` exists), warms it up for 1 s, loads it with autocannon (10
 * connections, pipelining 1) from this process (re-executed on another CPU), records req/s,
 * latency, non-2xx responses and the server's RSS, and kills it. Any non-2xx response, error or
 * timeout makes the run invalid and the suite exit non-zero. Then the micro-benchmarks
 * (`micro.mjs`) run in this process. Writes `bench/RESULTS.md` and prints the same to stdout.
 * @module
 */
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { constants } from 'node:os'
import { createServer as createNetServer, connect } from 'node:net'
import { join, relative } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import {
  allowedCpus,
  BENCH_DIR,
  cpuSecondsOf,
  machineInfo,
  packageVersion,
  rssOf,
} from './lib/environment.mjs'
import { fmt, median, percentile, range, table } from './lib/stats.mjs'
import { microTable, runMicro } from './micro.mjs'

const SCRIPT = fileURLToPath(import.meta.url)
const SERVER = join(BENCH_DIR, 'servers', 'express.mjs')
const RESULTS = join(BENCH_DIR, 'RESULTS.md')
const HAS_REDIS = spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0
const VARIANTS = ['bare', 'apikey', 'jwt', 'limits', ...(HAS_REDIS ? ['limits-redis'] : [])]
const LABELS = {
  bare: 'bare Express',
  apikey: 'API key (x-api-key)',
  jwt: 'JWT HS256 (Bearer)',
  limits: 'API key + 2 limits + quota (memory)',
  'limits-redis': 'API key + 2 limits + quota (Redis)',
}
const CONNECTIONS = 10
const PIPELINING = 1
const WARMUP_SECONDS = 1
/** Environment variable telling the re-executed runner which CPUs to use: `server,runner`. */
const PIN_ENV = 'GATEHOUSE_BENCH_CPUS'
const SERVER_START_TIMEOUT_MS = 30_000
const SERVER_STOP_TIMEOUT_MS = 5_000

const USAGE = `usage: node bench/run.mjs [--quick] [--rounds N]
  --quick     3 rounds of 2 s (and shorter micro-benchmark batches) instead of 5 rounds of 5 s
  --rounds N  number of rounds (1-50)`

/**
 * @typedef {object} Run
 * @property {number} round
 * @property {string} variant
 * @property {number} rps autocannon's average of the per-second request counts
 * @property {number} total requests completed
 * @property {number} p50 latency, ms
 * @property {number} p99 latency, ms
 * @property {number} rss server resident set size at the end, bytes
 * @property {number} serverCpu share of one CPU the server used while measured (1 = saturated)
 * @property {number} runnerCpu share of one CPU the load generator used while measured
 * @property {boolean} valid
 * @property {string[]} problems why it is invalid
 */

/** @returns {{ quick: boolean, rounds: number, durationSeconds: number }} */
function options() {
  let parsed
  try {
    parsed = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        rounds: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values
  } catch (error) {
    console.error(`${error.message}\n${USAGE}`)
    process.exit(2)
  }
  if (parsed.help) {
    console.log(USAGE)
    process.exit(0)
  }
  const rounds = parsed.rounds === undefined ? (parsed.quick ? 3 : 5) : Number(parsed.rounds)
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50) {
    console.error(`--rounds must be an integer from 1 to 50\n${USAGE}`)
    process.exit(2)
  }
  return { quick: parsed.quick, rounds, durationSeconds: parsed.quick ? 2 : 5 }
}

/**
 * Re-executes this script under `taskset` on the runner CPU when pinning is possible and not yet
 * done. Returns the CPUs to use, or `undefined` when running unpinned.
 * @returns {Promise<{ server: number, runner: number } | undefined>}
 */
async function pinOrReexec() {
  const given = process.env[PIN_ENV]
  if (given !== undefined) {
    if (given === 'none') return undefined
    const [server, runner] = given.split(',').map(Number)
    return { server, runner }
  }
  const cpus = allowedCpus()
  if (cpus === undefined || cpus.length < 2) {
    process.env[PIN_ENV] = 'none'
    return undefined
  }
  const [server, runner] = cpus
  const child = spawn(
    'taskset',
    ['-c', String(runner), process.execPath, ...process.execArgv, SCRIPT, ...process.argv.slice(2)],
    { stdio: 'inherit', env: { ...process.env, [PIN_ENV]: `${server},${runner}` } },
  )
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal))
  const [code, signal] = await once(child, 'exit')
  process.exit(code ?? 128 + (constants.signals[signal] ?? 0))
}

/** The server being measured, killed if the runner dies. */
let current
process.on('exit', () => current?.kill('SIGKILL'))

/**
 * Starts a server and waits for its announcement line (it has passed its self-check by then).
 * @param {string} variant
 * @param {{ server: number } | undefined} pin
 * @returns {Promise<{ child: import('node:child_process').ChildProcess, exited: Promise<unknown>, port: number, headers: Record<string, string> }>}
 */
async function startServer(variant, pin) {
  const args = [SERVER, variant, '--exit-with-stdin']
  const child =
    pin === undefined
      ? spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] })
      : spawn('taskset', ['-c', String(pin.server), process.execPath, ...args], {
          stdio: ['pipe', 'pipe', 'inherit'],
        })
  current = child
  const exited = once(child, 'exit')
  const lines = createInterface({ input: child.stdout })
  let timer
  try {
    const line = await Promise.race([
      once(lines, 'line').then(([l]) => l),
      exited.then(([code, signal]) => {
        throw new Error(`server "${variant}" exited (${signal ?? code}) before it was ready`)
      }),
      new Promise((_, reject) => {
        timer = setTimeout(
          () =>
            reject(new Error(`server "${variant}" not ready after ${SERVER_START_TIMEOUT_MS} ms`)),
          SERVER_START_TIMEOUT_MS,
        )
      }),
    ])
    const { port, headers } = JSON.parse(line)
    return { child, exited, port, headers }
  } catch (error) {
    child.kill('SIGKILL')
    throw error
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Stops a server: SIGTERM, then SIGKILL if it lingers.
 * @param {{ child: import('node:child_process').ChildProcess, exited: Promise<unknown> }} server
 */
async function stopServer({ child, exited }) {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), SERVER_STOP_TIMEOUT_MS)
  await exited
  clearTimeout(timer)
  current = undefined
}

/**
 * Loads a URL with autocannon and measures latency per response (autocannon's own histogram
 * has 1 ms resolution, too coarse for a loopback server).
 * @param {string} url
 * @param {Record<string, string>} headers
 * @param {number} duration seconds
 */
async function load(url, headers, duration) {
  const latencies = []
  const statuses = new Map()
  const instance = autocannon({
    url,
    headers,
    connections: CONNECTIONS,
    pipelining: PIPELINING,
    duration,
  })
  instance.on('response', (_client, status, _bytes, ms) => {
    latencies.push(ms)
    statuses.set(status, (statuses.get(status) ?? 0) + 1)
  })
  const result = await instance
  const sorted = Float64Array.from(latencies).sort()
  const problems = []
  if (result.non2xx > 0) {
    const codes = [...statuses].filter(([s]) => s < 200 || s > 299)
    problems.push(`${result.non2xx} non-2xx (${codes.map(([s, n]) => `${s}×${n}`).join(', ')})`)
  }
  if (result.errors > 0) problems.push(`${result.errors} errors`)
  if (result.timeouts > 0) problems.push(`${result.timeouts} timeouts`)
  if (result['2xx'] === 0) problems.push('no 2xx response')
  return {
    rps: result.requests.average,
    total: result.requests.total,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    problems,
  }
}

/**
 * One measured run of a variant.
 * @returns {Promise<Run>}
 */
async function runOnce(variant, round, opts, pin) {
  const server = await startServer(variant, pin)
  try {
    const url = `http://127.0.0.1:${server.port}/docs/1`
    const warm = await load(url, server.headers, WARMUP_SECONDS)
    const pid = server.child.pid
    const cpu0 = cpuSecondsOf(pid)
    const own0 = process.cpuUsage()
    const t0 = process.hrtime.bigint()
    const r = await load(url, server.headers, opts.durationSeconds)
    const wall = Number(process.hrtime.bigint() - t0) / 1e9
    const own = process.cpuUsage(own0)
    const serverCpu = (cpuSecondsOf(pid) - cpu0) / wall
    const runnerCpu = (own.user + own.system) / 1e6 / wall
    const rss = rssOf(pid)
    const problems = [...warm.problems.map((p) => `warm-up: ${p}`), ...r.problems]
    if (server.child.exitCode !== null || server.child.signalCode !== null)
      problems.push('server died during the run')
    return {
      round,
      variant,
      ...r,
      rss,
      serverCpu,
      runnerCpu,
      valid: problems.length === 0,
      problems,
    }
  } finally {
    await stopServer(server)
  }
}

/**
 * Medians and ranges per variant, and the per-round ratios against bare.
 * @param {readonly Run[]} runs
 */
function summarize(runs) {
  const valid = runs.filter((r) => r.valid)
  const perVariant = VARIANTS.map((variant) => {
    const mine = valid.filter((r) => r.variant === variant)
    const rps = mine.map((r) => r.rps)
    return {
      variant,
      runs: mine.length,
      invalid: runs.filter((r) => r.variant === variant && !r.valid).length,
      rps: median(rps),
      ...range(rps),
      p50: median(mine.map((r) => r.p50)),
      p99: median(mine.map((r) => r.p99)),
      rss: median(mine.map((r) => r.rss)),
      serverCpu: median(mine.map((r) => r.serverCpu)),
    }
  })
  const ratios = VARIANTS.filter((v) => v !== 'bare').map((variant) => {
    const values = []
    for (const r of valid.filter((x) => x.variant === variant)) {
      const bare = valid.find((x) => x.variant === 'bare' && x.round === r.round)
      if (bare !== undefined) values.push(r.rps / bare.rps)
    }
    return { variant, pairs: values.length, ratio: median(values), ...range(values) }
  })
  return { perVariant, ratios }
}

/** The exact command, as the user typed it (through npm or not). */
function commandLine() {
  const args = process.argv.slice(2)
  if (process.env.npm_lifecycle_event === 'bench') {
    const script = process.env.npm_lifecycle_script
    const npm = `\`npm run bench${args.length > 0 ? ` -- ${args.join(' ')}` : ''}\``
    return script === undefined ? npm : `${npm} (runs \`${script}\`)`
  }
  return `\`${['node', relative(process.cwd(), SCRIPT) || SCRIPT, ...args].join(' ')}\``
}

const MiB = 2 ** 20

/**
 * The report, in Markdown.
 */
function report({ opts, pin, runs, micro, microError, startedAt, machine, loadEnd, elapsedMs }) {
  const { perVariant, ratios } = summarize(runs)
  const invalid = runs.filter((r) => !r.valid)
  const versions = ['express', 'jose', 'autocannon', 'jsonwebtoken', 'fast-jwt', '@gatehouse/core']
    .map((n) => `${n} ${packageVersion(n) ?? '(not installed)'}`)
    .join(', ')
  const mode = opts.quick ? 'quick' : 'full'
  const out = ['# Gatehouse benchmark results', '']
  if (invalid.length > 0 || microError !== undefined) {
    out.push(
      `> **INVALID:** ${invalid.length} HTTP run(s) had non-2xx responses, errors or timeouts` +
        `${microError === undefined ? '' : `, and the micro-benchmarks failed (${microError})`}. ` +
        'Do not use these numbers.',
      '',
    )
  }
  out.push(
    `- Date: ${startedAt.toISOString()} (took ${fmt(elapsedMs / 1000)} s)`,
    `- Machine: ${machine.cpu}, ${machine.cores} cores, ${fmt(machine.memoryGiB, 1)} GiB RAM, ${machine.kernel}`,
    `- Load average (1/5/15 min): ${machine.load.map((l) => fmt(l, 2)).join(' / ')} at start, ${loadEnd.map((l) => fmt(l, 2)).join(' / ')} at end`,
    `- Node: ${process.version}`,
    `- Packages: ${versions}`,
    `- Command: ${commandLine()}`,
    `- Mode: ${mode}: ${opts.rounds} rounds × (${VARIANTS.join(', ')}) interleaved; each run ${WARMUP_SECONDS} s warm-up + ${opts.durationSeconds} s measured; ${opts.quick ? 'short' : 'full'} micro-benchmark batches`,
    `- Load: autocannon, ${CONNECTIONS} connections, pipelining ${PIPELINING}, \`GET /docs/1\` → \`{"id":"1"}\` on 127.0.0.1, Express 5, gate audit off`,
    pin === undefined
      ? '- CPU pinning: none (taskset unavailable or fewer than 2 CPUs): server and load generator share the CPUs'
      : `- CPU pinning: servers on CPU ${pin.server}; load generator and micro-benchmarks on CPU ${pin.runner} (taskset)`,
    '',
    `## HTTP throughput (${opts.rounds} rounds)`,
    '',
    table(
      [
        'Variant',
        'req/s median',
        'min',
        'max',
        'p50 ms',
        'p99 ms',
        'RSS MiB',
        'server CPU',
        'valid runs',
      ],
      perVariant.map((v) => [
        LABELS[v.variant],
        fmt(v.rps),
        fmt(v.min),
        fmt(v.max),
        fmt(v.p50, 2),
        fmt(v.p99, 2),
        fmt(v.rss / MiB, 1),
        `${fmt(v.serverCpu * 100)} %`,
        `${v.runs}/${v.runs + v.invalid}`,
      ]),
    ),
    '',
    'Latency, RSS and CPU columns are medians over the rounds. Latency is per response as seen by the load generator; RSS is the server’s at the end of the run; server CPU is the share of one core the server process used while measured (well below 100 % means that something else held it back: the load generator, or a neighbour on a noisy machine).',
    '',
    '## Throughput relative to bare Express (same round)',
    '',
    table(
      ['Variant / bare', 'median', 'min', 'max', 'cost (1 − median)', 'pairs'],
      ratios.map((r) => [
        LABELS[r.variant],
        fmt(r.ratio, 3),
        fmt(r.min, 3),
        fmt(r.max, 3),
        `${fmt((1 - r.ratio) * 100, 1)} %`,
        String(r.pairs),
      ]),
    ),
    '',
    '## Micro-benchmarks (one process, ns per operation, median of 5 batches)',
    '',
    micro === undefined ? `Not run: ${microError}` : microTable(micro),
    '',
    'Floors: **a** is the least work of a correct HS256 check (HMAC, constant-time compare, `JSON.parse`, `exp`); **b** the least work of an API-key check (one SHA-256 and a `Map` lookup). JWT rows are compared with **a**, API-key rows with **b**. The verifiers check `iss` and `aud` as well; the floors do not. The whole-gate rows include credential extraction, the request id, authorization and the decision trace; **i** also includes writing every audit event (the timed batch ends when the file has them all).',
    '',
    '## How to read this',
    '',
    'The ratios are the result; the absolute numbers belong to this machine, its load and this Node version, and will differ elsewhere. Each HTTP ratio divides a gated variant’s requests per second by the bare Express run of the same round (runs are interleaved, so slow drift of a noisy machine hits both sides of a pair alike); the median over rounds is the figure to quote and min–max shows how noisy the machine was. A ratio of 0.80 means that the gate costs 20 % of the throughput of a route that does nothing; a real route does more work per request, so the relative cost of the gate shrinks. In the micro table, “vs floor” says how many times the least possible work an operation costs: a cached check can go below 1×, because it skips the cryptography the floor must do, and the peer libraries show what the same check costs elsewhere.',
    '',
    '## Per-run data',
    '',
    table(
      [
        'Round',
        'Variant',
        'req/s',
        'requests',
        'p50 ms',
        'p99 ms',
        'RSS MiB',
        'server CPU',
        'runner CPU',
        'valid',
      ],
      runs.map((r) => [
        String(r.round),
        r.variant,
        fmt(r.rps),
        fmt(r.total),
        fmt(r.p50, 2),
        fmt(r.p99, 2),
        fmt(r.rss / MiB, 1),
        `${fmt(r.serverCpu * 100)} %`,
        `${fmt(r.runnerCpu * 100)} %`,
        r.valid ? 'yes' : `**no**: ${r.problems.join('; ')}`,
      ]),
    ),
    '',
  )
  return out.join('\n')
}

/** Starts a throw-away redis-server on a free loopback port for the Redis variant. */
async function startRedis() {
  const probe = createNetServer()
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const port = probe.address().port
  await new Promise((resolve) => probe.close(resolve))
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  )
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((resolve) => {
      const s = connect(port, '127.0.0.1', () => s.write('PING\r\n'))
      s.once('data', (d) => (s.destroy(), resolve(d.toString().startsWith('+PONG'))))
      s.once('error', () => resolve(false))
    })
    if (ok) break
    await new Promise((r) => setTimeout(r, 50))
  }
  process.env.BENCH_REDIS_PORT = String(port)
  process.once('exit', () => child.kill('SIGKILL'))
  return child
}

async function main() {
  const opts = options()
  const pin = await pinOrReexec()
  if (HAS_REDIS) await startRedis()
  const startedAt = new Date()
  const machine = machineInfo()
  const log = (line) => process.stderr.write(`${line}\n`)
  log(
    `bench: ${opts.quick ? 'quick' : 'full'} mode, ${opts.rounds} rounds, ${pin === undefined ? 'unpinned' : `server on CPU ${pin.server}, runner on CPU ${pin.runner}`}`,
  )

  /** @type {Run[]} */
  const runs = []
  for (let round = 1; round <= opts.rounds; round++) {
    for (const variant of VARIANTS) {
      let run
      try {
        run = await runOnce(variant, round, opts, pin)
      } catch (error) {
        // A server that fails its self-check or does not start would fail every run: stop here.
        log(`bench: ABORTED: ${error.message}`)
        process.exit(1)
      }
      runs.push(run)
      log(
        `[round ${round}/${opts.rounds}] ${variant.padEnd(6)} ${fmt(run.rps).padStart(7)} req/s  p50 ${fmt(run.p50, 2)} ms  p99 ${fmt(run.p99, 2)} ms  RSS ${fmt(run.rss / MiB, 1)} MiB  server CPU ${fmt(run.serverCpu * 100)} %`,
      )
      if (!run.valid)
        log(`bench: INVALID RUN (round ${round}, ${variant}): ${run.problems.join('; ')}`)
      await sleep(200)
    }
  }

  let micro
  let microError
  try {
    micro = await runMicro({ quick: opts.quick, log })
  } catch (error) {
    microError = error.message
    log(`bench: MICRO-BENCHMARKS FAILED: ${error.stack ?? error}`)
  }

  const text = report({
    opts,
    pin,
    runs,
    micro,
    microError,
    startedAt,
    machine,
    loadEnd: machineInfo().load,
    elapsedMs: Date.now() - startedAt.getTime(),
  })
  writeFileSync(RESULTS, text)
  console.log(text)
  const invalid = runs.filter((r) => !r.valid).length
  if (invalid > 0 || microError !== undefined) {
    log(
      `bench: FAILED: ${invalid} invalid run(s)${microError === undefined ? '' : ', micro-benchmarks failed'}; see ${relative(process.cwd(), RESULTS)}`,
    )
    process.exit(1)
  }
  log(`bench: wrote ${relative(process.cwd(), RESULTS)}`)
}

await main()

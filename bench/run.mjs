/**
 * The benchmark suite: `npm run bench [-- --quick]` (builds first), or after `npx tsc -b`:
 *
 *     node bench/run.mjs [--quick] [--rounds N] [--parts http,micro,scale,policy,audit]
 *     node bench/run.mjs --profile [--variant full] [--frameworks express,koa,fastify]
 *
 * HTTP part: starts one server per (framework, variant) of {@link plan} (`servers/server.mjs`,
 * pinned to one CPU when `taskset` exists; each checks itself before announcing), warms each up,
 * then in every round loads each in turn with autocannon (10 connections, pipelining 1) from this
 * process (re-executed on the other CPU): bare framework first, then its variants, so that every
 * variant has a bare run of the same framework in the same round to be divided by. Records req/s,
 * latency, non-2xx responses, the server's CPU time and RSS. Any non-2xx response, error or timeout
 * makes the run invalid and the suite exit non-zero. A throw-away redis-server serves the Redis
 * variant. Then the micro-benchmarks (`micro.mjs`, in this process), scale and memory
 * (`scale.mjs`, in a child with `--expose-gc`), the policy-engine comparison (`policy.mjs`, in a
 * child, when present) and the audit pipeline's throughput per sink (`audit.mjs`, in a child). Writes `bench/RESULTS.md` (`RESULTS.quick.md` with `--quick`) and prints it.
 *
 * `--profile`: instead of all that, runs one variant (default: the full gate) on each framework
 * under `--cpu-prof` for a few seconds of load, writes the profiles to `bench/profiles/` and prints their top frames.
 * @module
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { constants } from 'node:os'
import { join, relative } from 'node:path'
import { createInterface } from 'node:readline'
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
import { redisAvailable, startRedis } from './lib/redis.mjs'
import { fmt, median, percentile, range, table } from './lib/stats.mjs'
import { microTable, microTargets, runMicro } from './micro.mjs'
import { scaleTable } from './scale.mjs'
import { PORTCULLIS, prometheusMetrics } from './servers/variants.mjs'

const SCRIPT = fileURLToPath(import.meta.url)
const SERVER = join(BENCH_DIR, 'servers', 'server.mjs')
// A quick run is a check, not a result: it never overwrites the full run's RESULTS.md.
const resultsFile = (quick) => join(BENCH_DIR, quick ? 'RESULTS.quick.md' : 'RESULTS.md')
const PROFILES = join(BENCH_DIR, 'profiles')
const FRAMEWORK_LABELS = { express: 'Express 5', koa: 'Koa 3', fastify: 'Fastify 5' }
const LABELS = {
  bare: 'bare',
  noop: 'no-op middleware at the mount points',
  floor: 'API-key floor only (SHA-256 + Map lookup in one middleware)',
  apikey: 'Portcullis API key',
  hs256: 'Portcullis JWT HS256',
  rs256: 'Portcullis JWT RS256',
  es256: 'Portcullis JWT ES256',
  eddsa: 'Portcullis JWT EdDSA',
  full: 'Portcullis full gate (audit on)',
  'full-noaudit': 'Portcullis full gate, audit off',
  'full-durable': 'Portcullis full gate, durable audit (answer waits for fdatasync)',
  'full-redis': 'Portcullis full gate, Redis limits + quota',
  'full-metrics': 'Portcullis full gate + Prometheus metrics',
  'peer-expressjwt': 'peer: express-jwt + express-rate-limit + scope check',
  'peer-passportjwt': 'peer: passport-jwt + scope check',
  'peer-passportapikey': 'peer: passport-headerapikey (SHA-256 + Map) + scope check',
  'peer-koajwt': 'peer: koa-jwt + rate-limiter-flexible + scope check',
  'peer-fastifyjwt': 'peer: @fastify/jwt + @fastify/rate-limit + scope check',
}
const CONNECTIONS = 10
const PIPELINING = 1
/** Environment variable telling the re-executed runner which CPUs to use: `server,runner`. */
const PIN_ENV = 'PORTCULLIS_BENCH_CPUS'
const SERVER_START_TIMEOUT_MS = 60_000
const SERVER_STOP_TIMEOUT_MS = 5_000
const MiB = 2 ** 20
const PARTS = ['http', 'micro', 'scale', 'policy', 'audit']

const USAGE = `usage: node bench/run.mjs [--quick] [--rounds N] [--parts ${PARTS.join(',')}] [--profile]
  --quick     3 rounds of 1 s runs of the variants the targets need (and shorter micro-benchmarks,
              smaller scale runs)
              instead of 5 rounds of 0.5 s warm-up + 3 s measured
  --rounds N  number of rounds (1-50)
  --parts     which parts to run (default: all)
  --profile   profile the full gate on each framework with --cpu-prof instead (bench/profiles/)
  --variant   with --profile: the variant to profile (default: full)
  --frameworks  with --profile: which frameworks (default: express,koa,fastify)`

/**
 * @typedef {object} Run
 * @property {number} round
 * @property {string} framework
 * @property {string} variant
 * @property {number} rps autocannon's average of the per-second request counts
 * @property {number} total requests completed
 * @property {number} p50 latency, ms
 * @property {number} p99 latency, ms
 * @property {number} rss server resident set size at the end, bytes
 * @property {number} serverCpu share of one CPU the server used while measured (1 = saturated)
 * @property {number} cpuPerRequest server CPU µs per request
 * @property {number} runnerCpu share of one CPU the load generator used while measured
 * @property {boolean} valid
 * @property {string[]} problems why it is invalid
 */

function options() {
  let parsed
  try {
    parsed = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        rounds: { type: 'string' },
        parts: { type: 'string' },
        profile: { type: 'boolean', default: false },
        variant: { type: 'string', default: 'full' },
        frameworks: { type: 'string' },
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
  const parts = parsed.parts === undefined ? PARTS : parsed.parts.split(',')
  if (parts.some((p) => !PARTS.includes(p))) {
    console.error(`--parts takes a list of ${PARTS.join(', ')}\n${USAGE}`)
    process.exit(2)
  }
  const frameworks =
    parsed.frameworks === undefined ? Object.keys(FRAMEWORK_LABELS) : parsed.frameworks.split(',')
  if (frameworks.some((f) => !(f in FRAMEWORK_LABELS)) || !(parsed.variant in LABELS)) {
    console.error(
      `--frameworks takes a list of ${Object.keys(FRAMEWORK_LABELS).join(', ')}; --variant one of ${Object.keys(LABELS).join(', ')}\n${USAGE}`,
    )
    process.exit(2)
  }
  return {
    quick: parsed.quick,
    rounds,
    parts,
    profile: parsed.profile,
    variant: parsed.variant,
    frameworks,
    // Servers stay up for the whole suite: one warm-up each at start, a short one before each run.
    initialWarmupSeconds: parsed.quick ? 1 : 2,
    warmupSeconds: parsed.quick ? 0 : 0.5,
    // autocannon stops on its per-second tick: durations are whole seconds.
    durationSeconds: parsed.quick ? 1 : 3,
  }
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

// Measured on Express only: the Portcullis variants that need more than the framework.
const EXPRESS_ONLY = ['full-redis', 'full-metrics']

/**
 * What the HTTP part measures, per framework, bare first. Audit, Redis and metrics variants are
 * measured on every framework for audit and on Express only for Redis and metrics. Quick mode keeps
 * what the targets are computed from (bare, API key, full gate with and without audit, Redis, the
 * JWT + rate-limit peer) and drops the per-algorithm JWT rows, the no-op mount-point floor, the API-key
 * floor and the passport peers.
 * @param {{ redis: boolean, metrics: boolean }} has
 * @param {boolean} quick
 * @returns {Array<{ framework: string, variant: string }>}
 */
function plan(has, quick) {
  const common = quick
    ? ['bare', 'apikey', 'full', 'full-noaudit', 'full-durable']
    : ['bare', 'noop', 'floor', ...PORTCULLIS.filter((v) => !EXPRESS_ONLY.includes(v))]
  const per = {
    express: [
      ...common,
      ...(has.redis ? ['full-redis'] : []),
      ...(has.metrics && !quick ? ['full-metrics'] : []),
      'peer-expressjwt',
      ...(quick ? [] : ['peer-passportjwt', 'peer-passportapikey']),
    ],
    koa: [...common, 'peer-koajwt'],
    fastify: [...common, 'peer-fastifyjwt'],
  }
  return Object.entries(per).flatMap(([framework, vs]) =>
    vs.map((variant) => ({ framework, variant })),
  )
}

/** Servers started, killed if the runner dies. */
const live = new Set()
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL')
})

/**
 * Starts a server and waits for its announcement line (it has passed its self-check by then).
 * @param {string} framework
 * @param {string} variant
 * @param {{ server: number } | undefined} pin
 * @param {readonly string[]} [nodeArgs]
 */
async function startServer(framework, variant, pin, nodeArgs = []) {
  const args = [...nodeArgs, SERVER, framework, variant, '--exit-with-stdin']
  const stdio = ['pipe', 'pipe', 'inherit']
  const child =
    pin === undefined
      ? spawn(process.execPath, args, { stdio })
      : spawn('taskset', ['-c', String(pin.server), process.execPath, ...args], { stdio })
  live.add(child)
  const exited = once(child, 'exit')
  const lines = createInterface({ input: child.stdout })
  let timer
  const name = `${framework} ${variant}`
  try {
    const line = await Promise.race([
      once(lines, 'line').then(([l]) => l),
      exited.then(([code, signal]) => {
        throw new Error(`server "${name}" exited (${signal ?? code}) before it was ready`)
      }),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`server "${name}" not ready after ${SERVER_START_TIMEOUT_MS} ms`)),
          SERVER_START_TIMEOUT_MS,
        )
      }),
    ])
    const { port, headers } = JSON.parse(line)
    return { framework, variant, child, exited, port, headers }
  } catch (error) {
    child.kill('SIGKILL')
    throw error
  } finally {
    clearTimeout(timer)
  }
}

/** Stops a server: closes its stdin (it exits by itself), then SIGTERM, then SIGKILL. */
async function stopServer({ child, exited }) {
  if (child.exitCode === null && child.signalCode === null) {
    child.stdin.end()
    const term = setTimeout(() => child.kill('SIGTERM'), SERVER_STOP_TIMEOUT_MS)
    const kill = setTimeout(() => child.kill('SIGKILL'), 2 * SERVER_STOP_TIMEOUT_MS)
    await exited
    clearTimeout(term)
    clearTimeout(kill)
  }
  live.delete(child)
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
 * One measured run against a running server.
 * @returns {Promise<Run>}
 */
async function runOnce(server, round, opts) {
  const url = `http://127.0.0.1:${server.port}/docs/1`
  const warm =
    opts.warmupSeconds > 0 ? await load(url, server.headers, opts.warmupSeconds) : { problems: [] }
  const pid = server.child.pid
  const cpu0 = cpuSecondsOf(pid)
  const own0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  const r = await load(url, server.headers, opts.durationSeconds)
  const wall = Number(process.hrtime.bigint() - t0) / 1e9
  const own = process.cpuUsage(own0)
  const serverCpuSeconds = cpuSecondsOf(pid) - cpu0
  const problems = [...warm.problems.map((p) => `warm-up: ${p}`), ...r.problems]
  if (server.child.exitCode !== null || server.child.signalCode !== null)
    problems.push('server died during the run')
  return {
    round,
    framework: server.framework,
    variant: server.variant,
    ...r,
    rss: rssOf(pid),
    serverCpu: serverCpuSeconds / wall,
    cpuPerRequest: (serverCpuSeconds * 1e6) / r.total,
    runnerCpu: (own.user + own.system) / 1e6 / wall,
    valid: problems.length === 0,
    problems,
  }
}

/**
 * Per-round ratios of `a` over `b` (same framework unless given), median and range.
 * @param {readonly Run[]} valid
 */
function pairRatio(valid, framework, a, b, bFramework = framework) {
  const values = []
  for (const r of valid) {
    if (r.framework !== framework || r.variant !== a) continue
    const other = valid.find(
      (x) => x.framework === bFramework && x.variant === b && x.round === r.round,
    )
    if (other !== undefined) values.push(r.rps / other.rps)
  }
  return { ratio: median(values), ...range(values), pairs: values.length }
}

/** A whole number of µs with its sign: `+12`, `−3`, `+0`. */
function signed(us) {
  if (!Number.isFinite(us)) return 'n/a'
  const n = Math.round(us) || 0 // never -0
  return n < 0 ? `−${fmt(-n, 0)}` : `+${fmt(n, 0)}`
}

/** Median over rounds of the server CPU µs per request that `a` adds to bare. */
function addedCpu(valid, framework, variant) {
  const values = []
  for (const r of valid) {
    if (r.framework !== framework || r.variant !== variant) continue
    const bare = valid.find(
      (x) => x.framework === framework && x.variant === 'bare' && x.round === r.round,
    )
    if (bare !== undefined) values.push(r.cpuPerRequest - bare.cpuPerRequest)
  }
  return median(values)
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

const fmtRatio = (r) =>
  Number.isFinite(r.ratio) ? `${fmt(r.ratio, 3)} (${fmt(r.min, 2)}–${fmt(r.max, 2)})` : 'n/a'
const verdict = (value, target) =>
  !Number.isFinite(value) ? 'not measured' : value >= target ? 'met' : '**not met**'

/**
 * The HTTP sections of the report, and the target rows they measure.
 * @param {readonly Run[]} runs
 * @param {ReturnType<typeof plan>} entries
 */
function httpReport(runs, entries, opts) {
  const valid = runs.filter((r) => r.valid)
  const out = []
  const targets = []
  for (const framework of Object.keys(FRAMEWORK_LABELS)) {
    const variants = entries.filter((e) => e.framework === framework).map((e) => e.variant)
    if (variants.length === 0) continue
    const rows = variants.map((variant) => {
      const mine = valid.filter((r) => r.framework === framework && r.variant === variant)
      const rps = mine.map((r) => r.rps)
      const { min, max } = range(rps)
      const ratio = variant === 'bare' ? undefined : pairRatio(valid, framework, variant, 'bare')
      const all = runs.filter((r) => r.framework === framework && r.variant === variant)
      return [
        LABELS[variant],
        fmt(median(rps)),
        `${fmt(min)}–${fmt(max)}`,
        ratio === undefined ? '1' : fmtRatio(ratio),
        variant === 'bare'
          ? fmt(median(mine.map((r) => r.cpuPerRequest)), 0)
          : signed(addedCpu(valid, framework, variant)),
        fmt(median(mine.map((r) => r.p50)), 2),
        fmt(median(mine.map((r) => r.p99)), 2),
        fmt(median(mine.map((r) => r.rss)) / MiB, 1),
        `${fmt(median(mine.map((r) => r.serverCpu)) * 100)} %`,
        `${mine.length}/${all.length}`,
      ]
    })
    out.push(
      `### ${FRAMEWORK_LABELS[framework]}`,
      '',
      table(
        [
          'Variant',
          'req/s median',
          'min–max',
          'vs bare (same round): median (min–max)',
          'server CPU µs/req (bare) or added',
          'p50 ms',
          'p99 ms',
          'RSS MiB',
          'server CPU',
          'valid runs',
        ],
        rows,
      ),
      '',
    )
  }

  // Comparisons and targets.
  const cmp = []
  const addCmp = (label, r, target) => {
    cmp.push([
      label,
      fmtRatio(r),
      String(r.pairs),
      target === undefined ? '' : `≥ ${target}`,
      target === undefined ? '' : verdict(r.ratio, target),
    ])
    if (target !== undefined) targets.push({ label, value: r.ratio, target })
  }
  const fullTargets = { express: 0.95, koa: 0.9, fastify: 0.85 }
  for (const [framework, t] of Object.entries(fullTargets))
    addCmp(
      `${FRAMEWORK_LABELS[framework]}: full gate / bare`,
      pairRatio(valid, framework, 'full', 'bare'),
      t,
    )
  const peerTargets = {
    express: [['peer-expressjwt', 1.4], ['peer-passportjwt'], ['peer-passportapikey']],
    koa: [['peer-koajwt', 2]],
    fastify: [['peer-fastifyjwt', 2]],
  }
  for (const [framework, peers] of Object.entries(peerTargets))
    for (const [peer, t] of peers)
      addCmp(
        `${FRAMEWORK_LABELS[framework]}: full gate / ${LABELS[peer].replace('peer: ', '')}`,
        pairRatio(valid, framework, 'full', peer),
        t,
      )
  for (const [framework] of Object.entries(fullTargets))
    for (const [peer] of peerTargets[framework])
      addCmp(
        `${FRAMEWORK_LABELS[framework]}: ${LABELS[peer]} / bare`,
        pairRatio(valid, framework, peer, 'bare'),
      )
  // Two floors (full mode only): what the framework charges for the mount points of any
  // middleware-based gate (noop), and the issue's API-key floor, one SHA-256 + Map lookup and
  // nothing else (floor), the ceiling of any API-key gate.
  for (const floorVariant of ['noop', 'floor'])
    for (const framework of Object.keys(fullTargets))
      if (entries.some((e) => e.framework === framework && e.variant === floorVariant)) {
        addCmp(
          `${FRAMEWORK_LABELS[framework]}: ${LABELS[floorVariant]} / bare`,
          pairRatio(valid, framework, floorVariant, 'bare'),
        )
        addCmp(
          `${FRAMEWORK_LABELS[framework]}: full gate / ${LABELS[floorVariant]}`,
          pairRatio(valid, framework, 'full', floorVariant),
        )
      }
  for (const framework of Object.keys(fullTargets))
    addCmp(
      `${FRAMEWORK_LABELS[framework]}: audit on / audit off (full gate)`,
      pairRatio(valid, framework, 'full', 'full-noaudit'),
      0.95,
    )
  for (const framework of Object.keys(fullTargets))
    if (entries.some((e) => e.framework === framework && e.variant === 'full-durable'))
      addCmp(
        `${FRAMEWORK_LABELS[framework]}: durable audit / audit on (full gate)`,
        pairRatio(valid, framework, 'full-durable', 'full'),
      )
  if (entries.some((e) => e.variant === 'full-redis'))
    addCmp(
      'Express 5: Redis limits + quota / memory (full gate)',
      pairRatio(valid, 'express', 'full-redis', 'full'),
      0.7,
    )
  if (entries.some((e) => e.variant === 'full-metrics'))
    addCmp(
      'Express 5: metrics on / off (full gate)',
      pairRatio(valid, 'express', 'full-metrics', 'full'),
    )

  out.push(
    '### Ratios: targets of issue 9 and comparisons (per-round pairs)',
    '',
    table(['Ratio', 'median (min–max)', 'pairs', 'target', 'verdict'], cmp),
    '',
  )
  return { text: out.join('\n'), targets, rounds: opts.rounds }
}

function perRunTable(runs) {
  return table(
    [
      'Round',
      'Framework',
      'Variant',
      'req/s',
      'requests',
      'p50 ms',
      'p99 ms',
      'RSS MiB',
      'server CPU',
      'µs/req',
      'runner CPU',
      'valid',
    ],
    runs.map((r) => [
      String(r.round),
      r.framework,
      r.variant,
      fmt(r.rps),
      fmt(r.total),
      fmt(r.p50, 2),
      fmt(r.p99, 2),
      fmt(r.rss / MiB, 1),
      `${fmt(r.serverCpu * 100)} %`,
      fmt(r.cpuPerRequest, 0),
      `${fmt(r.runnerCpu * 100)} %`,
      r.valid ? 'yes' : `**no**: ${r.problems.join('; ')}`,
    ]),
  )
}

/** Runs a bench script in a child process; returns its stdout or throws with its stderr. */
async function child(args) {
  const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  c.stdout.on('data', (d) => (stdout += d))
  c.stderr.on('data', (d) => (stderr += d))
  const [code] = await once(c, 'exit')
  return { code, stdout, stderr }
}

/** `--profile`: one variant (default: the full gate) of each framework under --cpu-prof. */
async function profile(opts, pin, log) {
  mkdirSync(PROFILES, { recursive: true })
  const summaries = []
  const { variant } = opts
  for (const framework of opts.frameworks) {
    const dir = join(PROFILES, variant === 'full' ? framework : `${framework}-${variant}`)
    mkdirSync(dir, { recursive: true })
    for (const f of readdirSync(dir)) if (f.endsWith('.cpuprofile')) writeFileSync(join(dir, f), '')
    const server = await startServer(framework, variant, pin, ['--cpu-prof', '--cpu-prof-dir', dir])
    const url = `http://127.0.0.1:${server.port}/docs/1`
    await load(url, server.headers, 1)
    const r = await load(url, server.headers, opts.quick ? 2 : 8)
    await stopServer(server)
    const file = readdirSync(dir)
      .filter((f) => f.endsWith('.cpuprofile'))
      .map((f) => join(dir, f))
      .find((f) => readFileSync(f).length > 0)
    if (file === undefined) throw new Error(`no profile written for ${framework}`)
    const prof = JSON.parse(readFileSync(file, 'utf8'))
    const top = topFrames(prof)
    const groups = topFrames(prof, 12, groupOf)
    const text = [
      `### ${FRAMEWORK_LABELS[framework]}, ${LABELS[variant]} (${fmt(r.rps)} req/s while profiled; ${relative(process.cwd(), file)})`,
      '',
      table(
        ['self %', 'function', 'where'],
        top.map((t) => [fmt(t.share * 100, 1), t.name, t.where]),
        ['r', 'l', 'l'],
      ),
      '',
      table(
        ['self %', 'by where the code lives'],
        groups.map((t) => [fmt(t.share * 100, 1), t.name]),
        ['r', 'l'],
      ),
      '',
    ].join('\n')
    summaries.push(text)
    log(text)
  }
  const out = join(PROFILES, variant === 'full' ? 'SUMMARY.md' : `SUMMARY-${variant}.md`)
  writeFileSync(out, `# CPU profiles (${LABELS[variant]})\n\n${summaries.join('\n')}`)
  log(`bench: wrote ${relative(process.cwd(), out)}`)
}

/** A frame's group: the package or core folder its code is in, node internals, or native. */
function groupOf(name, where) {
  if (where === '(native)') return ['GC, idle and native', '']
  if (where.startsWith('node:')) return ['Node internals (http, net, streams, crypto)', '']
  const core = /^packages\/([^/]+)\/dist\/(?:([^/]+)\/)?/.exec(where)
  if (core !== null)
    return [`@portcullis/${core[1]}${core[2] === undefined ? '' : ` ${core[2]}/`}`, '']
  const mod = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(where)
  return [mod === null ? where : mod[1], '']
}

/**
 * The frames with the most self time in a .cpuprofile (by function and location, or by `group`).
 * @param {any} prof
 * @param {number} [n]
 * @param {(name: string, where: string) => [string, string]} [group]
 */
function topFrames(prof, n = 25, group = (name, where) => [name, where]) {
  const ticks = new Map()
  for (const id of prof.samples) ticks.set(id, (ticks.get(id) ?? 0) + 1)
  const byFrame = new Map()
  let total = 0
  for (const node of prof.nodes) {
    const hits = ticks.get(node.id) ?? 0
    if (hits === 0) continue
    total += hits
    const cf = node.callFrame
    const url = cf.url.replace(/^file:\/\//, '')
    const where =
      url === '' ? '(native)' : `${relative(join(BENCH_DIR, '..'), url)}:${cf.lineNumber + 1}`
    const key = group(cf.functionName || '(anonymous)', where).join('\u0000')
    byFrame.set(key, (byFrame.get(key) ?? 0) + hits)
  }
  return [...byFrame]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([key, hits]) => {
      const [name, where] = key.split('\u0000')
      return { name, where, share: hits / total }
    })
}

async function main() {
  const opts = options()
  const pin = await pinOrReexec()
  const log = (line) => process.stderr.write(`${line}\n`)
  if (opts.profile) return profile(opts, pin, log)

  const startedAt = new Date()
  const machine = machineInfo()
  const has = { redis: redisAvailable(), metrics: (await prometheusMetrics()) !== undefined }
  log(
    `bench: ${opts.quick ? 'quick' : 'full'} mode, ${opts.rounds} rounds, ${pin === undefined ? 'unpinned' : `servers on CPU ${pin.server}, runner on CPU ${pin.runner}`}`,
  )
  const sections = []
  const targets = []
  const failures = []
  let runs = []
  let entries = []
  let redis

  if (opts.parts.includes('http')) {
    entries = plan(has, opts.quick)
    if (has.redis) {
      redis = await startRedis()
      process.env.BENCH_REDIS_PORT = String(redis.port)
    }
    const servers = []
    try {
      // Three at a time: startup waits on module loading and key generation as well as the CPU.
      const queue = [...entries]
      const starter = async () => {
        for (let e = queue.shift(); e !== undefined; e = queue.shift())
          servers.push(await startServer(e.framework, e.variant, pin))
      }
      await Promise.all([starter(), starter(), starter()])
      servers.sort(
        (a, b) =>
          entries.findIndex((e) => e.framework === a.framework && e.variant === a.variant) -
          entries.findIndex((e) => e.framework === b.framework && e.variant === b.variant),
      )
      log(
        `bench: ${servers.length} servers up after ${fmt((Date.now() - startedAt.getTime()) / 1000)} s`,
      )
      // Warm-up three servers at a time: the JIT needs requests, not exclusive use of the CPU.
      for (let i = 0; i < servers.length; i += 3)
        await Promise.all(
          servers
            .slice(i, i + 3)
            .map((server) =>
              load(
                `http://127.0.0.1:${server.port}/docs/1`,
                server.headers,
                opts.initialWarmupSeconds,
              ),
            ),
        )
      log(`bench: warm after ${fmt((Date.now() - startedAt.getTime()) / 1000)} s`)
      for (let round = 1; round <= opts.rounds; round++) {
        for (const server of servers) {
          const run = await runOnce(server, round, opts)
          runs.push(run)
          log(
            `[round ${round}/${opts.rounds}] ${`${run.framework} ${run.variant}`.padEnd(28)} ${fmt(run.rps).padStart(7)} req/s  p50 ${fmt(run.p50, 2)} ms  p99 ${fmt(run.p99, 2)} ms  ${fmt(run.cpuPerRequest)} µs/req  RSS ${fmt(run.rss / MiB, 1)} MiB`,
          )
          if (!run.valid)
            log(
              `bench: INVALID RUN (round ${round}, ${run.framework} ${run.variant}): ${run.problems.join('; ')}`,
            )
        }
      }
    } catch (error) {
      // A server that fails its self-check or does not start would fail every run: stop here.
      log(`bench: ABORTED: ${error.message}`)
      process.exitCode = 1
      failures.push(`HTTP part aborted: ${error.message}`)
    } finally {
      await Promise.all(servers.map((s) => stopServer(s)))
      await redis?.stop()
    }
    const invalid = runs.filter((r) => !r.valid).length
    if (invalid > 0)
      failures.push(`${invalid} HTTP run(s) had non-2xx responses, errors or timeouts`)
    const http = httpReport(runs, entries, opts)
    targets.push(...http.targets)
    sections.push(
      `## HTTP throughput (${opts.rounds} interleaved rounds)`,
      '',
      `autocannon, ${CONNECTIONS} connections, pipelining ${PIPELINING}, \`GET /docs/1\` → \`{"id":"1"}\` on 127.0.0.1. Every server runs for the whole suite (warmed up ${opts.initialWarmupSeconds} s at start); each run is ${opts.warmupSeconds > 0 ? `${opts.warmupSeconds} s warm-up + ` : ''}${opts.durationSeconds} s measured. Portcullis variants authenticate in the global middleware/hook and authorize \`documents:read\` on the route. The full gate is API key + two named limits (per principal, per principal and route) + a monthly quota + the 20-rule policy of \`bench/lib/fixtures.mjs\` + audit of every decision to a JSON-lines file (fsync off); “audit off” is the same gate with \`audit: false\`. The JWT variants verify each token once and then hit the verifier's cache (a client reuses its token); uncached costs are in the micro-benchmarks. Peer stacks use the same HS256 token (and the API-key peer the same SHA-256 + Map lookup as the floor) with a limit never reached. “server CPU µs/req” is the server process's CPU time over the requests served: the bare row gives the framework's own cost, the others what the variant adds (median of per-round differences).`,
      '',
      http.text,
    )
  }

  if (opts.parts.includes('micro')) {
    try {
      log(`bench: micro-benchmarks from ${fmt((Date.now() - startedAt.getTime()) / 1000)} s`)
      const micro = await runMicro({ quick: opts.quick, log })
      const mt = microTargets(micro)
      targets.push(...mt)
      sections.push(
        '## Micro-benchmarks (no HTTP; ns per operation, median of 5 batches)',
        '',
        microTable(micro),
        '',
        'Floors: **a** is the least work of a correct HS256 check (HMAC, constant-time compare, `JSON.parse` of the payload, `exp`); **b** the least work of an API-key check (one SHA-256 and a `Map` lookup). JWT rows are compared with **a**, API-key rows with **b**. The verifiers check `iss` and `aud` as well; the floors do not. Stage rows (s*) time one stage alone; whole-gate rows include credential extraction, the request id, every stage, authorization and the decision trace; rows marked “audit to file” include writing every audit event (each timed batch ends when the file has them all).',
        '',
        table(
          ['Decision-time target (issue 9)', 'measured', 'target', 'verdict'],
          mt.map((t) => [
            t.label,
            `${fmt(t.measuredNs)} ns`,
            `≤ ${fmt(t.boundNs)} ns (${t.rule})`,
            t.value >= 1 ? 'met' : '**not met**',
          ]),
        ),
        '',
      )
    } catch (error) {
      failures.push(`micro-benchmarks failed: ${error.message}`)
      log(`bench: MICRO-BENCHMARKS FAILED: ${error.stack ?? error}`)
    }
  }

  if (opts.parts.includes('scale')) {
    const r = await child([
      '--expose-gc',
      join(BENCH_DIR, 'scale.mjs'),
      '--json',
      ...(opts.quick ? ['--quick'] : []),
    ])
    let rows
    try {
      rows = JSON.parse(r.stdout)
    } catch {
      failures.push(`scale run failed: ${r.stderr.trim().split('\n').at(-1)}`)
      log(`bench: SCALE FAILED: ${r.stderr}`)
    }
    if (rows !== undefined) {
      if (rows.some((x) => !x.ok)) failures.push('a scale run exceeded its memory bound')
      sections.push(
        '## Scale and memory',
        '',
        scaleTable(rows),
        '',
        'Heap after a full GC (`--expose-gc`), in a separate process. Growth is checked against a generous budget of 1 KiB per limiter entry and 4 KiB per cached key times the configured bound; “limiter entries” counts the windows the limiter holds after the run (its LRU never holds more than `maxKeys`).',
        '',
      )
      log(`bench: scale done after ${fmt((Date.now() - startedAt.getTime()) / 1000)} s`)
    }
  }

  if (opts.parts.includes('policy') && existsSync(join(BENCH_DIR, 'policy.mjs'))) {
    const r = await child([join(BENCH_DIR, 'policy.mjs'), ...(opts.quick ? ['--quick'] : [])])
    if (r.code === 0) {
      sections.push('## Policy engines (no HTTP; `bench/policy.mjs`)', '', r.stdout.trim(), '')
      log(`bench: policy comparison done after ${fmt((Date.now() - startedAt.getTime()) / 1000)} s`)
    } else {
      failures.push(`policy.mjs failed (exit ${r.code})`)
      log(`bench: POLICY BENCH FAILED: ${r.stderr}`)
    }
  }

  if (opts.parts.includes('audit')) {
    // tsx: the PostgreSQL row starts its server with the tests' TypeScript helper.
    const r = await child([
      '--import',
      'tsx',
      join(BENCH_DIR, 'audit.mjs'),
      ...(opts.quick ? ['--quick'] : []),
    ])
    if (r.code === 0) {
      sections.push(
        '## Audit pipeline throughput (no HTTP; `bench/audit.mjs`)',
        '',
        r.stdout.trim(),
        '',
      )
      log(`bench: audit pipeline done after ${fmt((Date.now() - startedAt.getTime()) / 1000)} s`)
    } else {
      failures.push(`audit.mjs failed (exit ${r.code})`)
      log(`bench: AUDIT BENCH FAILED: ${r.stderr}`)
    }
  }

  const loadEnd = machineInfo().load
  const versions = [
    '@portcullis/core',
    'express',
    'koa',
    '@koa/router',
    'fastify',
    'jose',
    'jsonwebtoken',
    'fast-jwt',
    'express-jwt',
    'express-rate-limit',
    'passport',
    'passport-jwt',
    'passport-headerapikey',
    'koa-jwt',
    'rate-limiter-flexible',
    '@fastify/jwt',
    '@fastify/rate-limit',
    'ioredis',
    'autocannon',
  ]
    .map((n) => `${n} ${packageVersion(n) ?? '(not installed)'}`)
    .join(', ')
  const out = ['# Portcullis benchmark results', '']
  if (failures.length > 0)
    out.push(`> **INVALID:** ${failures.join('; ')}. Do not use these numbers.`, '')
  out.push(
    `- Date: ${startedAt.toISOString()} (took ${fmt((Date.now() - startedAt.getTime()) / 1000)} s)`,
    `- Machine: ${machine.cpu}, ${machine.cores} cores, ${fmt(machine.memoryGiB, 1)} GiB RAM, ${machine.kernel}`,
    `- Load average (1/5/15 min): ${machine.load.map((l) => fmt(l, 2)).join(' / ')} at start, ${loadEnd.map((l) => fmt(l, 2)).join(' / ')} at end`,
    `- Node: ${process.version}; redis-server ${redis?.version ?? '(not used)'}`,
    `- Packages: ${versions}`,
    `- Command: ${commandLine()}`,
    `- Mode: ${opts.quick ? 'quick' : 'full'} (${opts.parts.join(', ')})`,
    pin === undefined
      ? '- CPU pinning: none (taskset unavailable or fewer than 2 CPUs): servers and load generator share the CPUs'
      : `- CPU pinning: servers on CPU ${pin.server}; load generator, redis-server and micro-benchmarks on CPU ${pin.runner} (taskset)`,
    '',
  )
  if (targets.length > 0) {
    out.push(
      '## Targets of issue 9 at a glance',
      '',
      table(
        ['Target', 'measured', 'target', 'verdict'],
        targets.map((t) =>
          t.measuredNs === undefined
            ? [t.label, fmt(t.value, 3), `≥ ${t.target}`, verdict(t.value, t.target)]
            : [t.label, `${fmt(t.measuredNs)} ns`, `≤ ${fmt(t.boundNs)} ns`, verdict(t.value, 1)],
        ),
      ),
      '',
      'The machine is small and shared: ratios, not absolute numbers, are the result, and the min–max ranges below say how much to trust each one. A ratio divides the two variants’ req/s measured in the same round (interleaved, so slow drift hits both sides of a pair alike); the median over rounds is the figure to quote. A ratio of 0.80 means the gate costs 20 % of the throughput of a route that does nothing; a real route does more work per request, so the relative cost shrinks.',
      '',
    )
  }
  out.push(...sections)
  if (runs.length > 0) out.push('## Per-run data', '', perRunTable(runs), '')
  const text = out.join('\n')
  const RESULTS = resultsFile(opts.quick)
  writeFileSync(RESULTS, text)
  console.log(text)
  if (failures.length > 0) {
    log(`bench: FAILED: ${failures.join('; ')}; see ${relative(process.cwd(), RESULTS)}`)
    process.exit(1)
  }
  log(`bench: wrote ${relative(process.cwd(), RESULTS)}`)
}

await main()

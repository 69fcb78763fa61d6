/**
 * The benchmark suite: `npm run bench [-- --quick]` (builds first), or after `npx tsc -b`:
 *
 *     node bench/run.mjs [--quick] [--rounds N] [--duration S] [--parts http,micro,scale,policy,audit]
 *                        [--frameworks express,koa,fastify] [--variants jwt,peer-jwt,...]
 *     node bench/run.mjs --profile <variant> [--frameworks ...] [--duration S] [--top N]
 *
 * HTTP part (issue 19, "Cost per request"): starts every (framework, variant) of {@link plan} as
 * its own child process (`servers/server.mjs`), each checking itself before it announces its port,
 * then pinned with `taskset -a -p -c` to the second allowed CPU (this runner and autocannon
 * re-execute themselves on the first). Warms each up, then runs the rounds: in every round each server in turn
 * gets a short warm-up and a fixed-duration autocannon run (10 connections, pipelining 1), the
 * order rotated from round to round. Per run it records req/s, latency p50/p99 (per response, not
 * autocannon's 1 ms histogram) and the server's CPU time per request: `process.cpuUsage()` inside
 * the server, read over the IPC channel right before and right after the run, divided by the
 * requests completed. "Added CPU" is a variant's CPU per request minus the bare framework's in the
 * same round; every figure is the median over rounds, with the min–max spread. The issue's targets
 * are computed from the same runs and marked met or missed; in a full run, the Portcullis variant
 * of each missed target is then profiled (`--cpu-prof`) and its top self-time frames are added to
 * RESULTS.md. A throw-away redis-server serves the Redis variant. Any non-2xx response, error or
 * timeout makes the run invalid and the suite exit non-zero.
 *
 * Then the micro-benchmarks (`micro.mjs`, in this process), scale and memory (`scale.mjs`), the
 * policy-engine comparison (`policy.mjs`) and the audit pipeline per sink (`audit.mjs`), each in a
 * child. Writes `bench/RESULTS.md` (`RESULTS.quick.md` with `--quick`) and prints it.
 *
 * `--profile <variant>`: instead of all that, runs that variant on each framework under
 * `--cpu-prof`, loads it, and writes the top self-time frames to `bench/profiles/<variant>.md`
 * (the `.cpuprofile` files stay next to it, git-ignored).
 * @module
 */
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { constants } from 'node:os'
import { join, relative } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { allowedCpus, BENCH_DIR, machineInfo, packageVersion, rssOf } from './lib/environment.mjs'
import { redisAvailable, startRedis } from './lib/redis.mjs'
import { fmt, median, percentile, range, table } from './lib/stats.mjs'
import { microTable, microTargets, runMicro } from './micro.mjs'
import { scaleTable } from './scale.mjs'
import { FRAMEWORKS, labelOf, PEER_JWT, VARIANTS, variantsOf } from './servers/variants.mjs'

const SCRIPT = fileURLToPath(import.meta.url)
const SERVER = join(BENCH_DIR, 'servers', 'server.mjs')
// A quick run is a check, not a result: it never overwrites the full run's RESULTS.md.
const resultsFile = (quick) => join(BENCH_DIR, quick ? 'RESULTS.quick.md' : 'RESULTS.md')
const PROFILES = join(BENCH_DIR, 'profiles')
const FRAMEWORK_LABELS = { express: 'Express 5', koa: 'Koa 3', fastify: 'Fastify 5' }
const CONNECTIONS = 10
const PIPELINING = 1
/** Environment variable telling the re-executed runner which CPUs to use: `server,runner`. */
const PIN_ENV = 'PORTCULLIS_BENCH_CPUS'
const SERVER_START_TIMEOUT_MS = 60_000
const SERVER_STOP_TIMEOUT_MS = 5_000
const CPU_READ_TIMEOUT_MS = 10_000
const MiB = 2 ** 20
const PARTS = ['http', 'micro', 'scale', 'policy', 'audit']
/** At most this many profiles of missed targets are taken at the end of a full run. */
const MAX_MISSED_PROFILES = 6

const USAGE = `usage: node bench/run.mjs [--quick] [--rounds N] [--duration S] [--parts ${PARTS.join(',')}]
                         [--frameworks ${FRAMEWORKS.join(',')}] [--variants a,b,...]
       node bench/run.mjs --profile <variant> [--frameworks ...] [--duration S] [--top N]
  --quick       smoke check: every server starts and passes its self-check, 1 round of 1 s runs,
                HTTP part only (add --parts http,micro for short micro-benchmarks), no profiles;
                writes RESULTS.quick.md
  --rounds N    interleaved rounds (1-50; default 4, quick 1)
  --duration S  measured seconds per run (default 4, quick 1)
  --parts       which parts to run (default: all; quick: http)
  --frameworks  which frameworks (default: all)
  --variants    which variants (default: the plan of issue 19; bare is always added). Known:
                ${Object.keys(VARIANTS).join(', ')}
  --no-profile-missed  do not profile the variants of missed targets at the end of a full run
  --profile V   profile variant V on each framework with --cpu-prof, write bench/profiles/V.md
  --top N       with --profile: frames listed (default 25)`

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
 * @property {number} cpuPerRequest server CPU µs per request (process.cpuUsage() in the server)
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
        duration: { type: 'string' },
        parts: { type: 'string' },
        frameworks: { type: 'string' },
        variants: { type: 'string' },
        profile: { type: 'string' },
        top: { type: 'string', default: '25' },
        'no-profile-missed': { type: 'boolean', default: false },
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
  const fail = (message) => {
    console.error(`${message}\n${USAGE}`)
    process.exit(2)
  }
  const rounds = parsed.rounds === undefined ? (parsed.quick ? 1 : 4) : Number(parsed.rounds)
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50)
    fail('--rounds must be an integer from 1 to 50')
  const duration = parsed.duration === undefined ? (parsed.quick ? 1 : 4) : Number(parsed.duration)
  // autocannon stops on its per-second tick: durations are whole seconds.
  if (!Number.isInteger(duration) || duration < 1 || duration > 120)
    fail('--duration must be a whole number of seconds from 1 to 120')
  const parts =
    parsed.parts === undefined ? (parsed.quick ? ['http'] : PARTS) : parsed.parts.split(',')
  if (parts.some((p) => !PARTS.includes(p))) fail(`--parts takes a list of ${PARTS.join(', ')}`)
  const frameworks = parsed.frameworks === undefined ? FRAMEWORKS : parsed.frameworks.split(',')
  if (frameworks.some((f) => !FRAMEWORKS.includes(f)))
    fail(`--frameworks takes a list of ${FRAMEWORKS.join(', ')}`)
  const variants = parsed.variants?.split(',')
  if (variants?.some((v) => !(v in VARIANTS)))
    fail(`--variants takes a list of ${Object.keys(VARIANTS).join(', ')}`)
  if (parsed.profile !== undefined && !(parsed.profile in VARIANTS))
    fail(`--profile takes one of ${Object.keys(VARIANTS).join(', ')}`)
  const top = Number(parsed.top)
  if (!Number.isInteger(top) || top < 1) fail('--top must be a positive integer')
  return {
    quick: parsed.quick,
    rounds,
    parts,
    frameworks,
    variants,
    profile: parsed.profile,
    top,
    profileMissed: !parsed.quick && !parsed['no-profile-missed'],
    // Servers stay up for the whole suite: one warm-up each at start, a short one before each run.
    // The JIT needs thousands of requests: a cold server measures several times its warm cost.
    initialWarmupSeconds: parsed.quick ? 1 : 8,
    warmupSeconds: parsed.quick ? 0 : 1,
    durationSeconds: duration,
  }
}

/**
 * Re-executes this script under `taskset` on the runner CPU when pinning is possible and not yet
 * done. Servers go on the second allowed CPU (core 1 on a 2-core machine), the runner and
 * autocannon on the first. Returns the CPUs to use, or `undefined` when running unpinned.
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
  const [runner, server] = cpus
  const child = spawn(
    'taskset',
    ['-c', String(runner), process.execPath, ...process.execArgv, SCRIPT, ...process.argv.slice(2)],
    { stdio: 'inherit', env: { ...process.env, [PIN_ENV]: `${server},${runner}` } },
  )
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal))
  const [code, signal] = await once(child, 'exit')
  process.exit(code ?? 128 + (constants.signals[signal] ?? 0))
}

/**
 * The default plan of issue 19, per framework, bare first: the floors, ours and the peer stack on
 * the same work, the API key alone and with limit + scope, the full gate with audit on and off, and
 * on Express the passport-headerapikey peer and the Redis counters.
 * @param {{ redis: boolean }} has
 * @param {{ frameworks: string[], variants?: string[] }} opts
 * @returns {Array<{ framework: string, variant: string }>}
 */
function plan(has, opts) {
  const wanted =
    opts.variants === undefined
      ? Object.keys(VARIANTS).filter((v) => VARIANTS[v].extra !== true)
      : ['bare', ...opts.variants.filter((v) => v !== 'bare')]
  return opts.frameworks.flatMap((framework) =>
    wanted
      .filter((v) => variantsOf(framework).includes(v))
      .filter((v) => !v.endsWith('-redis') || has.redis)
      .map((variant) => ({ framework, variant })),
  )
}

/** Servers started, killed if the runner dies. */
const live = new Set()
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL')
})

/**
 * Starts a server with an IPC channel and waits for its announcement line (it has passed its
 * self-check by then).
 * @param {string} framework
 * @param {string} variant
 * @param {{ server: number } | undefined} pin
 * @param {readonly string[]} [nodeArgs]
 */
async function startServer(framework, variant, pin, nodeArgs = []) {
  const args = [...nodeArgs, SERVER, framework, variant, '--exit-with-stdin']
  // Started on both CPUs (module loading is the slow part of start-up; a child would inherit the
  // runner's CPU), pinned to the server CPU once ready. taskset execs node in place: the IPC
  // descriptor and NODE_CHANNEL_FD pass through.
  const stdio = ['pipe', 'pipe', 'inherit', 'ipc']
  const child =
    pin === undefined
      ? spawn(process.execPath, args, { stdio })
      : spawn('taskset', ['-c', `${pin.server},${pin.runner}`, process.execPath, ...args], {
          stdio,
        })
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
    if (pin !== undefined) {
      // -a: every thread of the process (libuv's pool, the GC's helpers), not only the main one.
      const r = spawnSync('taskset', ['-a', '-p', '-c', String(pin.server), String(child.pid)], {
        encoding: 'utf8',
      })
      if (r.status !== 0) throw new Error(`taskset could not pin "${name}": ${r.stderr.trim()}`)
    }
    return { framework, variant, child, exited, port, headers }
  } catch (error) {
    child.kill('SIGKILL')
    throw error
  } finally {
    clearTimeout(timer)
  }
}

/** Stops a server: closes its stdin and IPC channel (it exits by itself), then SIGTERM, SIGKILL. */
async function stopServer({ child, exited }) {
  if (child.exitCode === null && child.signalCode === null) {
    child.stdin.end()
    if (child.connected) child.disconnect()
    const term = setTimeout(() => child.kill('SIGTERM'), SERVER_STOP_TIMEOUT_MS)
    const kill = setTimeout(() => child.kill('SIGKILL'), 2 * SERVER_STOP_TIMEOUT_MS)
    await exited
    clearTimeout(term)
    clearTimeout(kill)
  }
  live.delete(child)
}

let cpuRequestId = 0

/**
 * The server's own CPU time so far (user + system, µs), asked over IPC: `process.cpuUsage()`
 * inside the server.
 * @returns {Promise<number>}
 */
async function serverCpuMicros(server) {
  const id = ++cpuRequestId
  const { child } = server
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off('message', onMessage)
      reject(new Error(`server "${server.framework} ${server.variant}" did not report its CPU`))
    }, CPU_READ_TIMEOUT_MS)
    const onMessage = (message) => {
      if (message?.cpu !== id) return
      clearTimeout(timer)
      child.off('message', onMessage)
      resolve(message.usage.user + message.usage.system)
    }
    child.on('message', onMessage)
    child.send({ cpu: id })
  })
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
  const cpu0 = await serverCpuMicros(server)
  const own0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  const r = await load(url, server.headers, opts.durationSeconds)
  const wall = Number(process.hrtime.bigint() - t0) / 1e9
  const own = process.cpuUsage(own0)
  const serverMicros = (await serverCpuMicros(server)) - cpu0
  const problems = [...warm.problems.map((p) => `warm-up: ${p}`), ...r.problems]
  if (server.child.exitCode !== null || server.child.signalCode !== null)
    problems.push('server died during the run')
  return {
    round,
    framework: server.framework,
    variant: server.variant,
    ...r,
    rss: rssOf(server.child.pid),
    serverCpu: serverMicros / 1e6 / wall,
    cpuPerRequest: serverMicros / r.total,
    runnerCpu: (own.user + own.system) / 1e6 / wall,
    valid: problems.length === 0,
    problems,
  }
}

/** The runs of one framework and variant. */
const runsOf = (valid, framework, variant) =>
  valid.filter((r) => r.framework === framework && r.variant === variant)

/**
 * Per-round values of `f(a, b)` for the runs of two variants in the same round, with their median
 * and range.
 * @param {readonly Run[]} valid
 * @param {(a: Run, b: Run) => number} f
 */
function paired(valid, framework, a, b, f, bFramework = framework) {
  const values = []
  for (const r of runsOf(valid, framework, a)) {
    const other = valid.find(
      (x) => x.framework === bFramework && x.variant === b && x.round === r.round,
    )
    if (other !== undefined) values.push(f(r, other))
  }
  return { value: median(values), ...range(values), n: values.length, values }
}

/** Per-round server CPU µs per request a variant adds to the bare framework. */
const addedCpu = (valid, framework, variant) =>
  paired(valid, framework, variant, 'bare', (a, b) => a.cpuPerRequest - b.cpuPerRequest)

/**
 * The ratio of the CPU two variants add to bare: median over rounds of (a − bare) divided by the
 * median over rounds of (b − bare), so that one noisy round cannot flip it; min and max are the
 * per-round ratios (a − bare) / (b − bare) of the same round.
 * @param {readonly Run[]} valid
 */
function addedRatio(valid, framework, a, b) {
  const ours = addedCpu(valid, framework, a)
  const theirs = addedCpu(valid, framework, b)
  const perRound = []
  for (const r of runsOf(valid, framework, a)) {
    const bare = valid.find(
      (x) => x.framework === framework && x.variant === 'bare' && x.round === r.round,
    )
    const other = valid.find(
      (x) => x.framework === framework && x.variant === b && x.round === r.round,
    )
    if (bare === undefined || other === undefined) continue
    perRound.push(
      (r.cpuPerRequest - bare.cpuPerRequest) / (other.cpuPerRequest - bare.cpuPerRequest),
    )
  }
  return { value: ours.value / theirs.value, ...range(perRound), n: perRound.length }
}

/** A whole number of µs with its sign: `+12`, `−3`, `+0`. */
function signed(us, decimals = 0) {
  if (!Number.isFinite(us)) return 'n/a'
  const n = Number(us.toFixed(decimals)) || 0 // never -0
  return n < 0 ? `−${fmt(-n, decimals)}` : `+${fmt(n, decimals)}`
}

/** `median (min–max)` of a paired statistic. */
function spread(s, format = (x) => fmt(x, 1)) {
  if (!Number.isFinite(s.value)) return 'n/a'
  return s.n > 1 ? `${format(s.value)} (${format(s.min)} to ${format(s.max)})` : format(s.value)
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

/**
 * @typedef {object} Target
 * @property {string} label
 * @property {string} rule the bound, in words
 * @property {{ value: number, min: number, max: number, n: number }} stat measured, per round
 * @property {(x: number) => string} format
 * @property {boolean | undefined} met undefined when not measured
 * @property {{ framework: string, variant: string }} [explain] the variant to profile when missed
 */

/**
 * The targets of issue 19 ("Cost per request"), each from the runs of this suite, per framework.
 * @param {readonly Run[]} valid
 * @param {ReturnType<typeof plan>} entries
 * @returns {Target[]}
 */
function targetsOf(valid, entries) {
  const has = (framework, variant) =>
    entries.some((e) => e.framework === framework && e.variant === variant)
  const out = []
  const ratio = (x) => `${fmt(x, 2)}×`
  const us = (x) => `${signed(x, 1)} µs`
  const add = (target) =>
    out.push({ ...target, met: target.stat.n === 0 ? undefined : target.test(target.stat.value) })
  for (const framework of FRAMEWORKS) {
    const fw = FRAMEWORK_LABELS[framework]
    if (has(framework, 'jwt') && has(framework, 'peer-jwt'))
      add({
        label: `${fw}: JWT + limit + scope, ours / ${PEER_JWT[framework].replace(' + scope check', '')} (added CPU)`,
        rule: '≤ 0.5×',
        stat: addedRatio(valid, framework, 'jwt', 'peer-jwt'),
        format: ratio,
        test: (v) => v <= 0.5,
        explain: { framework, variant: 'jwt' },
      })
    if (has(framework, 'apikey') && has(framework, 'peer-apikey'))
      add({
        label: `${fw}: API key + limit + scope, ours / passport-headerapikey + express-rate-limit (added CPU)`,
        rule: '≤ 0.5×',
        stat: addedRatio(valid, framework, 'apikey', 'peer-apikey'),
        format: ratio,
        test: (v) => v <= 0.5,
        explain: { framework, variant: 'apikey' },
      })
    if (has(framework, 'full') && has(framework, 'peer-jwt'))
      add({
        label: `${fw}: full gate with audit / peer JWT stack (added CPU)`,
        rule: '≤ 1×',
        stat: addedRatio(valid, framework, 'full', 'peer-jwt'),
        format: ratio,
        test: (v) => v <= 1,
        explain: { framework, variant: 'full' },
      })
    if (has(framework, 'full') && has(framework, 'full-noaudit'))
      add({
        label: `${fw}: full gate, audit on − audit off (CPU per request)`,
        rule: '≤ +5 µs',
        stat: paired(
          valid,
          framework,
          'full',
          'full-noaudit',
          (a, b) => a.cpuPerRequest - b.cpuPerRequest,
        ),
        format: us,
        test: (v) => v <= 5,
        explain: { framework, variant: 'full' },
      })
    if (has(framework, 'apikey-alone') && has(framework, 'floor-apikey'))
      add({
        label: `${fw}: API key alone − API-key floor (added CPU)`,
        rule: '≤ +10 µs',
        stat: paired(
          valid,
          framework,
          'apikey-alone',
          'floor-apikey',
          (a, b) => a.cpuPerRequest - b.cpuPerRequest,
        ),
        format: us,
        test: (v) => v <= 10,
        explain: { framework, variant: 'apikey-alone' },
      })
    if (has(framework, 'full-redis') && has(framework, 'full'))
      add({
        label: `${fw}: full gate, Redis counters / memory (req/s)`,
        rule: '≥ 0.7×',
        stat: paired(valid, framework, 'full-redis', 'full', (a, b) => a.rps / b.rps),
        format: ratio,
        test: (v) => v >= 0.7,
        explain: { framework, variant: 'full-redis' },
      })
  }
  return out
}

const verdict = (t) => (t.met === undefined ? 'not measured' : t.met ? 'met' : '**missed**')

/** The targets as a Markdown table. */
function targetTable(targets) {
  return table(
    ['Target (issue 19)', 'measured: median (min to max over rounds)', 'target', 'verdict'],
    targets.map((t) => [t.label, spread(t.stat, t.format), t.rule, verdict(t)]),
  )
}

/**
 * The HTTP section: per framework, every variant's req/s, latency, CPU per request and added CPU.
 * @param {readonly Run[]} runs
 * @param {ReturnType<typeof plan>} entries
 */
function httpTables(runs, entries) {
  const valid = runs.filter((r) => r.valid)
  const out = []
  for (const framework of FRAMEWORKS) {
    const variants = entries.filter((e) => e.framework === framework).map((e) => e.variant)
    if (variants.length === 0) continue
    const rows = variants.map((variant) => {
      const mine = runsOf(valid, framework, variant)
      const all = runsOf(runs, framework, variant)
      const rps = mine.map((r) => r.rps)
      const { min, max } = range(rps)
      const cpu = mine.map((r) => r.cpuPerRequest)
      const cpuRange = range(cpu)
      return [
        labelOf(framework, variant),
        variant === 'bare' ? '0' : spread(addedCpu(valid, framework, variant), (x) => signed(x)),
        `${fmt(median(cpu), 1)} (${fmt(cpuRange.min, 1)}–${fmt(cpuRange.max, 1)})`,
        `${fmt(median(rps))} (${fmt(min)}–${fmt(max)})`,
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
          'added server CPU µs/req over bare: median (min to max)',
          'server CPU µs/req (min–max)',
          'req/s median (min–max)',
          'p50 ms',
          'p99 ms',
          'RSS MiB',
          'server CPU use',
          'valid runs',
        ],
        rows,
      ),
      '',
    )
  }
  return out.join('\n')
}

/** The issue's table: added CPU per request over bare, µs, variants × frameworks. */
function summaryTable(runs, entries) {
  const valid = runs.filter((r) => r.valid)
  const frameworks = FRAMEWORKS.filter((f) => entries.some((e) => e.framework === f))
  const variants = [...new Set(entries.map((e) => e.variant))].filter((v) => v !== 'bare')
  const rows = variants.map((variant) => [
    variant === 'peer-jwt'
      ? 'peer: JWT + limit + scope (see each framework)'
      : VARIANTS[variant].label,
    ...frameworks.map((framework) => {
      if (!entries.some((e) => e.framework === framework && e.variant === variant)) return '–'
      return signed(addedCpu(valid, framework, variant).value)
    }),
  ])
  const bare = [
    'bare framework, server CPU µs/req (absolute)',
    ...frameworks.map((f) => fmt(median(runsOf(valid, f, 'bare').map((r) => r.cpuPerRequest)), 0)),
  ]
  return table(['', ...frameworks.map((f) => FRAMEWORK_LABELS[f])], [bare, ...rows])
}

function perRunTable(runs) {
  return table(
    [
      'Round',
      'Order',
      'Framework',
      'Variant',
      'req/s',
      'requests',
      'p50 ms',
      'p99 ms',
      'server CPU µs/req',
      'server CPU use',
      'runner CPU use',
      'valid',
    ],
    runs.map((r) => [
      String(r.round),
      String(r.order),
      r.framework,
      r.variant,
      fmt(r.rps),
      fmt(r.total),
      fmt(r.p50, 2),
      fmt(r.p99, 2),
      fmt(r.cpuPerRequest, 1),
      `${fmt(r.serverCpu * 100)} %`,
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

/**
 * Runs one variant of one framework under `--cpu-prof` (pinned as in the HTTP part), loads it
 * after a warm-up, and returns the top self-time frames as Markdown.
 * @returns {Promise<string>}
 */
async function profileOne(framework, variant, pin, seconds, top) {
  const dir = join(PROFILES, variant, framework)
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  const server = await startServer(framework, variant, pin, [
    '--cpu-prof',
    '--cpu-prof-dir',
    dir,
    '--cpu-prof-interval',
    '200',
  ])
  const url = `http://127.0.0.1:${server.port}/docs/1`
  let r
  // The measured window, on the monotonic clock the profile's timestamps use too (µs).
  let window
  try {
    await load(url, server.headers, 5)
    const cpu0 = await serverCpuMicros(server)
    const t0 = process.hrtime.bigint() / 1000n
    r = await load(url, server.headers, seconds)
    window = [Number(t0), Number(process.hrtime.bigint() / 1000n)]
    r.cpuPerRequest = ((await serverCpuMicros(server)) - cpu0) / r.total
  } finally {
    await stopServer(server)
  }
  const file = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f))
    .find((f) => readFileSync(f).length > 0)
  if (file === undefined) throw new Error(`no profile written for ${framework} ${variant}`)
  const prof = onlyWindow(JSON.parse(readFileSync(file, 'utf8')), window)
  return [
    `### ${FRAMEWORK_LABELS[framework]}, ${labelOf(framework, variant)}`,
    '',
    `${fmt(r.rps)} req/s and ${fmt(r.cpuPerRequest, 1)} µs of server CPU per request while profiled (the profiler adds its own cost). Shares of the ${fmt(prof.samples.length)} CPU samples (every 200 µs, idle left out) taken during the measured ${seconds} s, after a 5 s warm-up; the whole profile, start-up included, is \`${relative(join(BENCH_DIR, '..'), file)}\` (git-ignored). Self time: the time spent in the function's own code, not in what it calls.`,
    '',
    table(
      ['self %', 'function', 'where'],
      topFrames(prof, top).map((t) => [fmt(t.share * 100, 1), t.name, t.where]),
      ['r', 'l', 'l'],
    ),
    '',
    table(
      ['self %', 'by where the code lives'],
      topFrames(prof, 12, groupOf).map((t) => [fmt(t.share * 100, 1), t.name]),
      ['r', 'l'],
    ),
    '',
  ].join('\n')
}

/** `--profile <variant>`: that variant on each framework, summary in `profiles/<variant>.md`. */
async function profile(opts, pin, log) {
  const { profile: variant } = opts
  let redis
  if (variant.endsWith('-redis')) {
    redis = await startRedis()
    process.env.BENCH_REDIS_PORT = String(redis.port)
  }
  const sections = []
  try {
    for (const framework of opts.frameworks) {
      if (!variantsOf(framework).includes(variant)) continue
      const text = await profileOne(framework, variant, pin, opts.durationSeconds * 2, opts.top)
      sections.push(text)
      log(text)
    }
  } finally {
    await redis?.stop()
  }
  const out = join(PROFILES, `${variant}.md`)
  writeFileSync(
    out,
    `# CPU profile: ${VARIANTS[variant].label}\n\n${commandLine()}, ${new Date().toISOString()}, Node ${process.version}\n\n${sections.join('\n')}`,
  )
  log(`bench: wrote ${relative(process.cwd(), out)}`)
}

/**
 * The profile's samples taken within `[from, to]` (µs on the monotonic clock), idle ones left out.
 * @param {any} prof a .cpuprofile
 * @param {[number, number] | undefined} window
 */
function onlyWindow(prof, window) {
  const idle = new Set(
    prof.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id),
  )
  const samples = []
  let t = prof.startTime
  for (let i = 0; i < prof.samples.length; i++) {
    t += prof.timeDeltas[i]
    if (idle.has(prof.samples[i])) continue
    if (window !== undefined && (t < window[0] || t > window[1])) continue
    samples.push(prof.samples[i])
  }
  return { ...prof, samples }
}

/** A frame's group: the package or core folder its code is in, node internals, or native. */
function groupOf(name, where) {
  if (where === '(native)') return ['GC, (program) and native code', '']
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

/** Rotates a list left by `by` places. */
const rotate = (list, by) => list.map((_, i) => list[(i + by) % list.length])

async function main() {
  const opts = options()
  const pin = await pinOrReexec()
  const log = (line) => process.stderr.write(`${line}\n`)
  if (opts.profile !== undefined) return profile(opts, pin, log)

  const startedAt = new Date()
  const elapsed = () => fmt((Date.now() - startedAt.getTime()) / 1000)
  const machine = machineInfo()
  const has = { redis: redisAvailable() }
  log(
    `bench: ${opts.quick ? 'quick' : 'full'} mode, ${opts.rounds} rounds of ${opts.durationSeconds} s runs, ${pin === undefined ? 'unpinned' : `servers on CPU ${pin.server}, runner and autocannon on CPU ${pin.runner}`}`,
  )
  const sections = []
  let targets = []
  const failures = []
  const runs = []
  let entries = []
  let redis

  if (opts.parts.includes('http')) {
    entries = plan(has, opts)
    if (entries.some((e) => e.variant.endsWith('-redis'))) {
      redis = await startRedis()
      process.env.BENCH_REDIS_PORT = String(redis.port)
    }
    const servers = []
    const profiles = []
    try {
      try {
        // Four at a time: start-up waits on module loading as well as the CPU.
        const queue = [...entries]
        const starter = async () => {
          for (let e = queue.shift(); e !== undefined; e = queue.shift())
            servers.push(await startServer(e.framework, e.variant, pin))
        }
        await Promise.all([starter(), starter(), starter(), starter()])
        servers.sort(
          (a, b) =>
            entries.findIndex((e) => e.framework === a.framework && e.variant === a.variant) -
            entries.findIndex((e) => e.framework === b.framework && e.variant === b.variant),
        )
        log(`bench: ${servers.length} servers up after ${elapsed()} s`)
        // Warm-up three servers at a time: the JIT needs requests, not exclusive use of the CPU.
        for (let i = 0; i < servers.length; i += 3)
          await Promise.all(
            servers
              .slice(i, i + 3)
              .map((s) =>
                load(`http://127.0.0.1:${s.port}/docs/1`, s.headers, opts.initialWarmupSeconds),
              ),
          )
        log(`bench: warm after ${elapsed()} s`)
        const step = Math.max(1, Math.ceil(servers.length / opts.rounds))
        for (let round = 1; round <= opts.rounds; round++) {
          const order = rotate(servers, ((round - 1) * step) % servers.length)
          for (const [i, server] of order.entries()) {
            const run = { ...(await runOnce(server, round, opts)), order: i + 1 }
            runs.push(run)
            log(
              `[round ${round}/${opts.rounds}] ${`${run.framework} ${run.variant}`.padEnd(24)} ${fmt(run.rps).padStart(7)} req/s  p50 ${fmt(run.p50, 2)} ms  p99 ${fmt(run.p99, 2)} ms  ${fmt(run.cpuPerRequest, 1).padStart(6)} µs/req`,
            )
            if (!run.valid)
              log(
                `bench: INVALID RUN (round ${round}, ${run.framework} ${run.variant}): ${run.problems.join('; ')}`,
              )
          }
        }
      } finally {
        await Promise.all(servers.map((s) => stopServer(s)))
      }
      targets = targetsOf(
        runs.filter((r) => r.valid),
        entries,
      )
      // Explain what is missed: a CPU profile of our side of each missed target.
      if (opts.profileMissed) {
        const todo = []
        for (const t of targets)
          if (
            t.met === false &&
            !todo.some(
              (x) => x.framework === t.explain.framework && x.variant === t.explain.variant,
            )
          )
            todo.push(t.explain)
        for (const { framework, variant } of todo.slice(0, MAX_MISSED_PROFILES)) {
          log(`bench: profiling ${framework} ${variant} (missed target) after ${elapsed()} s`)
          const text = await profileOne(framework, variant, pin, opts.durationSeconds, 15)
          writeFileSync(join(PROFILES, `${variant}-${framework}.md`), text)
          profiles.push(text)
        }
        if (todo.length > MAX_MISSED_PROFILES)
          profiles.push(
            `Not profiled for lack of time (\`npm run bench -- --profile <variant>\`): ${todo
              .slice(MAX_MISSED_PROFILES)
              .map((x) => `${x.framework} ${x.variant}`)
              .join(', ')}.\n`,
          )
      }
    } catch (error) {
      // A server that fails its self-check or does not start would fail every run: stop here.
      log(`bench: ABORTED: ${error.message}`)
      process.exitCode = 1
      failures.push(`HTTP part aborted: ${error.message}`)
    } finally {
      await redis?.stop()
    }
    const invalid = runs.filter((r) => !r.valid).length
    if (invalid > 0)
      failures.push(`${invalid} HTTP run(s) had non-2xx responses, errors or timeouts`)
    sections.push(
      `## Cost per request over HTTP (${opts.rounds} interleaved rounds)`,
      '',
      `Each variant is its own server process pinned to one CPU; autocannon (${CONNECTIONS} connections, pipelining ${PIPELINING}) runs in the runner on the other CPU and loads \`GET /docs/1\` → \`{"id":"1"}\` on 127.0.0.1. Every server is warmed up ${opts.initialWarmupSeconds} s at start; each run is ${opts.warmupSeconds > 0 ? `${opts.warmupSeconds} s warm-up + ` : ''}${opts.durationSeconds} s measured, the order of the variants rotated from round to round. Server CPU per request is \`process.cpuUsage()\` inside the server process (read over IPC before and after the run, so the reading is never an HTTP request) divided by the requests completed; “added” is that minus the bare framework's in the same round. Medians over rounds, with the spread.`,
      '',
      'What each variant does (all with the same HS256 token or API key, limits never reached):',
      '',
      "- **ours: JWT + limit + scope**: `createGate({ jwt: { secret, issuer, audience, cache: false }, stages: [createRateLimitStage({ limits: [one per-principal limit] })], audit: false })`, `authMiddleware` + `requirePolicy({ scopes: ['documents:read'] })` (Fastify: the plugin and `config.portcullis`). The token is verified on every request.",
      '- **peer: JWT + limit + scope**: Express: express-jwt, then express-rate-limit keyed by `req.auth.sub`, a scope check on the route; Koa: koa-jwt, then rate-limiter-flexible (`RateLimiterMemory`) keyed by `sub`, a scope check on the route; Fastify: @fastify/jwt `jwtVerify` + scope check in `onRequest`, @fastify/rate-limit in `preHandler` keyed by `sub`. Same secret, algorithms, issuer and audience checks.',
      '- **ours: API key + limit + scope**: the same with `apiKeys: { store, pepper }` (memory key store) instead of `jwt`; **peer** (Express): passport-headerapikey (SHA-256 + `Map` lookup), express-rate-limit keyed by the principal, a scope check.',
      '- **ours: API key alone**: `createGate({ apiKeys, audit: false })` and `authMiddleware`, no limit, no route guard.',
      '- **ours: full gate**: API key + two named limits (per principal; per principal and route) + a monthly quota + the 20-rule policy of `bench/lib/fixtures.mjs` + audit of the request to a JSON-lines file (fsync off); “audit off” is the same with `audit: false`; “Redis” keeps the limits and quota in a throw-away redis-server on the runner CPU.',
      '- **floors**: the least work of the same job in one middleware/hook, nothing else: the API-key floor is one SHA-256 + `Map` lookup; the JWT floor is HMAC + constant-time compare + two `JSON.parse` + `exp` + a `Map` counter per subject + the scope check.',
      '',
      '### Added server CPU per request over the bare framework, µs (median of per-round differences)',
      '',
      summaryTable(runs, entries),
      '',
      httpTables(runs, entries),
    )
    if (profiles.length > 0)
      sections.push(
        '### Profiles of the missed targets (our side)',
        '',
        'Taken after the rounds, one server at a time, with `--cpu-prof`: the frames with the most self time. `npm run bench -- --profile <variant>` takes the same for one variant on every framework (`bench/profiles/<variant>.md`).',
        '',
        ...profiles,
      )
  }

  if (opts.parts.includes('micro')) {
    try {
      log(`bench: micro-benchmarks from ${elapsed()} s`)
      const micro = await runMicro({ quick: opts.quick, log })
      const mt = microTargets(micro)
      sections.push(
        '## Micro-benchmarks (no HTTP; ns per operation, median of 5 batches)',
        '',
        microTable(micro),
        '',
        'Floors: **a** is the least work of a correct HS256 check (HMAC, constant-time compare, `JSON.parse` of the payload, `exp`); **b** the least work of an API-key check (one SHA-256 and a `Map` lookup). JWT rows are compared with **a**, API-key rows with **b**. The verifiers check `iss` and `aud` as well; the floors do not. Stage rows (s*) time one stage alone; whole-gate rows include credential extraction, the request id, every stage, authorization and the decision trace; rows marked “audit to file” include writing every audit event (each timed batch ends when the file has them all).',
        '',
        table(
          ['Decision-time target (issue 9, in-process)', 'measured', 'target', 'verdict'],
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
      log(`bench: scale done after ${elapsed()} s`)
    }
  }

  if (opts.parts.includes('policy') && existsSync(join(BENCH_DIR, 'policy.mjs'))) {
    const r = await child([join(BENCH_DIR, 'policy.mjs'), ...(opts.quick ? ['--quick'] : [])])
    if (r.code === 0) {
      sections.push('## Policy engines (no HTTP; `bench/policy.mjs`)', '', r.stdout.trim(), '')
      log(`bench: policy comparison done after ${elapsed()} s`)
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
      log(`bench: audit pipeline done after ${elapsed()} s`)
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
    'express-jwt',
    'express-rate-limit',
    'passport',
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
    `- Date: ${startedAt.toISOString()} (took ${elapsed()} s)`,
    `- Commit: ${gitCommit()}`,
    `- Machine: ${machine.cpu}, ${machine.cores} cores, ${fmt(machine.memoryGiB, 1)} GiB RAM, ${machine.kernel}`,
    `- Load average (1/5/15 min): ${machine.load.map((l) => fmt(l, 2)).join(' / ')} at start, ${loadEnd.map((l) => fmt(l, 2)).join(' / ')} at end (other work on the machine competes with the runs: compare ratios and differences from the same run, not absolute numbers across runs)`,
    `- Node: ${process.version}; redis-server ${redis?.version ?? '(not used)'}`,
    `- Packages: ${versions}`,
    `- Command: ${commandLine()}`,
    `- Mode: ${opts.quick ? 'quick (a smoke check, not a result)' : 'full'} (${opts.parts.join(', ')}); ${opts.rounds} rounds, ${opts.durationSeconds} s measured per run`,
    pin === undefined
      ? '- CPU pinning: none (taskset unavailable or fewer than 2 CPUs): servers and load generator share the CPUs'
      : `- CPU pinning: each server on CPU ${pin.server}; runner, autocannon, redis-server and the micro-benchmarks on CPU ${pin.runner} (taskset -c)`,
    '',
  )
  if (targets.length > 0)
    out.push(
      '## Targets of issue 19 (“Cost per request”), from this run',
      '',
      targetTable(targets),
      '',
      "A ratio of added CPU divides the median over rounds of what our variant adds over the bare framework (its CPU per request minus bare's in the same round) by the same median for the peer; the spread in brackets is the same ratio round by round. A difference subtracts the two variants' CPU per request in the same round (median over rounds, spread). The Redis row divides req/s in the same round. The verdict is on the median. A spread that straddles the bound says the machine was too noisy to decide; a negative figure means the variant measured cheaper than bare in that round, which is noise.",
      '',
    )
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
  log(`bench: wrote ${relative(process.cwd(), RESULTS)} after ${elapsed()} s`)
}

/** The commit the packages were built from, `+ uncommitted changes` when the tree is dirty. */
function gitCommit() {
  const git = (...args) =>
    spawnSync('git', ['-C', BENCH_DIR, ...args], { encoding: 'utf8' }).stdout?.trim() ?? ''
  const head = git('rev-parse', 'HEAD')
  if (head === '') return 'unknown'
  const subject = git('log', '-1', '--format=%s')
  // The suite's own outputs do not make the measured code dirty.
  const dirty =
    git('status', '--porcelain', '--', '..', ':!RESULTS.md', ':!RESULTS.quick.md', ':!profiles') !==
    ''
  return `${head.slice(0, 12)} (${subject.slice(0, 80)})${dirty ? ' + uncommitted changes' : ''}`
}

await main()

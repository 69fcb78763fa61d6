// Starts a real PostgreSQL server on a free loopback port in a temp folder, for the PostgreSQL
// suites. Missing binaries: the suite is skipped loudly, except with CI=true, where it fails.
//
// PostgreSQL refuses to run as root, so when the tests run as root (CI, containers) initdb and
// postgres run as the `postgres` user (created by Debian's `postgresql` package) through spawn's
// uid/gid options: the child is postgres itself, not a runuser/su wrapper, so its pid is the
// postmaster's and signals reach it directly.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import {
  chownSync,
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  statfsSync,
} from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'

export interface PostgresServer {
  /** The loopback TCP port; the same across pause/resume/kill/restart. */
  readonly port: number
  /** `postgres://postgres@127.0.0.1:<port>/postgres` (trust auth, no password). */
  readonly url: string
  /** Whether the postmaster is alive (a frozen server counts as alive). */
  readonly running: boolean
  /** `url` with another database name. */
  urlFor(database: string): string
  /** Creates a fresh database (a unique name unless given) and returns its URL. */
  createDatabase(name?: string): Promise<string>
  /** SIGKILL to the postmaster and all its backends: a crash; clients see their sockets close. */
  kill(): Promise<void>
  /** Fast shutdown (SIGINT), keeping the data folder and port, so {@link resume} brings it back. */
  pause(): Promise<void>
  /** Starts the server again on the same port and data folder, after {@link pause} or {@link kill}. */
  resume(): Promise<void>
  /** {@link pause} (when running) then {@link resume}: data survives, connections do not. */
  restart(): Promise<void>
  /** SIGSTOP to every server process: it hangs with its sockets open, as behind a partition. */
  freeze(): Promise<void>
  /** SIGCONT after {@link freeze}. */
  thaw(): Promise<void>
  /** Stops it and removes its folder. Safe to call twice. */
  stop(): Promise<void>
}

const BIN_NAMES = ['initdb', 'postgres'] as const

/**
 * The folder holding `initdb` and `postgres`: `$PORTCULLIS_PG_BIN`, the newest
 * `/usr/lib/postgresql/<version>/bin` (Debian/Ubuntu), `/usr/local/bin`, or the `PATH`.
 */
export function findPostgresBin(): string | undefined {
  const has = (dir: string): boolean => BIN_NAMES.every((b) => existsSync(join(dir, b)))
  const env = process.env.PORTCULLIS_PG_BIN
  if (env !== undefined && env !== '') return has(env) ? env : undefined
  const candidates: string[] = []
  try {
    const versions = readdirSync('/usr/lib/postgresql')
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number(b) - Number(a))
    for (const v of versions) candidates.push(`/usr/lib/postgresql/${v}/bin`)
  } catch {
    // not Debian's layout
  }
  candidates.push('/usr/local/bin', '/usr/local/pgsql/bin', '/usr/bin')
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir !== '') candidates.push(dir)
  return candidates.find(has)
}

export function postgresAvailable(): boolean {
  const bin = findPostgresBin()
  return bin !== undefined && spawnSync(join(bin, 'postgres'), ['--version']).status === 0
}

interface RunAs {
  readonly uid: number
  readonly gid: number
}

/** Under root: the `postgres` user's ids; otherwise `undefined` (run as ourselves). */
function runAs(): RunAs | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined
  const id = (flag: string): number => {
    const r = spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' })
    if (r.status !== 0) {
      throw new Error(
        'PostgreSQL refuses to run as root and there is no "postgres" user to run it as ' +
          '(apt-get install postgresql creates one)',
      )
    }
    return Number(r.stdout.trim())
  }
  return { uid: id('-u'), gid: id('-g') }
}

/** Servers still running, killed if the test process exits without stopping them. */
const running = new Set<ChildProcess>()
/** Folders to remove at exit: the per-process initdb template, and servers never stopped. */
const leftovers = new Set<string>()
process.once('exit', () => {
  for (const c of running) signalServer(c, 'SIGKILL')
  for (const dir of leftovers) rmSync(dir, { recursive: true, force: true })
})

async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

const exited = (c: ChildProcess): boolean => c.exitCode !== null || c.signalCode !== null

async function waitExit(c: ChildProcess | undefined): Promise<void> {
  if (c === undefined || exited(c)) return
  await once(c, 'exit')
}

/**
 * The postmaster and its children. Each backend and auxiliary process calls setsid(), so they are
 * not in the postmaster's process group: signalling the group would miss them.
 */
function serverPids(pid: number): number[] {
  const pids = [pid]
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
        if (ppid === pid) pids.push(Number(entry))
      } catch {
        // exited meanwhile
      }
    }
  } catch {
    // no /proc: the postmaster alone
  }
  return pids
}

/** Sends `signal` to the postmaster, then to its children; returns the pids signalled. */
function signalServer(c: ChildProcess | undefined, signal: NodeJS.Signals): number[] {
  if (c?.pid === undefined || exited(c)) return []
  const pids = serverPids(c.pid)
  for (const pid of pids) {
    try {
      process.kill(pid, signal)
    } catch {
      // already gone
    }
  }
  return pids
}

/** Waits (up to 5 s) until none of `pids` exists: orphaned backends hold the shared memory. */
async function gone(pids: readonly number[]): Promise<void> {
  // A killed backend whose new parent does not reap it stays a zombie: that counts as gone.
  const alive = (pid: number): boolean => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
    } catch (error) {
      if ((error as { code?: string }).code === 'ENOENT') return false
      try {
        process.kill(pid, 0) // no /proc
        return true
      } catch {
        return false
      }
    }
  }
  const deadline = Date.now() + 5000
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
}

/** Runs a binary to completion as `as`, failing with its output. */
async function run(file: string, args: string[], as: RunAs | undefined): Promise<void> {
  const c = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], ...as, cwd: tmpdir() })
  let output = ''
  c.stdout?.on('data', (d: Buffer) => (output += d.toString()))
  c.stderr?.on('data', (d: Buffer) => (output += d.toString()))
  const [code] = (await once(c, 'exit')) as [number | null]
  if (code !== 0) throw new Error(`${file} exited with ${code}:\n${output}`)
}

/**
 * Where data folders go: `/dev/shm` when it is a roomy tmpfs (a cluster copy there takes a tenth
 * of the time on disk; durability across OS crashes is not a test concern), else the OS temp dir.
 */
function baseDir(): string {
  try {
    const fs = statfsSync('/dev/shm')
    if (fs.bavail * fs.bsize >= 1024 ** 3) return '/dev/shm'
  } catch {
    // no /dev/shm
  }
  return tmpdir()
}

/** A temp folder the server's user owns (mode 0700, as postgres requires for its data folder). */
async function ownedTempDir(as: RunAs | undefined, name: string): Promise<string> {
  const dir = await mkdtemp(join(baseDir(), name))
  if (as !== undefined) chownSync(dir, as.uid, as.gid)
  return dir
}

let template: Promise<string> | undefined

/**
 * One initdb per test process (about a second), copied for each server: a fresh cluster costs a
 * folder copy instead.
 */
function initdbTemplate(bin: string, as: RunAs | undefined): Promise<string> {
  template ??= (async () => {
    const dir = await ownedTempDir(as, 'portcullis-pg-template-')
    leftovers.add(dir)
    const data = join(dir, 'data')
    // trust: the server listens on loopback only, for the tests of this process.
    // prettier-ignore
    await run(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync',
      '--encoding=UTF8', '--locale=C'], as)
    return data
  })()
  template.catch(() => (template = undefined))
  return template
}

/** The postmaster status line of `postmaster.pid` (PostgreSQL ≥ 10 writes `ready` there). */
async function isReady(data: string, pid: number | undefined): Promise<boolean> {
  const text = await readFile(join(data, 'postmaster.pid'), 'utf8').catch(() => '')
  const lines = text.split('\n')
  return Number(lines[0]) === pid && lines[7]?.trim() === 'ready'
}

export async function startPostgres(): Promise<PostgresServer> {
  const bin = findPostgresBin()
  if (bin === undefined) throw new Error('PostgreSQL binaries (initdb, postgres) not found')
  const as = runAs()
  const dir = await ownedTempDir(as, 'portcullis-pg-')
  leftovers.add(dir)
  const data = join(dir, 'data')
  const logfile = join(dir, 'postgres.log')
  let port = 0
  let child: ChildProcess | undefined

  /** One attempt on `port`: true once this very process is ready, false if it exited. */
  const attempt = async (): Promise<boolean> => {
    const log = openSync(logfile, 'a')
    // prettier-ignore
    const args = ['-D', data, '-p', String(port), '-k', dir,
      '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off',
      '-c', 'full_page_writes=off', '-c', 'shared_buffers=32MB', '-c', 'max_connections=200']
    const c = spawn(join(bin, 'postgres'), args, {
      stdio: ['ignore', log, log],
      detached: true,
      cwd: dir,
      ...as,
    })
    closeSync(log)
    running.add(c)
    c.once('exit', () => running.delete(c))
    child = c
    const deadline = Date.now() + 30_000
    while (Date.now() < deadline && !exited(c)) {
      if (await isReady(data, c.pid)) return true
      await new Promise((r) => setTimeout(r, 25))
    }
    await gone(signalServer(c, 'SIGKILL'))
    await waitExit(c)
    return false
  }

  const failure = async (what: string): Promise<Error> => {
    const log = await readFile(logfile, 'utf8').catch(() => '')
    return new Error(
      `postgres ${what} (port ${port}); log:\n${log.split('\n').slice(-15).join('\n')}`,
    )
  }

  const shutdown = async (): Promise<void> => {
    const c = child
    if (c === undefined || exited(c)) return
    signalServer(c, 'SIGCONT') // a frozen server cannot shut down
    c.kill('SIGINT') // fast shutdown: abort transactions, disconnect clients, checkpoint
    const timer = setTimeout(() => signalServer(c, 'SIGKILL'), 10_000)
    await waitExit(c)
    clearTimeout(timer)
  }

  const resume = async (): Promise<void> => {
    if (child !== undefined && !exited(child)) throw new Error('resume(): server is running')
    // Clients reconnect to this port, so it must be this one; retry briefly if busy.
    for (let i = 0; i < 5; i++) {
      if (await attempt()) return
      await new Promise((r) => setTimeout(r, 200))
    }
    throw await failure('did not restart on the same port')
  }

  try {
    // cp -a keeps the owner (the postgres user) and the 0700 mode postgres insists on.
    await run('cp', ['-a', await initdbTemplate(bin, as), data], undefined)
    let started = false
    for (let i = 0; i < 5 && !started; i++) {
      // postgres needs a concrete port: take a free one, release it, and retry if another
      // process grabbed it in between (postgres exits when it cannot bind).
      port = await freePort()
      started = await attempt()
    }
    if (!started) throw await failure('did not start after 5 attempts')
  } catch (e) {
    const pids = signalServer(child, 'SIGKILL')
    await waitExit(child)
    await gone(pids)
    await rm(dir, { recursive: true, force: true })
    leftovers.delete(dir)
    throw e
  }

  const urlFor = (database: string): string =>
    `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(database)}`
  let databases = 0
  let stopped = false
  return {
    get port() {
      return port
    },
    get url() {
      return urlFor('postgres')
    },
    get running() {
      return child !== undefined && !exited(child)
    },
    urlFor,
    async createDatabase(name) {
      const db = name ?? `portcullis_test_${process.pid}_${++databases}`
      if (!/^[a-z_][a-z0-9_]*$/.test(db)) throw new Error(`createDatabase: bad name ${db}`)
      const client = new pg.Client({ connectionString: urlFor('postgres') })
      await client.connect()
      try {
        await client.query(`CREATE DATABASE ${db}`)
      } finally {
        await client.end()
      }
      return urlFor(db)
    },
    async kill() {
      const c = child
      const pids = signalServer(c, 'SIGKILL')
      await waitExit(c)
      await gone(pids)
    },
    pause: shutdown,
    resume,
    async restart() {
      await shutdown()
      await resume()
    },
    async freeze() {
      signalServer(child, 'SIGSTOP')
    },
    async thaw() {
      signalServer(child, 'SIGCONT')
    },
    async stop() {
      if (stopped) return
      stopped = true
      await shutdown()
      await rm(dir, { recursive: true, force: true })
      leftovers.delete(dir)
    },
  }
}

/**
 * In a `before` hook: skips the suite loudly when PostgreSQL is not installed, and fails instead
 * with `CI=true`. For suites that start their own server with {@link startPostgres}.
 */
export function skipWithoutPostgres(context: Mocha.Context, title: string): void {
  if (postgresAvailable()) return
  if (process.env.CI === 'true')
    throw new Error('PostgreSQL is not installed, and CI=true requires it')
  console.warn(
    `\n  !!! SKIPPED "${title}": PostgreSQL is not installed (apt-get install postgresql)\n`,
  )
  context.skip()
}

/**
 * `describe` that starts PostgreSQL before the suite and stops it after; `fn` gets a getter for
 * the server. Skips loudly when PostgreSQL is not installed, and fails instead with `CI=true`.
 */
export function describeWithPostgres(
  title: string,
  fn: (this: Mocha.Suite, postgres: () => PostgresServer) => void,
): void {
  describe(title, function () {
    let server: PostgresServer | undefined
    before(async function () {
      this.timeout(60_000)
      skipWithoutPostgres(this, title)
      server = await startPostgres()
    })
    after(async function () {
      this.timeout(30_000)
      await server?.stop()
    })
    fn.call(this, () => {
      if (server === undefined) throw new Error('PostgreSQL is not running')
      return server
    })
  })
}

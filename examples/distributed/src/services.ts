// Starts a throwaway redis-server and PostgreSQL for the demo: loopback only, free ports, temp
// folders removed on stop. Production runs these as managed services; this only makes the demo
// self-contained (the test suite has its own, fuller helpers in test/helpers/).
//
// PostgreSQL refuses to run as root, so under root initdb and postgres run as the `postgres` user
// (Debian's `postgresql` package creates it) through spawn's uid/gid options.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { chownSync, existsSync, readdirSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A server started by this module. */
export interface Service {
  /** `redis://…` or `postgres://…`. */
  readonly url: string
  /** Stops the server and removes its folder; safe to call twice. */
  stop(): Promise<void>
}

/** Servers still running: killed if this process exits without stopping them. */
const running = new Set<ChildProcess>()
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL')
})

const exited = (c: ChildProcess): boolean => c.exitCode !== null || c.signalCode !== null
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/**
 * Spawns `start(port)` on a free port until `ready()` says it is up; a server that exits (the
 * port was taken in between) is tried again on another port.
 */
async function startOnFreePort(
  what: string,
  start: (port: number) => ChildProcess,
  ready: (port: number, child: ChildProcess) => Promise<boolean>,
): Promise<{ port: number; child: ChildProcess }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort()
    const child = start(port)
    running.add(child)
    child.once('exit', () => running.delete(child))
    const deadline = Date.now() + 30_000
    while (!exited(child) && Date.now() < deadline) {
      if (await ready(port, child)) return { port, child }
      await sleep(25)
    }
    await stopChild(child, 'SIGKILL')
  }
  throw new Error(`${what} did not start`)
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (exited(child)) return
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
  child.kill(signal)
  if (!exited(child)) await once(child, 'exit')
  clearTimeout(timer)
}

/** Starts `redis-server` without persistence on a free loopback port. */
export async function startRedis(): Promise<Service> {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-demo-redis-'))
  try {
    const { port, child } = await startOnFreePort(
      'redis-server',
      (port) =>
        // detached: Ctrl-C reaches the demo, which stops the instances before their servers.
        spawn(
          'redis-server',
          // prettier-ignore
          ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
            '--dir', dir, '--logfile', join(dir, 'redis.log')],
          { stdio: 'ignore', detached: true },
        ),
      async () => (await redisLog(dir)).includes('Ready to accept connections'),
    )
    return service(`redis://127.0.0.1:${port}`, child, 'SIGTERM', dir)
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    throw error
  }
}

const redisLog = (dir: string): Promise<string> =>
  readFile(join(dir, 'redis.log'), 'utf8').catch(() => '')

/** The folder holding `initdb` and `postgres`: `$PORTCULLIS_PG_BIN`, Debian's layout, or the PATH. */
function postgresBin(): string {
  const has = (dir: string): boolean =>
    ['initdb', 'postgres'].every((b) => existsSync(join(dir, b)))
  const candidates = process.env.PORTCULLIS_PG_BIN ? [process.env.PORTCULLIS_PG_BIN] : []
  try {
    const versions = readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v))
    for (const v of versions.sort((a, b) => Number(b) - Number(a)))
      candidates.push(`/usr/lib/postgresql/${v}/bin`)
  } catch {
    // not Debian's layout
  }
  candidates.push(...(process.env.PATH ?? '').split(':').filter((d) => d !== ''))
  const bin = candidates.find(has)
  if (bin === undefined) throw new Error('initdb/postgres not found (apt-get install postgresql)')
  return bin
}

/** Under root: the `postgres` user's ids (PostgreSQL refuses to run as root). */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined
  const id = (flag: string): number => {
    const r = spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' })
    if (r.status !== 0) throw new Error('running as root needs a "postgres" user to run PostgreSQL')
    return Number(r.stdout.trim())
  }
  return { uid: id('-u'), gid: id('-g') }
}

/** Initialises a cluster in a temp folder and starts PostgreSQL on a free loopback port. */
export async function startPostgres(): Promise<Service> {
  const bin = postgresBin()
  const as = runAs()
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-demo-pg-'))
  if (as !== undefined) chownSync(dir, as.uid, as.gid)
  const data = join(dir, 'data')
  try {
    // trust auth: the server listens on 127.0.0.1 only, for this demo.
    // prettier-ignore
    const initdb = spawn(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust',
      '--no-sync', '--encoding=UTF8', '--locale=C'], { stdio: 'ignore', cwd: dir, ...as })
    const [code] = (await once(initdb, 'exit')) as [number | null]
    if (code !== 0) throw new Error(`initdb exited with ${code}`)
    const { port, child } = await startOnFreePort(
      'postgres',
      (port) =>
        spawn(
          join(bin, 'postgres'),
          // prettier-ignore
          ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1',
            '-c', 'fsync=off'],
          { stdio: 'ignore', detached: true, cwd: dir, ...as },
        ),
      // postmaster.pid: line 1 the pid, line 8 the status (`ready` once it accepts connections).
      async (_port, child) => {
        const lines = (await readFile(join(data, 'postmaster.pid'), 'utf8').catch(() => ''))
          .split('\n')
          .map((l) => l.trim())
        return Number(lines[0]) === child.pid && lines[7] === 'ready'
      },
    )
    // SIGINT is PostgreSQL's fast shutdown: it disconnects the clients and stops.
    return service(`postgres://postgres@127.0.0.1:${port}/postgres`, child, 'SIGINT', dir)
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    throw error
  }
}

function service(url: string, child: ChildProcess, signal: NodeJS.Signals, dir: string): Service {
  let stopping: Promise<void> | undefined
  return {
    url,
    stop: () =>
      (stopping ??= (async () => {
        await stopChild(child, signal)
        await rm(dir, { recursive: true, force: true })
      })()),
  }
}

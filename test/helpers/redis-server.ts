// Starts a real redis-server on a free loopback port in a temp folder, for the Redis suites, and
// names the ioredis majors they run on. Missing binary: the suite is skipped loudly, except with
// CI=true, where it fails.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis as Redis5, type RedisOptions } from 'ioredis'
import { Redis as Redis6 } from 'ioredis6'

/** One ioredis major the Redis suites run on. */
export interface RedisClientMajor {
  /** `ioredis 5` or `ioredis 6`, as the suites' titles show it. */
  readonly name: string
  /** The module to import it from: `ioredis`, or the `ioredis6` npm alias (for child processes). */
  readonly module: string
  /** The RESP version its connections speak by default (ioredis 6 sends `HELLO 3`). */
  readonly protocol: 2 | 3
  /**
   * Its client class, typed as ioredis 5's: the suites call only what both majors declare, and
   * run every call for real.
   */
  readonly Redis: typeof Redis5
}

/** The installed majors: `ioredis` (5) and `ioredis6` (npm:ioredis@6, root devDependencies). */
export const REDIS_CLIENT_MAJORS: readonly RedisClientMajor[] = [
  { name: 'ioredis 5', module: 'ioredis', protocol: 2, Redis: Redis5 },
  { name: 'ioredis 6', module: 'ioredis6', protocol: 3, Redis: Redis6 as unknown as typeof Redis5 },
]

/**
 * The client settings the READMEs recommend, on 127.0.0.1: fail fast while Redis is down
 * (no offline queue, one retry, a 500 ms command timeout) and reconnect quickly, at most
 * `maxReconnectDelayMs` apart.
 */
export function recommendedRedisOptions(maxReconnectDelayMs = 500): RedisOptions {
  return {
    host: '127.0.0.1',
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 500,
    retryStrategy: (times) => Math.min(times * 50, maxReconnectDelayMs),
  }
}

export interface RedisServer {
  readonly port: number
  readonly url: string
  /** Whether the server process is alive (paused counts as alive). */
  readonly running: boolean
  /** SIGKILL: the server dies as in a crash; clients see the socket close. */
  kill(): Promise<void>
  /** SIGSTOP: the server hangs with its sockets open, as behind a network partition. */
  pause(): Promise<void>
  /** SIGCONT after {@link pause}. */
  resume(): Promise<void>
  /** Starts a fresh server (no data) on the same port, after {@link kill}. */
  restart(): Promise<void>
  /** Stops it and removes its folder. Safe to call twice. */
  stop(): Promise<void>
}

export function redisAvailable(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0
}

/** Servers still running, killed if the test process exits without stopping them. */
const running = new Set<ChildProcess>()
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL')
})

async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** The pid of the redis-server answering on `port`, or `undefined` when none answers. */
async function serverPid(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = new Socket()
    let reply = ''
    const done = (pid: number | undefined) => {
      socket.destroy()
      resolve(pid)
    }
    socket.setTimeout(500, () => done(undefined))
    socket.once('error', () => done(undefined))
    socket.on('data', (d: Buffer) => {
      reply += d.toString()
      const m = /process_id:(\d+)\r\n/.exec(reply)
      if (m !== null) done(Number(m[1]))
      else if (reply.startsWith('-')) done(undefined) // e.g. -LOADING
    })
    socket.connect(port, '127.0.0.1', () => socket.write('INFO server\r\n'))
  })
}

const exited = (c: ChildProcess): boolean => c.exitCode !== null || c.signalCode !== null

async function waitExit(c: ChildProcess | undefined): Promise<void> {
  if (c === undefined || exited(c)) return
  await once(c, 'exit')
}

export async function startRedis(): Promise<RedisServer> {
  return startRedisWith([])
}

/** The `INFO replication` field `name` of the server on `port`, or `undefined`. */
async function replicationField(port: number, name: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = new Socket()
    let reply = ''
    const done = (value: string | undefined) => {
      socket.destroy()
      resolve(value)
    }
    socket.setTimeout(500, () => done(undefined))
    socket.once('error', () => done(undefined))
    socket.on('data', (d: Buffer) => {
      reply += d.toString()
      const m = new RegExp(`${name}:(\\S+)\r\n`).exec(reply)
      if (m !== null) done(m[1])
      else if (reply.startsWith('-')) done(undefined)
    })
    socket.connect(port, '127.0.0.1', () => socket.write('INFO replication\r\n'))
  })
}

/**
 * Starts a real replica of `primary` (`--replicaof 127.0.0.1 <port>`) and resolves once its link
 * to the primary is up (the initial sync done). `pause()` (SIGSTOP) makes the primary's `WAIT`
 * time out; `resume()` lets it catch up.
 */
export async function startRedisReplica(primary: RedisServer): Promise<RedisServer> {
  const replica = await startRedisWith(['--replicaof', '127.0.0.1', String(primary.port)])
  const deadline = Date.now() + 10_000
  while ((await replicationField(replica.port, 'master_link_status')) !== 'up') {
    if (Date.now() > deadline) {
      await replica.stop()
      throw new Error(`redis replica on port ${replica.port} did not sync with ${primary.port}`)
    }
    await new Promise((r) => setTimeout(r, 25))
  }
  return replica
}

async function startRedisWith(extraArgs: readonly string[]): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-redis-'))
  const logfile = join(dir, 'redis.log')
  let port = 0
  let child: ChildProcess | undefined

  /** One attempt on `port`: true once this very process answers, false if it exited (port taken). */
  const attempt = async (): Promise<boolean> => {
    const c = spawn(
      'redis-server',
      // prettier-ignore
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
        '--dir', dir, '--logfile', logfile, ...extraArgs],
      { stdio: 'ignore' },
    )
    running.add(c)
    c.once('exit', () => running.delete(c))
    child = c
    const deadline = Date.now() + 5000
    while (Date.now() < deadline && !exited(c)) {
      // Another process may hold the port: only our own pid counts as started.
      if ((await serverPid(port)) === c.pid) return true
      await new Promise((r) => setTimeout(r, 25))
    }
    c.kill('SIGKILL')
    await waitExit(c)
    return false
  }

  const failure = async (what: string): Promise<Error> => {
    const log = await readFile(logfile, 'utf8').catch(() => '')
    return new Error(
      `redis-server ${what} (port ${port}); log:\n${log.split('\n').slice(-10).join('\n')}`,
    )
  }

  try {
    let started = false
    for (let i = 0; i < 5 && !started; i++) {
      // Redis needs a concrete port: take a free one, release it, and retry if someone else
      // grabbed it in between (EADDRINUSE makes redis-server exit).
      port = await freePort()
      started = await attempt()
    }
    if (!started) throw await failure('did not start after 5 attempts')
  } catch (e) {
    await rm(dir, { recursive: true, force: true })
    throw e
  }

  let stopped = false
  return {
    get port() {
      return port
    },
    get url() {
      return `redis://127.0.0.1:${port}`
    },
    get running() {
      return child !== undefined && !exited(child)
    },
    async kill() {
      child?.kill('SIGKILL')
      await waitExit(child)
    },
    async pause() {
      child?.kill('SIGSTOP')
    },
    async resume() {
      child?.kill('SIGCONT')
    },
    async restart() {
      if (child !== undefined && !exited(child)) throw new Error('restart() needs kill() first')
      // The clients reconnect to this port, so it must be this one; retry briefly if busy.
      for (let i = 0; i < 5; i++) {
        if (await attempt()) return
        await new Promise((r) => setTimeout(r, 100))
      }
      throw await failure('did not restart on the same port')
    },
    async stop() {
      if (stopped) return
      stopped = true
      const c = child
      if (c !== undefined && !exited(c)) {
        c.kill('SIGCONT') // a paused server cannot handle SIGTERM
        c.kill('SIGTERM')
        const timer = setTimeout(() => c.kill('SIGKILL'), 3000)
        await waitExit(c)
        clearTimeout(timer)
      }
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/**
 * `describe` that starts Redis before the suite and stops it after; `fn` gets a getter for the
 * server. Skips loudly when `redis-server` is not installed, and fails instead with `CI=true`.
 */
export function describeWithRedis(title: string, fn: (redis: () => RedisServer) => void): void {
  describe(title, function () {
    let server: RedisServer | undefined
    before(async function () {
      if (!redisAvailable()) {
        if (process.env.CI === 'true')
          throw new Error('redis-server is not installed, and CI=true requires it')
        console.warn(
          `\n  !!! SKIPPED "${title}": redis-server is not installed (apt-get install redis-server)\n`,
        )
        this.skip()
      }
      server = await startRedis()
    })
    after(async () => {
      await server?.stop()
    })
    fn(() => {
      if (server === undefined) throw new Error('Redis is not running')
      return server
    })
  })
}

/**
 * {@link describeWithRedis} once per ioredis major ({@link REDIS_CLIENT_MAJORS}), each against a
 * server of its own: `fn` builds its clients with `client.Redis`.
 */
export function describeWithRedisClients(
  title: string,
  fn: (redis: () => RedisServer, client: RedisClientMajor) => void,
): void {
  for (const client of REDIS_CLIENT_MAJORS)
    describeWithRedis(`${title} [${client.name}]`, (redis) => fn(redis, client))
}

/**
 * Hooks giving the suite one client of `major` on `redis` (call it inside a `describe`): connected
 * before the first test (errors swallowed: outages are part of some suites) and closed after the
 * last. `use` receives it.
 */
export function useRedisClient(
  redis: () => RedisServer,
  major: RedisClientMajor,
  use: (client: Redis5) => void,
): void {
  let client: Redis5 | undefined
  before(async () => {
    client = new major.Redis({ port: redis().port, host: '127.0.0.1' })
    client.on('error', () => {})
    await once(client, 'ready')
    use(client)
  })
  after(async () => {
    if (client?.status === 'ready') await client.quit()
    else client?.disconnect()
  })
}

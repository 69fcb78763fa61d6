// Starts a real redis-server on a free loopback port in a temp folder, for the Redis suites.
// Missing binary: the suite is skipped loudly, except with CI=true, where it fails.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface RedisServer {
  readonly port: number
  readonly url: string
  /** SIGKILL: the server dies as in a crash. */
  kill(): Promise<void>
  /** Starts a fresh server on the same port. */
  restart(): Promise<void>
  /** Stops it and removes its folder. */
  stop(): Promise<void>
}

export function redisAvailable(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

async function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket()
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(500, () => done(false))
    socket.once('error', () => done(false))
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'))
    socket.once('data', (d) => done(d.toString().startsWith('+PONG')))
  })
}

export async function startRedis(): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-redis-'))
  let port = await freePort()
  let child: ChildProcess | undefined
  const launch = async (): Promise<void> => {
    for (let attempt = 0; attempt < 5; attempt++) {
      child = spawn(
        'redis-server',
        [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--save',
          '',
          '--appendonly',
          'no',
          '--dir',
          dir,
        ],
        {
          stdio: 'ignore',
        },
      )
      for (let i = 0; i < 100; i++) {
        if (await ping(port)) return
        if (child.exitCode !== null) break
        await new Promise((r) => setTimeout(r, 50))
      }
      child.kill('SIGKILL')
      port = await freePort()
    }
    throw new Error('redis-server did not start')
  }
  const exited = (c: ChildProcess | undefined) =>
    c === undefined || c.exitCode !== null || c.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((r) => c.once('exit', () => r()))
  await launch()
  return {
    get port() {
      return port
    },
    get url() {
      return `redis://127.0.0.1:${port}`
    },
    async kill() {
      const c = child
      c?.kill('SIGKILL')
      await exited(c)
    },
    async restart() {
      await launch()
    },
    async stop() {
      const c = child
      c?.kill('SIGTERM')
      await exited(c)
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** `describe` that starts Redis for the suite, or skips loudly when it is not installed (fails in CI). */
export function describeWithRedis(title: string, fn: (redis: () => RedisServer) => void): void {
  describe(title, function () {
    let server: RedisServer | undefined
    before(async function () {
      if (!redisAvailable()) {
        if (process.env.CI === 'true')
          throw new Error('redis-server is not installed, and CI=true requires it')
        console.warn(`\n  !!! SKIPPED "${title}": redis-server is not installed\n`)
        this.skip()
      }
      server = await startRedis()
    })
    after(async () => {
      await server?.stop()
    })
    fn(() => server as RedisServer)
  })
}

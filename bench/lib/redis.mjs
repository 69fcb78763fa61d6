/**
 * A throw-away `redis-server` for the Redis variants: free loopback port, no persistence, its own
 * temp folder, killed when this process exits.
 * @module
 */
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

/** Whether `redis-server` is on the PATH. */
export function redisAvailable() {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0
}

/** @returns {Promise<number>} a port free on 127.0.0.1 right now */
async function freePort() {
  const probe = createServer()
  probe.listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const { port } = probe.address()
  await new Promise((resolve) => probe.close(resolve))
  return port
}

/** @returns {Promise<boolean>} whether a Redis answers PONG on the port */
function ping(port) {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => s.write('PING\r\n'))
    s.setTimeout(500, () => (s.destroy(), resolve(false)))
    s.once('data', (d) => (s.destroy(), resolve(d.toString().startsWith('+PONG'))))
    s.once('error', () => resolve(false))
  })
}

/**
 * Starts redis-server and waits until it answers.
 * @returns {Promise<{ port: number, version: string, stop: () => Promise<void> }>}
 */
export async function startRedis() {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-bench-redis-'))
  const version =
    /v=(\S+)/.exec(spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout)?.[1] ??
    'unknown'
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort()
    const child = spawn(
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
      { stdio: 'ignore' },
    )
    const kill = () => child.kill('SIGKILL')
    process.once('exit', kill)
    const exited = once(child, 'exit')
    for (let i = 0; i < 100 && child.exitCode === null; i++) {
      if (await ping(port)) {
        return {
          port,
          version,
          stop: async () => {
            process.removeListener('exit', kill)
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
            await exited
            await rm(dir, { recursive: true, force: true })
          },
        }
      }
      await sleep(50)
    }
    kill()
    await exited
    process.removeListener('exit', kill)
  }
  await rm(dir, { recursive: true, force: true })
  throw new Error('redis-server did not start')
}

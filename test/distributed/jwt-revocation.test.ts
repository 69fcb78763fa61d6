// Two gate instances, each its own Node process (jwt-revocation-instance.ts: Express, a JWT
// verifier with createRedisRevocationList and the Redis broker), sharing one real redis-server.
// The revocation is written the way `portcullis tokens revoke` writes it: from a third process'
// connection (here the test's), to Redis, announced on the broker.
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { Redis } from 'ioredis'
import {
  createRedisBroker,
  createRedisRevocationList,
  type RedisBroker,
  type RedisRevocationList,
} from '@portcullis/redis'
import { seconds, signHmac } from '../helpers/jwt.js'
import { redisAvailable, startRedis, type RedisServer } from '../helpers/redis-server.js'

const TITLE = 'JWT revocation across two instances sharing Redis (separate processes)'
const INSTANCE = fileURLToPath(new URL('./jwt-revocation-instance.ts', import.meta.url))
const SECRET = 'distributed-jwt-secret-0123456789abcdef'
const CHANNEL_PREFIX = `jwtrev${process.pid}:`
const KEY_PREFIX = `jwtrev${process.pid}`

interface Instance {
  readonly name: string
  readonly url: string
  readonly child: ChildProcess
}

async function startInstance(name: string, redisUrl: string): Promise<Instance> {
  const child = fork(INSTANCE, [], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: {
      ...process.env,
      REDIS_URL: redisUrl,
      JWT_SECRET: SECRET,
      CHANNEL_PREFIX,
      KEY_PREFIX,
    },
  })
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start in 30 s`)), 30_000)
    child.once('exit', (code) => reject(new Error(`${name} exited before serving (${code})`)))
    child.once('message', (m: { port: number }) => {
      clearTimeout(timer)
      resolve(m.port)
    })
  })
  return { name, url: `http://127.0.0.1:${port}`, child }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

async function get(
  instance: Instance,
  jwt: string,
): Promise<{ status: number; code: string | undefined }> {
  const res = await fetch(`${instance.url}/me`, { headers: { authorization: `Bearer ${jwt}` } })
  const body = (await res.json()) as { code?: string }
  return { status: res.status, code: body.code }
}

const token = (claims: Record<string, unknown>): string => {
  const now = seconds(Date.now())
  return signHmac(
    { claims: { iss: 'https://id.example', aud: 'api', iat: now - 5, exp: now + 600, ...claims } },
    SECRET,
  )
}

describe(TITLE, function () {
  this.timeout(30_000)
  let redis: RedisServer | undefined
  let client: Redis | undefined
  let broker: RedisBroker | undefined
  let revoker: RedisRevocationList | undefined
  const instances: Instance[] = []

  before(async function () {
    this.timeout(60_000)
    if (!redisAvailable()) {
      if (process.env.CI === 'true') throw new Error('redis-server is not installed, and CI=true')
      console.warn(`\n  !!! SKIPPED "${TITLE}": redis-server is not installed\n`)
      this.skip()
    }
    redis = await startRedis()
    const started = await Promise.allSettled(
      ['instance-1', 'instance-2'].map((n) => startInstance(n, redis!.url)),
    )
    for (const s of started) if (s.status === 'fulfilled') instances.push(s.value)
    for (const s of started) if (s.status === 'rejected') throw s.reason
    client = new Redis(redis.url, { maxRetriesPerRequest: 1, commandTimeout: 500 })
    await once(client, 'ready')
    broker = createRedisBroker({ publisher: client, channelPrefix: CHANNEL_PREFIX })
    revoker = createRedisRevocationList({ client, broker, prefix: KEY_PREFIX, resyncIntervalMs: 0 })
    await broker.ready()
  })

  after(async function () {
    this.timeout(30_000)
    await Promise.all(instances.splice(0).map((i) => stop(i.child)))
    await revoker?.close()
    await broker?.close()
    await client?.quit()
    await redis?.stop()
  })

  async function refusedWithinOneSecond(jwt: string, revoke: () => Promise<unknown>) {
    for (const instance of instances) {
      expect((await get(instance, jwt)).status).to.equal(200)
      // Served from the verifier's token cache from here on.
      expect((await get(instance, jwt)).status).to.equal(200)
    }
    const startedAt = performance.now()
    await revoke()
    return Promise.all(
      instances.map(async (instance) => {
        for (;;) {
          const answer = await get(instance, jwt)
          const ms = performance.now() - startedAt
          if (answer.status !== 200) {
            expect(answer).to.deep.equal({ status: 401, code: 'ERR_JWT_REVOKED' })
            return ms
          }
          if (ms > 1000) expect.fail(`${instance.name} still accepts the revoked token after 1 s`)
          await new Promise((resolve) => setTimeout(resolve, 1))
        }
      }),
    )
  }

  it('refuses a token revoked by jti on both instances within one second', async () => {
    const jwt = token({ sub: 'u-1', jti: 'dist-tok-1' })
    const ms = await refusedWithinOneSecond(jwt, () => revoker!.revokeToken({ jti: 'dist-tok-1' }))
    console.log(
      `      jti revocation reached instance-1 after ${ms[0]!.toFixed(1)} ms, ` +
        `instance-2 after ${ms[1]!.toFixed(1)} ms`,
    )
    expect(Math.max(...ms)).to.be.below(1000)
  })

  it('refuses the tokens of a subject revoked before now on both instances within one second', async () => {
    const jwt = token({ sub: 'u-2', jti: 'dist-tok-2' })
    const ms = await refusedWithinOneSecond(jwt, () =>
      revoker!.revokeSubject({ subject: 'u-2', beforeMs: Date.now() }),
    )
    console.log(
      `      subject revocation reached instance-1 after ${ms[0]!.toFixed(1)} ms, ` +
        `instance-2 after ${ms[1]!.toFixed(1)} ms`,
    )
    expect(Math.max(...ms)).to.be.below(1000)
    // A token issued after the cut-off is served (iat is whole seconds: the next one, within the
    // clock tolerance, rather than a real sleep).
    const fresh = token({ sub: 'u-2', iat: seconds(Date.now()) + 1 })
    for (const instance of instances) expect((await get(instance, fresh)).status).to.equal(200)
  })
})

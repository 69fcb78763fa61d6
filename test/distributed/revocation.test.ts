// Three Portcullis instances, each its own Node process (examples/distributed/src/instance.ts: an
// Express app with the PostgreSQL key store behind a per-process cache, the Redis broker and
// Redis rate-limit counters), sharing one real PostgreSQL and one real redis-server.
import { randomBytes } from 'node:crypto'
import { expect } from 'chai'
import { startInstance, type Instance } from '../../examples/distributed/src/cluster.js'
import {
  skipWithoutPostgres,
  startPostgres,
  type PostgresServer,
} from '../helpers/postgres-server.js'
import { redisAvailable, startRedis, type RedisServer } from '../helpers/redis-server.js'

const TITLE = 'three instances sharing PostgreSQL and Redis (separate processes)'
const QUOTE_LIMIT = 5

async function get(
  instance: Instance,
  path: string,
  key: string,
): Promise<{ status: number; code: string | undefined }> {
  const res = await fetch(instance.url + path, { headers: { 'x-api-key': key } })
  const body = (await res.json()) as { code?: string }
  return { status: res.status, code: body.code }
}

describe(TITLE, function () {
  this.timeout(30_000)
  let postgres: PostgresServer | undefined
  let redis: RedisServer | undefined
  const instances: Instance[] = []

  before(async function () {
    this.timeout(60_000)
    skipWithoutPostgres(this, TITLE)
    if (!redisAvailable()) {
      if (process.env.CI === 'true') throw new Error('redis-server is not installed, and CI=true')
      console.warn(`\n  !!! SKIPPED "${TITLE}": redis-server is not installed\n`)
      this.skip()
    }
    const servers = await Promise.allSettled([startPostgres(), startRedis()])
    if (servers[0].status === 'fulfilled') postgres = servers[0].value
    if (servers[1].status === 'fulfilled') redis = servers[1].value
    for (const s of servers) if (s.status === 'rejected') throw s.reason
    const databaseUrl = await postgres!.createDatabase()
    const pepper = randomBytes(32).toString('base64url')
    const started = await Promise.allSettled(
      [1, 2, 3].map((n) =>
        startInstance({
          name: `instance-${n}`,
          databaseUrl,
          redisUrl: redis!.url,
          pepper,
          quoteLimit: QUOTE_LIMIT,
        }),
      ),
    )
    for (const s of started) if (s.status === 'fulfilled') instances.push(s.value)
    for (const s of started) if (s.status === 'rejected') throw s.reason
  })

  after(async function () {
    this.timeout(30_000)
    await Promise.all(instances.splice(0).map((i) => i.stop()))
    await Promise.all([postgres?.stop(), redis?.stop()])
  })

  it('refuses a key revoked through one instance on the other two within one second', async () => {
    const [a, b, c] = instances as [Instance, Instance, Instance]
    const { key, id } = await a.createKey({ name: 'revoke-me', ownerId: 'u-revoke' })
    for (const instance of instances) {
      expect((await get(instance, '/whoami', key)).status).to.equal(200)
      // The second request is served from the instance's cache, not from PostgreSQL: from here
      // on only the broker can tell the instance about the revocation (the cache TTL is 60 s).
      const reads = await instance.storeReads()
      expect((await get(instance, '/whoami', key)).status).to.equal(200)
      expect(await instance.storeReads()).to.equal(reads)
    }

    const startedAt = performance.now()
    await a.revokeKey(id)
    expect(await get(a, '/whoami', key)).to.deep.equal({ status: 401, code: 'ERR_APIKEY_INVALID' })
    const refusedAfterMs = await Promise.all(
      [b, c].map(async (instance) => {
        for (;;) {
          const answer = await get(instance, '/whoami', key)
          const ms = performance.now() - startedAt
          if (answer.status !== 200) {
            expect(answer).to.deep.equal({ status: 401, code: 'ERR_APIKEY_INVALID' })
            return ms
          }
          if (ms > 1000) expect.fail(`${instance.name} still accepts the revoked key after 1 s`)
          await new Promise((resolve) => setTimeout(resolve, 1))
        }
      }),
    )
    console.log(
      `      revocation reached instance-2 after ${refusedAfterMs[0]!.toFixed(1)} ms, ` +
        `instance-3 after ${refusedAfterMs[1]!.toFixed(1)} ms`,
    )
    expect(Math.max(...refusedAfterMs)).to.be.below(1000)
  })

  it('admits a key exactly its limit across the three instances (no over-admission)', async () => {
    const { key } = await instances[0]!.createKey({ name: 'limited', ownerId: 'u-limited' })
    // 30 concurrent requests, 10 to each instance, racing on the one counter in Redis.
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, n) => get(instances[n % 3]!, '/quote', key)),
    )
    const admitted = answers.filter((a) => a.status === 200).length
    expect(admitted).to.equal(QUOTE_LIMIT)
    expect(answers.filter((a) => a.status === 429 && a.code === 'ERR_RATE_LIMITED')).to.have.length(
      30 - QUOTE_LIMIT,
    )
    // And afterwards every instance refuses it.
    for (const instance of instances)
      expect((await get(instance, '/quote', key)).status).to.equal(429)
  })
})

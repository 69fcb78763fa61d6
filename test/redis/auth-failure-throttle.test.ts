import { once } from 'node:events'
import { expect } from 'chai'
import type { Redis, RedisOptions } from 'ioredis'
import type { AuthFailureLockout, AuthFailureThrottle, Logger } from '@portcullis/core'
import { createFakeClock, createMemoryMetrics } from '@portcullis/core/testing'
import { createRedisAuthFailureThrottle } from '@portcullis/redis'
import { describeWithRedisClients } from '../helpers/redis-server.js'

let run = 0
/** Ids unique per run, so reruns against one server never share counters. */
const unique = (name: string): string => `${name}-${process.pid}-${Date.now()}-${run++}`

const RECOMMENDED: RedisOptions = {
  host: '127.0.0.1',
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  commandTimeout: 500,
  retryStrategy: (times) => Math.min(times * 50, 500),
}

/** Resolves within `ms` or fails the test: no call may stay pending. */
async function settled<TValue>(p: TValue | Promise<TValue>, ms = 1500): Promise<TValue> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      Promise.resolve(p),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

/** Scripts Redis has run (EVALSHA and EVAL), from INFO commandstats. */
async function scriptCalls(c: Redis): Promise<number> {
  const info = await c.info('commandstats')
  let total = 0
  for (const m of info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) total += Number(m[1])
  return total
}

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = []
  return {
    lines,
    warn: (_f, m) => lines.push(m),
    error: (_f, m) => lines.push(m),
  }
}

describeWithRedisClients('createRedisAuthFailureThrottle', (server, client) => {
  const clients: Redis[] = []
  const connect = async (): Promise<Redis> => {
    const c = new client.Redis({ ...RECOMMENDED, port: server().port })
    c.on('error', () => {})
    clients.push(c)
    if (c.status !== 'ready') await once(c, 'ready')
    return c
  }
  afterEach(async () => {
    for (const c of clients.splice(0)) {
      if (c.status === 'ready') await c.quit()
      else c.disconnect()
    }
  })

  it('counts failures in Redis and locks at the threshold, under ptcl:af:', async () => {
    const c = await connect()
    const throttle = createRedisAuthFailureThrottle({
      client: c,
      addressThreshold: false,
      credentialThreshold: 3,
      credentialScope: 'global',
      baseLockSeconds: 2,
    })
    const id = unique('k')
    const s = { ip: '192.0.2.1', credentialId: id }
    expect(await throttle.failed(s)).to.equal(undefined)
    expect(await throttle.failed(s)).to.equal(undefined)
    expect(await throttle.failed(s)).to.deep.equal({
      key: 'credential',
      retryAfterSeconds: 2,
      failures: 3,
    })
    // The instance that counted it knows the lock without asking Redis: a plain value.
    expect(throttle.check(s)).to.deep.equal({
      key: 'credential',
      retryAfterSeconds: 2,
      failures: 3,
    })
    expect(await c.hget(`ptcl:af:c:${id}`, 'f')).to.equal('3')
    const ttl = await c.pttl(`ptcl:af:c:${id}`)
    expect(ttl).to.be.within(900_000, 902_000)
    // A further failure doubles the lock, in Redis.
    expect(await throttle.failed(s)).to.include({ retryAfterSeconds: 4, failures: 4 })
  })

  it('lets two instances sharing a Redis see the same lockout', async () => {
    const options = {
      addressThreshold: 3,
      credentialThreshold: false as const,
      refreshMs: 0,
    }
    const a = createRedisAuthFailureThrottle({ client: await connect(), ...options })
    const b = createRedisAuthFailureThrottle({ client: await connect(), ...options })
    const fresh = createRedisAuthFailureThrottle({ client: await connect(), ...options })
    const ip = '10.9.9.9'
    await a.failed({ ip })
    await a.failed({ ip })
    const lock = await b.failed({ ip })
    expect(lock).to.deep.equal({ key: 'ip', retryAfterSeconds: 1, failures: 3 })
    // A saw this address fail: its check asks Redis and finds B's lock.
    expect(await settled(a.check({ ip }))).to.deep.equal(lock)
    // An instance that never saw it fail answers from memory: no lock known, no round trip.
    expect(fresh.check({ ip })).to.equal(undefined)
    // Its first failure of the address is counted in Redis and teaches it the (longer) lock.
    expect(await fresh.failed({ ip })).to.include({ key: 'ip', retryAfterSeconds: 2, failures: 4 })
    expect(fresh.check({ ip })).to.include({ key: 'ip', failures: 4 })
  })

  it('costs no Redis call for a client without failures, and refreshes a seen one at most every refreshMs', async () => {
    const c = await connect()
    const observer = await connect()
    const clock = createFakeClock()
    const throttle = createRedisAuthFailureThrottle({
      client: c,
      addressThreshold: 5,
      credentialThreshold: false,
      refreshMs: 1000,
      now: clock,
    })
    const before = await scriptCalls(observer)
    for (let i = 0; i < 100; i++)
      expect(throttle.check({ ip: `198.51.100.${i}` })).to.equal(undefined)
    expect(await scriptCalls(observer)).to.equal(before)

    const ip = '203.0.113.77'
    await throttle.failed({ ip })
    const afterFailure = await scriptCalls(observer)
    // Just counted: the mirror is fresh, and other addresses still cost nothing.
    expect(throttle.check({ ip })).to.equal(undefined)
    expect(throttle.check({ ip: '198.51.100.1' })).to.equal(undefined)
    expect(await scriptCalls(observer)).to.equal(afterFailure)
    clock.advance(1000)
    expect(await settled(throttle.check({ ip }))).to.equal(undefined)
    expect(await scriptCalls(observer)).to.equal(afterFailure + 1)
  })

  it('forgets a credential counter in Redis after a success seen by this instance', async () => {
    const c = await connect()
    const throttle = createRedisAuthFailureThrottle({
      client: c,
      addressThreshold: false,
      credentialThreshold: 3,
    })
    const id = unique('ok')
    const s = { ip: '192.0.2.44', credentialId: id }
    await throttle.failed(s)
    await throttle.failed(s)
    const key = `ptcl:af:c:192.0.2.44|${id}`
    expect(await c.exists(key)).to.equal(1)
    throttle.succeeded(s)
    for (let i = 0; i < 50 && (await c.exists(key)) === 1; i++)
      await new Promise((r) => setTimeout(r, 10))
    expect(await c.exists(key)).to.equal(0)
    expect(await throttle.failed(s)).to.equal(undefined)
  })

  it('answers within its deadline while Redis stalls, counts in memory, and reports the outage', async () => {
    const c = await connect()
    const metrics = createMemoryMetrics()
    const logger = recordingLogger()
    const throttle: AuthFailureThrottle = createRedisAuthFailureThrottle({
      client: c,
      addressThreshold: 2,
      credentialThreshold: false,
      timeoutMs: 100,
      refreshMs: 0,
      metrics,
      logger,
    })
    const ip = '192.0.2.200'
    const seen = '10.200.0.1'
    await throttle.failed({ ip: seen })
    await server().pause()
    let first: AuthFailureLockout | undefined
    let second: AuthFailureLockout | undefined
    let checked: AuthFailureLockout | undefined
    try {
      first = await settled(throttle.failed({ ip }), 1000)
      second = await settled(throttle.failed({ ip }), 1000)
      // A key this instance saw fail: check asks Redis, gives up at the deadline, answers from memory.
      checked = await settled(throttle.check({ ip: seen }), 1000)
    } finally {
      await server().resume()
    }
    expect(first).to.equal(undefined)
    // Counted in process memory while Redis stalled: the second failure reaches the threshold.
    expect(second).to.include({ key: 'ip', failures: 2 })
    expect(checked).to.equal(undefined)
    expect(metrics.value('storeFailures', { store: 'auththrottle' })).to.equal(3)
    expect(
      metrics.value('failureModeActivations', { store: 'auththrottle', mode: 'insurance' }),
    ).to.equal(3)
    expect(logger.lines.filter((l) => l.includes('Redis failed'))).to.have.length(1)
    // Back: the next failure reaches Redis again, and the end of the outage is logged once.
    for (let i = 0; i < 100 && c.status !== 'ready'; i++)
      await new Promise((r) => setTimeout(r, 20))
    await settled(throttle.failed({ ip: '10.201.0.1' }))
    expect(logger.lines.filter((l) => l.includes('answers again'))).to.have.length(1)
  })

  it('refuses a bad option with ERR_CONFIG_INVALID', async () => {
    const c = await connect()
    for (const bad of [{ timeoutMs: 0 }, { refreshMs: -1 }, { prefix: 'a b' }, { client: {} }]) {
      let thrown: unknown
      try {
        createRedisAuthFailureThrottle({ client: c, ...bad } as never)
      } catch (e) {
        thrown = e
      }
      expect(thrown).to.include({ code: 'ERR_CONFIG_INVALID' })
    }
  })
})

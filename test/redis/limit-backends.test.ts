// The limit-backend conformance suite on Redis (@portcullis/redis), once per ioredis major, each
// against a real redis-server. Redis counts in its own time: windows that must pass are 1 s long
// and pass in real time.
import { once } from 'node:events'
import type { Redis } from 'ioredis'
import { createRedisBackend } from '@portcullis/redis'
import { describeLimitBackendConformance } from '../helpers/limit-backend-conformance.js'
import { describeWithRedisClients, recommendedRedisOptions } from '../helpers/redis-server.js'

describeWithRedisClients('limit-backend conformance on Redis', (server, ioredis) => {
  let client: Redis
  beforeEach(async () => {
    client = new ioredis.Redis({ ...recommendedRedisOptions(), port: server().port })
    client.on('error', () => {})
    if (client.status !== 'ready') await once(client, 'ready')
  })
  afterEach(async () => {
    await client.quit()
  })

  describeLimitBackendConformance('redis backend', {
    backend: () => createRedisBackend({ client }),
    injectedClock: false,
    // Refunds go out without waiting, on the same connection: a PING answered comes after them.
    drain: async () => {
      await client.ping()
    },
  })
})

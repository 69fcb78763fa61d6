import { once } from 'node:events'
import { expect } from 'chai'
import {
  createApiKeyManager,
  createCachedKeyStore,
  createGate,
  createLruCache,
  createMemoryKeyStore,
  createTieredCache,
  type ApiKeyRecord,
  type Gate,
  type KeyStore,
} from '@portcullis/core'
import { fakeRequest } from '@portcullis/core/testing'
import { createRedisBroker, createRedisCache, type RedisBroker } from '@portcullis/redis'
import { describeWithRedisClients } from '../helpers/redis-server.js'

const PEPPER = 'p'.repeat(32)

describeWithRedisClients(
  'revocation across instances over Redis (real redis-server)',
  (server, ioredis) => {
    const closers: Array<() => Promise<unknown>> = []
    afterEach(async () => {
      for (const close of closers.splice(0).reverse()) await close()
    })

    /** One "instance": its own Redis connections, broker, tiered cache, cached store and gate. */
    async function instance(store: KeyStore, namespace: string, channelPrefix: string) {
      const client = new ioredis.Redis({
        port: server().port,
        host: '127.0.0.1',
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        commandTimeout: 500,
      })
      client.on('error', () => {})
      await once(client, 'ready')
      closers.push(() => client.quit())
      const broker: RedisBroker = createRedisBroker({ publisher: client, channelPrefix })
      closers.push(() => broker.close())
      const cached = createCachedKeyStore({
        store,
        broker,
        cache: createTieredCache<ApiKeyRecord>({
          local: createLruCache<ApiKeyRecord>({ ttlMs: 60_000 }),
          remote: createRedisCache<ApiKeyRecord>({ client, namespace }),
          broker,
          namespace,
        }),
      })
      const gate: Gate = createGate({
        apiKeys: { store: cached, pepper: PEPPER },
        broker,
        audit: false,
      })
      closers.push(() => gate.close())
      await broker.ready()
      const status = async (key: string): Promise<number> =>
        (await gate.evaluate(fakeRequest({ headers: { 'x-api-key': key } }))).status
      return { broker, cached, gate, status }
    }

    it('refuses a revoked key on every instance within one second', async () => {
      const store = createMemoryKeyStore() // the shared database of the three instances
      const ns = `keys${process.pid}`
      const prefix = `rev${process.pid}:`
      const [a, b, c] = [
        await instance(store, ns, prefix),
        await instance(store, ns, prefix),
        await instance(store, ns, prefix),
      ]
      const manager = createApiKeyManager({ store: a.cached, pepper: PEPPER, broker: a.broker })
      const { key, record } = await manager.create({ name: 'k', ownerId: 'u' })
      for (const i of [a, b, c]) expect(await i.status(key)).to.equal(200)
      // Cached now in every verifier, every local tier and Redis.
      for (const i of [a, b, c]) expect(await i.status(key)).to.equal(200)

      const revokedAt = Date.now()
      await manager.revoke(record.id)
      const refusedAfter: number[] = []
      for (const i of [b, c]) {
        while ((await i.status(key)) !== 401) {
          if (Date.now() - revokedAt > 1000) expect.fail('a revoked key still works after 1 s')
          await new Promise((r) => setTimeout(r, 2))
        }
        refusedAfter.push(Date.now() - revokedAt)
      }
      expect(await a.status(key)).to.equal(401)
      expect(Math.max(...refusedAfter)).to.be.below(1000)
    })
  },
)

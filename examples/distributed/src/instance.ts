// One Portcullis instance of the distributed example: an Express app whose keys live in PostgreSQL
// (behind a per-process cache), whose rate-limit counters live in Redis, and which hears key
// revocations from the other instances over the Redis broker.
//
// Started by cluster.ts (the demo and the test suite) as a child process with an IPC channel,
// configured through the environment:
//
//   DATABASE_URL, REDIS_URL   the shared PostgreSQL and Redis
//   PORTCULLIS_PEPPER          the shared server secret keying the key hashes (>= 32 bytes)
//   PORTCULLIS_INSTANCE        a name shown in answers (default: instance-<pid>)
//   PORT                      HTTP port on 127.0.0.1 (default 0: a free one)
//   QUOTE_LIMIT               requests per minute per key on GET /quote, over all instances (default 5)
//
// Routes: GET /health (public), GET /whoami (any valid key), GET /quote (rate limited). Key
// administration (create, revoke) comes over the IPC channel only, never over HTTP.
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import express from 'express'
import { Redis } from 'ioredis'
import {
  createApiKeyManager,
  createCachedKeyStore,
  createGate,
  createRateLimitStage,
  MINUTE,
  type ApiKeyId,
  type MetricsClient,
} from '@portcullis/core'
import { authMiddleware, problemHandler, requirePolicy } from '@portcullis/express'
import { createPostgresKeyStore } from '@portcullis/postgres'
import { createRedisBackend, createRedisBroker } from '@portcullis/redis'
import type { InstanceReply, InstanceRequest } from './cluster.js'

function env(name: string): string {
  const value = process.env[name]
  if (value === undefined || value === '') throw new Error(`${name} is not set`)
  return value
}

const name = process.env.PORTCULLIS_INSTANCE ?? `instance-${process.pid}`
const pepper = env('PORTCULLIS_PEPPER')
const quoteLimit = Number(process.env.QUOTE_LIMIT ?? 5)

// Fail fast while Redis is down: each limit's failure mode (closed by default: 503) then decides.
const redis = new Redis(env('REDIS_URL'), {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  commandTimeout: 500,
})
redis.on('error', (error: Error) => console.warn(`${name}: redis: ${error.message}`))
await once(redis, 'ready')
const broker = createRedisBroker({ publisher: redis }) // subscribes on a duplicate connection

// PostgreSQL is the source of truth; the cached store keeps verified records in a per-process LRU
// (60 s) and drops them when a key.* message arrives on the broker. Counting its misses shows
// how rarely an instance reads the database.
let storeReads = 0
const metrics: MetricsClient = {
  increment(metric, labels) {
    if (metric === 'keyCacheLookups' && labels?.result === 'miss') storeReads++
  },
  set() {},
  observe() {},
}
const postgres = createPostgresKeyStore({ connectionString: env('DATABASE_URL') })
await postgres.ready() // migrations run once, under an advisory lock, whichever instance is first
const store = createCachedKeyStore({ store: postgres, broker, metrics })

const gate = createGate({
  apiKeys: { store, pepper },
  broker, // the verifier's own cache also drops revoked keys on broker messages
  stages: [createRateLimitStage({ backend: createRedisBackend({ client: redis }) })],
  audit: false,
})
const keys = createApiKeyManager({ store, pepper, broker })
await broker.ready()

const app = express()
app.get('/health', (_req, res) => {
  res.json({ ok: true, instance: name })
})
app.use(authMiddleware({ gate }))
app.get('/whoami', requirePolicy({}), (req, res) => {
  res.json({ instance: name, principal: req.auth?.principal?.id })
})
app.get(
  '/quote',
  // Counted in Redis per API key, so the limit holds across every instance together.
  requirePolicy({
    rateLimits: [{ name: 'quote', limit: quoteLimit, windowMs: MINUTE, key: 'apikey' }],
  }),
  (_req, res) => {
    res.json({ instance: name, quote: 'Trust, but verify.' })
  },
)
app.use(problemHandler({ gate }))

const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1')
await once(server, 'listening')
const { port } = server.address() as AddressInfo

async function handle(request: InstanceRequest): Promise<unknown> {
  switch (request.op) {
    case 'create': {
      const { key, record } = await keys.create({ name: request.name, ownerId: request.ownerId })
      return { key, id: record.id }
    }
    case 'revoke':
      return { revoked: (await keys.revoke(request.keyId as ApiKeyId)) !== undefined }
    case 'stats':
      return { storeReads }
  }
}

process.on('message', (message: InstanceRequest) => {
  handle(message).then(
    (result) => process.send?.({ id: message.id, ok: true, result } satisfies InstanceReply),
    (error: unknown) =>
      process.send?.({ id: message.id, ok: false, error: String(error) } satisfies InstanceReply),
  )
})

let closing: Promise<void> | undefined
function shutdown(): Promise<void> {
  closing ??= (async () => {
    server.closeAllConnections() // keep-alive sockets would hold close() open
    await new Promise((resolve) => server.close(resolve))
    await gate.close()
    await store.close() // closes the PostgreSQL pool too
    await broker.close()
    await redis.quit()
  })()
  return closing
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void shutdown().then(() => process.exit(0)))
}
// The parent went away (even killed): do not linger as an orphan.
process.once('disconnect', () => void shutdown().then(() => process.exit(0)))

if (process.send === undefined) console.log(`${name} listening on http://127.0.0.1:${port}`)
else process.send({ ready: true, port } satisfies InstanceReply)

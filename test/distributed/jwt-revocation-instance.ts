// One gate instance for test/distributed/jwt-revocation.test.ts, in its own process: an Express
// app whose JWT verifier consults a revocation list shared through Redis and the Redis broker.
// Tells its parent its port over IPC once it serves.
import { once } from 'node:events'
import express from 'express'
import { Redis } from 'ioredis'
import { createGate } from '@portcullis/core'
import { authMiddleware, notFoundHandler, problemHandler } from '@portcullis/express'
import { createRedisBroker, createRedisRevocationList } from '@portcullis/redis'

const redisUrl = process.env.REDIS_URL as string
const client = new Redis(redisUrl, {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  commandTimeout: 500,
})
client.on('error', () => {})
await once(client, 'ready')
const broker = createRedisBroker({ publisher: client, channelPrefix: process.env.CHANNEL_PREFIX })
const revocations = createRedisRevocationList({ client, broker, prefix: process.env.KEY_PREFIX })
await Promise.all([broker.ready(), revocations.ready()])
const gate = createGate({
  jwt: {
    secret: process.env.JWT_SECRET as string,
    issuer: 'https://id.example',
    audience: 'api',
    revocations,
  },
  audit: false,
})
const app = express()
app.use(authMiddleware({ gate }))
app.get('/me', (req, res) => {
  res.json({ id: req.auth?.principal?.id })
})
app.use(notFoundHandler(), problemHandler({ gate }))
const server = app.listen(0, '127.0.0.1')
await once(server, 'listening')
process.send?.({ ready: true, port: (server.address() as { port: number }).port })
process.on('SIGTERM', () => {
  server.close()
  void Promise.all([gate.close(), revocations.close(), broker.close()])
    .then(() => client.quit())
    .finally(() => process.exit(0))
})

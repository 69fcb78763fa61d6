// Before: @fastify/rate-limit 11, registered as a plugin.
import rateLimit from '@fastify/rate-limit'
import Fastify from 'fastify'

export const app = Fastify()
await app.register(rateLimit, { max: 3, timeWindow: '1 minute' })
app.get('/health', async () => ({ ok: true }))

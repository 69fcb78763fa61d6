// After: the same plugin options, the same headers and 429 body, from @portcullis/fastify.
import Fastify from 'fastify'
import { fastifyRateLimit } from '@portcullis/fastify'

export const app = Fastify()
await app.register(fastifyRateLimit, { max: 3, timeWindow: '1 minute' })
app.get('/health', async () => ({ ok: true }))

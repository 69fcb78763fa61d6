// After (LEAD: adjust to the shape the Fastify drop-in ships with, then remove this file from
// test/tsconfig.json's "exclude"): the same plugin options, from @portcullis/fastify.
import Fastify from 'fastify'
import { rateLimit } from '@portcullis/fastify'

export const app = Fastify()
await app.register(rateLimit, { max: 100, timeWindow: '1 minute' })
app.get('/health', async () => ({ ok: true }))

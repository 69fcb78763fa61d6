// Before: @fastify/jwt 10. `request.jwtVerify()` in an onRequest hook; the claims are on
// `request.user`.
import fastifyJwt from '@fastify/jwt'
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'

export const app = Fastify()
await app.register(fastifyJwt, {
  secret: process.env.JWT_SECRET as string,
  verify: { allowedIss: 'https://id.example', allowedAud: 'documents-api' },
})
async function authenticate(request: FastifyRequest, reply: FastifyReply): Promise<void> {
  try {
    await request.jwtVerify()
  } catch (err) {
    return reply.send(err)
  }
}
app.get('/health', async () => ({ ok: true }))
app.get('/me', { onRequest: [authenticate] }, async (request) => {
  const user = request.user as { sub: string; tenant?: string }
  return { id: user.sub, tenant: user.tenant }
})

// After: @portcullis/fastify. Every route is decided in onRequest from its `config.portcullis`;
// `request.auth` is { principal, decision, gate } and the claims are on `request.auth.principal`.
import Fastify from 'fastify'
import type { JwtClaims } from '@portcullis/core'
import { portcullisPlugin } from '@portcullis/fastify'

export const app = Fastify()
// Awaited before the routes, so each route's requirements are compiled as it is added.
await app.register(portcullisPlugin, {
  jwt: {
    secret: process.env.JWT_SECRET as string,
    algorithms: ['HS256'],
    issuer: 'https://id.example',
    audience: 'documents-api',
  },
  problemErrors: true,
})
app.get('/health', { config: { portcullis: { public: true } } }, async () => ({ ok: true }))
// No config.portcullis: any authenticated caller, like `onRequest: [authenticate]`.
app.get('/me', async (request) => {
  const principal = request.auth?.principal
  const claims = principal?.attributes.claims as JwtClaims | undefined
  return { id: principal?.id, tenant: claims?.tenant }
})

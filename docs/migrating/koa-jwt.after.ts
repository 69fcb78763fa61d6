// After: @portcullis/koa. `ctx.state.auth` is { principal, decision, gate }; the claims are on
// `ctx.state.auth.principal` (`id` is `sub`; all of them in `attributes.claims`). Denials are
// answered, not thrown, so their WWW-Authenticate and RateLimit headers survive.
import Router from '@koa/router'
import Koa from 'koa'
import { createGate, type JwtClaims } from '@portcullis/core'
import { authMiddleware, problemHandler } from '@portcullis/koa'

const gate = createGate({
  jwt: {
    secret: process.env.JWT_SECRET as string,
    algorithms: ['HS256'],
    issuer: 'https://id.example',
    audience: 'documents-api',
  },
})

// Mounted before the gate: public, like koa-jwt's `.unless({ path: [/^\/health/] })`.
const open = new Router()
open.get('/health', (ctx) => {
  ctx.body = { ok: true }
})
const api = new Router()
api.get('/me', (ctx) => {
  const principal = ctx.state.auth?.principal
  const claims = principal?.attributes.claims as JwtClaims | undefined
  ctx.body = { id: principal?.id, tenant: claims?.tenant }
})

export const app = new Koa()
app.use(problemHandler({ gate }))
app.use(open.routes())
app.use(authMiddleware({ gate }))
app.use(api.routes())

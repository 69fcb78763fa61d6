// Before: koa-jwt 4. The verified claims are on `ctx.state.user`; failures are thrown (401).
import Router from '@koa/router'
import Koa from 'koa'
import jwt from 'koa-jwt'

const router = new Router()
router.get('/health', (ctx) => {
  ctx.body = { ok: true }
})
router.get('/me', (ctx) => {
  const user = ctx.state.user as { sub: string; tenant?: string }
  ctx.body = { id: user.sub, tenant: user.tenant }
})

export const app = new Koa()
app.use(
  jwt({
    secret: process.env.JWT_SECRET as string,
    algorithms: ['HS256'],
    issuer: 'https://id.example',
    audience: 'documents-api',
  }).unless({ path: [/^\/health/] }),
)
app.use(router.routes())

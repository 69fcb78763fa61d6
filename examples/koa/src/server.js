// A documents API on Koa 3 and @koa/router behind the Portcullis gate, all in memory: the key store
// and the pepper live as long as the process.
//
//   npm start               serve on PORT (default 3000) and print a key and curl lines
//   npm start -- --smoke    serve on a free port, check the three curl cases, exit 0 or 1
import { randomBytes } from 'node:crypto'
import { bodyParser } from '@koa/bodyparser'
import Router from '@koa/router'
import Koa from 'koa'
import { createApiKeyManager, createGate, createMemoryKeyStore } from '@portcullis/core'
import { authMiddleware, problemHandler, requirePolicy } from '@portcullis/koa'

const smoke = process.argv.includes('--smoke')
const pepper = randomBytes(32).toString('base64url')
const store = createMemoryKeyStore()
// Portcullis logs in pino's order, (fields, message); console wants the message first.
const logger = {
  warn: (fields, message) => console.warn(message, fields),
  error: (fields, message) => console.error(message, fields),
}
const gate = createGate({
  apiKeys: { store, pepper },
  roles: { editor: ['documents:*'] },
  logger,
})
const keys = createApiKeyManager({ store, pepper })

const documents = new Map([
  ['1', { id: '1', title: 'Welcome', ownerId: 'demo-user' }],
  ['2', { id: '2', title: 'Roadmap', ownerId: 'demo-user' }],
])

const router = new Router()
router.get('/me', requirePolicy({}), (ctx) => {
  ctx.body = ctx.state.auth.principal
})
router.get('/docs', requirePolicy('documents:read'), (ctx) => {
  ctx.body = [...documents.values()]
})
router.get('/docs/:id', requirePolicy('documents:read'), (ctx) => {
  const doc = documents.get(ctx.params.id)
  if (doc === undefined) {
    ctx.status = 404
    ctx.body = { error: 'not found' }
    return
  }
  ctx.body = doc
})
// Authorize first, then parse: callers without documents:write never reach the body parser.
router.post('/docs', requirePolicy('documents:write'), bodyParser({ jsonLimit: '16kb' }), (ctx) => {
  const id = String(documents.size + 1)
  const title = String(ctx.request.body?.title ?? 'Untitled')
  const doc = { id, title, ownerId: ctx.state.auth.principal.id }
  documents.set(id, doc)
  ctx.status = 201
  ctx.body = doc
})

const app = new Koa()
app.use(problemHandler({ gate })) // first: renders anything thrown below as a problem
app.use(async function health(ctx, next) {
  // Before the gate: public.
  if (ctx.path !== '/health') return next()
  ctx.body = { ok: true }
})
app.use(authMiddleware({ gate }))
app.use(router.routes()).use(router.allowedMethods())

const issued = await keys.create({ name: 'demo', ownerId: 'demo-user', scopes: ['documents:read'] })

const port = smoke ? 0 : Number(process.env.PORT ?? 3000)
const server = app.listen(port, '127.0.0.1', async () => {
  const url = `http://127.0.0.1:${server.address().port}`
  if (smoke) return runSmoke(url)
  console.log(`Portcullis Koa demo listening on ${url}

Demo API key (in memory, shown once): ${issued.key}

  # allowed (200)
  curl -i -H "X-API-Key: ${issued.key}" ${url}/docs
  # no credentials (401 with a WWW-Authenticate challenge)
  curl -i ${url}/docs
  # missing scope documents:write (403 insufficient_scope)
  curl -i -X POST -H "X-API-Key: ${issued.key}" -H "Content-Type: application/json" -d '{"title":"x"}' ${url}/docs
`)
})

async function runSmoke(url) {
  const auth = { 'x-api-key': issued.key }
  const checks = [
    ['allowed', 200, () => fetch(`${url}/docs`, { headers: auth })],
    ['no credentials', 401, () => fetch(`${url}/docs`)],
    ['missing scope', 403, () => fetch(`${url}/docs`, { method: 'POST', headers: auth })],
  ]
  let failed = 0
  for (const [name, expected, send] of checks) {
    const res = await send().catch((error) => ({ status: String(error) }))
    const ok = res.status === expected
    if (!ok) failed++
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${res.status} (expected ${expected})`)
  }
  await shutdown()
  process.exit(failed === 0 ? 0 : 1)
}

async function shutdown() {
  await new Promise((resolve) => server.close(resolve))
  await gate.close()
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    shutdown().then(() => process.exit(0))
  })
}

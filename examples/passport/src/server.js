// passport and Portcullis, both ways, in one Express app:
//
//   /api/*       the Portcullis gate (authMiddleware) accepts API keys AND HTTP Basic users, the
//                latter checked by passport-http's BasicStrategy run as a Portcullis authenticator
//   /passport/*  a plain passport route: passport.authenticate('portcullis') verifies API keys
//
//   npm start               serve on PORT (default 3000) and print credentials and curl lines
//   npm start -- --smoke    serve on a free port, check 200/401 answers, exit 0 or 1
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import express from 'express'
import passport from 'passport'
import { BasicStrategy } from 'passport-http'
import { createApiKeyManager, createGate, createMemoryKeyStore } from '@portcullis/core'
import { authMiddleware, problemHandler, requirePolicy } from '@portcullis/express'
import {
  detectAuthorizationScheme,
  PortcullisStrategy,
  passportAuthenticator,
} from '@portcullis/passport'

const smoke = process.argv.includes('--smoke')
const password = process.env.DEMO_PASSWORD ?? 'correct horse battery staple'

// A user table as an app would keep it: password digests, never passwords.
const digest = (text) => createHash('sha256').update(text).digest()
const users = new Map([['ada', { id: 'ada', roles: ['editor'], digest: digest(password) }]])

const basic = new BasicStrategy((username, given, done) => {
  const user = users.get(username)
  done(null, user !== undefined && timingSafeEqual(user.digest, digest(given)) ? user : false)
})

const pepper = process.env.PORTCULLIS_PEPPER ?? randomBytes(32).toString('base64url')
const store = createMemoryKeyStore()
const gate = createGate({
  apiKeys: { store, pepper },
  authenticators: [
    passportAuthenticator(basic, {
      detect: detectAuthorizationScheme('basic'),
      toPrincipal: (user) => ({ id: user.id, roles: user.roles }),
    }),
  ],
  audit: false,
})
const { key } = await createApiKeyManager({ store, pepper }).create({
  name: 'demo',
  ownerId: 'service-1',
  scopes: ['reports:read'],
})

passport.use(new PortcullisStrategy({ gate }))

const app = express()
app.use(passport.initialize())
app.get('/passport/me', passport.authenticate('portcullis', { session: false }), (req, res) =>
  res.json({ id: req.user.id, method: req.user.method }),
)
app.use('/api', authMiddleware({ gate }))
app.get('/api/me', (req, res) =>
  res.json({ id: req.auth.principal.id, method: req.auth.principal.method }),
)
app.get('/api/reports', requirePolicy({ scopes: ['reports:read'] }), (req, res) =>
  res.json({ reports: [] }),
)
app.use(problemHandler({ gate }))

const basicHeader = (user, pass) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`

const port = smoke ? 0 : Number(process.env.PORT ?? 3000)
const server = app.listen(port, '127.0.0.1', () => {
  const url = `http://127.0.0.1:${server.address().port}`
  if (smoke) return runSmoke(url)
  console.log(`Portcullis + passport demo listening on ${url}

Basic user: ada / ${password}
API key (shown once): ${key}

  # HTTP Basic through the gate (200), wrong password (401)
  curl -i -u 'ada:${password}' ${url}/api/me
  curl -i -u 'ada:wrong' ${url}/api/me
  # the API-key route (200), and the gate as a passport strategy (200)
  curl -i -H "X-API-Key: ${key}" ${url}/api/reports
  curl -i -H "X-API-Key: ${key}" ${url}/passport/me
`)
})

async function runSmoke(url) {
  const get = (path, headers = {}) => fetch(`${url}${path}`, { headers })
  const checks = [
    ['basic user', 200, () => get('/api/me', { authorization: basicHeader('ada', password) })],
    ['wrong password', 401, () => get('/api/me', { authorization: basicHeader('ada', 'nope') })],
    ['no credentials', 401, () => get('/api/me')],
    ['api key route', 200, () => get('/api/reports', { 'x-api-key': key })],
    ['passport strategy', 200, () => get('/passport/me', { 'x-api-key': key })],
    ['passport bad key', 401, () => get('/passport/me', { 'x-api-key': 'ptcl_nope' })],
  ]
  let failed = 0
  for (const [name, expected, send] of checks) {
    let status
    try {
      status = (await send()).status
    } catch (error) {
      status = String(error)
    }
    const ok = status === expected
    if (!ok) failed++
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${status} (expected ${expected})`)
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

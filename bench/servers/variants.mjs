/**
 * The apps under load, per framework and variant. Every variant serves `GET /docs/:id` →
 * `{"id":"1"}` and requires (except `bare`) a credential carrying `documents:read`.
 *
 * `noop` (every framework): no-op middleware where the Portcullis variants mount theirs (a global
 * middleware or hook, a route guard, and on Express and Koa the error handler), open to anyone:
 * what the framework itself charges for those mount points, a floor no middleware-based gate goes
 * under.
 *
 * `floor` (every framework): the issue's API-key floor in one middleware and nothing else: the key
 * header's SHA-256 looked up in a Map (401 without a match). No limits, policy or audit: the
 * highest share of bare req/s any API-key gate can keep on this machine.
 *
 * Portcullis variants (every framework): `apikey`, `hs256`, `rs256`, `es256`, `eddsa`, `full`
 * (API key + two named limits + quota + 20-rule policy + audit to a JSON-lines file),
 * `full-noaudit`, `full-durable` (audit with `durable: true`: each answer waits until its event is
 * written and fdatasync'ed), `full-redis` (limits and quota in Redis at `BENCH_REDIS_PORT`), `full-metrics`
 * (with `@portcullis/prometheus` metrics, when that package provides `createPrometheusMetrics`).
 * Peer stacks: Express `peer-expressjwt` (express-jwt + express-rate-limit + scope check),
 * `peer-passportjwt`, `peer-passportapikey`; Koa `peer-koajwt` (koa-jwt + rate-limiter-flexible +
 * scope check); Fastify `peer-fastifyjwt` (@fastify/jwt + @fastify/rate-limit + scope check).
 * @module
 */
import { createSecretKey, hash, randomBytes } from 'node:crypto'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createAuditTrail, createGate, createJsonLinesFileSink } from '@portcullis/core'
import {
  apiKeyFixture,
  AUDIENCE,
  ISSUER,
  jwtFixture,
  limitStages,
  POLICY_20,
  SCOPE,
} from '../lib/fixtures.mjs'

export const FRAMEWORKS = ['express', 'koa', 'fastify']

/** The Portcullis variants, every framework. */
export const PORTCULLIS = [
  'apikey',
  'hs256',
  'rs256',
  'es256',
  'eddsa',
  'full',
  'full-noaudit',
  'full-durable',
  'full-redis',
  'full-metrics',
]
const PEERS = {
  express: ['peer-expressjwt', 'peer-passportjwt', 'peer-passportapikey'],
  koa: ['peer-koajwt'],
  fastify: ['peer-fastifyjwt'],
}

/**
 * Variants a framework supports.
 * @param {string} framework
 * @returns {string[]}
 */
export function variantsOf(framework) {
  return ['bare', 'noop', 'floor', ...PORTCULLIS, ...(PEERS[framework] ?? [])]
}

/** Variants served without a credential. */
export const OPEN_VARIANTS = ['bare', 'noop']

/**
 * The API-key floor: a key and the lookup that finds its owner by the key's SHA-256 in a Map.
 * @returns {{ key: string, lookup: (presented: unknown) => { id: string, scope: string } | undefined }}
 */
function floorKey() {
  const key = `bench_${randomBytes(24).toString('base64url')}`
  const keys = new Map([[hash('sha256', key, 'base64'), { id: 'bench-user', scope: SCOPE }]])
  return {
    key,
    lookup: (presented) =>
      typeof presented === 'string' ? keys.get(hash('sha256', presented, 'base64')) : undefined,
  }
}

const hasScope = (scope) => typeof scope === 'string' && scope.split(' ').includes(SCOPE)

/**
 * `@portcullis/prometheus`'s metrics client, or `undefined` when the package does not provide
 * `createPrometheusMetrics` (yet).
 * @returns {Promise<unknown>}
 */
export async function prometheusMetrics() {
  try {
    const mod = await import('@portcullis/prometheus')
    if (typeof mod.createPrometheusMetrics !== 'function') return undefined
    const { Registry } = await import('prom-client')
    return mod.createPrometheusMetrics({ registry: new Registry() })
  } catch (error) {
    if (error?.code === 'ERR_MODULE_NOT_FOUND') return undefined
    throw error
  }
}

/**
 * The gate of a Portcullis variant and the credential that passes it.
 * @param {string} variant
 * @returns {Promise<{ gate: import('@portcullis/core').Gate, headers: Record<string, string>, tmpDir?: string, close?: () => Promise<void> }>}
 */
async function portcullisSetup(variant) {
  const jwtAlg = { hs256: 'HS256', rs256: 'RS256', es256: 'ES256', eddsa: 'EdDSA' }[variant]
  if (jwtAlg !== undefined) {
    const { token, gateJwt } = await jwtFixture(jwtAlg)
    return {
      gate: createGate({ jwt: gateJwt, audit: false }),
      headers: { authorization: `Bearer ${token}` },
    }
  }
  const { store, pepper, key } = await apiKeyFixture()
  const headers = { 'x-api-key': key }
  if (variant === 'apikey')
    return { gate: createGate({ apiKeys: { store, pepper }, audit: false }), headers }

  // The full gate.
  let backend
  let redis
  if (variant === 'full-redis') {
    const { Redis } = await import('ioredis')
    const { createRedisBackend } = await import('@portcullis/redis')
    redis = new Redis({
      port: Number(process.env.BENCH_REDIS_PORT),
      host: '127.0.0.1',
      enableAutoPipelining: true,
    })
    await redis.ping()
    backend = createRedisBackend({ client: redis })
  }
  let metrics
  if (variant === 'full-metrics') {
    metrics = await prometheusMetrics()
    if (metrics === undefined)
      throw new Error('@portcullis/prometheus has no createPrometheusMetrics')
  }
  let audit = false
  let tmpDir
  if (variant !== 'full-noaudit') {
    tmpDir = await mkdtemp(join(tmpdir(), 'portcullis-bench-audit-'))
    const durable = variant === 'full-durable'
    audit = createAuditTrail({
      sinks: [createJsonLinesFileSink({ path: join(tmpDir, 'audit.jsonl'), fsync: durable })],
      ...(durable ? { durable: true } : {}),
    })
  }
  const gate = createGate({
    apiKeys: { store, pepper },
    stages: limitStages(backend),
    policy: POLICY_20,
    audit,
    ...(metrics === undefined ? {} : { metrics }),
  })
  return {
    gate,
    headers,
    tmpDir,
    close: async () => {
      await gate.close()
      if (redis !== undefined) await redis.quit()
    },
  }
}

/** Express 5: `authMiddleware` + `requirePolicy` on the route + `problemHandler`. */
async function expressApp(variant) {
  const { default: express } = await import('express')
  const app = express()
  const handler = (req, res) => res.json({ id: req.params.id })
  if (variant === 'bare') {
    app.get('/docs/:id', handler)
    return { app, headers: {} }
  }
  if (variant === 'noop') {
    app.use((req, res, next) => next())
    app.get('/docs/:id', (req, res, next) => next(), handler)
    app.use((error, req, res, next) => next(error))
    return { app, headers: {} }
  }
  if (variant === 'floor') {
    const { key, lookup } = floorKey()
    app.use((req, res, next) => {
      const user = lookup(req.headers['x-api-key'])
      if (user === undefined) return void res.status(401).end()
      req.user = user
      next()
    })
    app.get('/docs/:id', handler)
    return { app, headers: { 'x-api-key': key } }
  }
  if (variant.startsWith('peer-')) return expressPeer(app, variant, handler)
  const { authMiddleware, problemHandler, requirePolicy } = await import('@portcullis/express')
  const setup = await portcullisSetup(variant)
  app.use(authMiddleware({ gate: setup.gate }))
  app.get('/docs/:id', requirePolicy(SCOPE), handler)
  app.use(problemHandler({ gate: setup.gate }))
  return { app, ...setup }
}

// The jsonwebtoken-based peers (express-jwt, passport-jwt, koa-jwt) get the secret as a KeyObject:
// given a string or Buffer, as their READMEs show, jsonwebtoken first tries `createPublicKey` on it
// and fails, on every request (about 0.5 ms here). The bench measures their fast configuration.
async function expressPeer(app, variant, handler) {
  const scopeCheck = (req, res, next) =>
    hasScope((req.auth ?? req.user)?.scope) ? next() : res.status(403).json({ error: 'forbidden' })
  if (variant === 'peer-expressjwt') {
    const { expressjwt } = await import('express-jwt')
    const { rateLimit } = await import('express-rate-limit')
    const { token, secret } = await jwtFixture('HS256')
    app.use(
      rateLimit({
        windowMs: 60_000,
        limit: 1_000_000_000,
        standardHeaders: 'draft-8',
        legacyHeaders: false,
      }),
    )
    app.use(
      expressjwt({
        secret: createSecretKey(secret),
        algorithms: ['HS256'],
        issuer: ISSUER,
        audience: AUDIENCE,
      }),
    )
    app.get('/docs/:id', scopeCheck, handler)
    // Express's default handler would log every 401 of the self-check; answer as users do.
    app.use((error, req, res, next) =>
      error.status === 401 ? res.status(401).json({ error: error.code }) : next(error),
    )
    return { app, headers: { authorization: `Bearer ${token}` } }
  }
  const { default: passport } = await import('passport')
  if (variant === 'peer-passportjwt') {
    const { Strategy, ExtractJwt } = await import('passport-jwt')
    const { token, secret } = await jwtFixture('HS256')
    passport.use(
      new Strategy(
        {
          jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(),
          secretOrKey: createSecretKey(secret),
          issuer: ISSUER,
          audience: AUDIENCE,
          algorithms: ['HS256'],
        },
        (payload, done) => done(null, payload),
      ),
    )
    app.use(passport.initialize())
    app.use(passport.authenticate('jwt', { session: false }))
    app.get('/docs/:id', scopeCheck, handler)
    return { app, headers: { authorization: `Bearer ${token}` } }
  }
  // peer-passportapikey: keys looked up by their SHA-256 in a Map (the API-key floor).
  const { HeaderAPIKeyStrategy } = await import('passport-headerapikey')
  const { key, lookup } = floorKey()
  passport.use(
    new HeaderAPIKeyStrategy({ header: 'x-api-key', prefix: '' }, false, (apikey, done) =>
      done(null, lookup(apikey) ?? false),
    ),
  )
  app.use(passport.initialize())
  app.use(passport.authenticate('headerapikey', { session: false }))
  app.get('/docs/:id', scopeCheck, handler)
  return { app, headers: { 'x-api-key': key } }
}

async function koaApp(variant) {
  const { default: Koa } = await import('koa')
  const { default: Router } = await import('@koa/router')
  const app = new Koa()
  const router = new Router()
  const handler = (ctx) => {
    ctx.body = { id: ctx.params.id }
  }
  if (variant === 'bare') {
    router.get('/docs/:id', handler)
    app.use(router.routes())
    return { app, headers: {} }
  }
  if (variant === 'noop') {
    app.use(async (ctx, next) => {
      try {
        await next()
      } catch (error) {
        ctx.status = 500
        throw error
      }
    })
    app.use((ctx, next) => next())
    router.get('/docs/:id', (ctx, next) => next(), handler)
    app.use(router.routes())
    return { app, headers: {} }
  }
  if (variant === 'floor') {
    const { key, lookup } = floorKey()
    app.use((ctx, next) => {
      const user = lookup(ctx.req.headers['x-api-key'])
      if (user === undefined) return void (ctx.status = 401)
      ctx.state.user = user
      return next()
    })
    router.get('/docs/:id', handler)
    app.use(router.routes())
    return { app, headers: { 'x-api-key': key } }
  }
  if (variant === 'peer-koajwt') {
    const { default: koaJwt } = await import('koa-jwt')
    const { RateLimiterMemory } = await import('rate-limiter-flexible')
    const { token, secret } = await jwtFixture('HS256')
    const limiter = new RateLimiterMemory({ points: 1_000_000_000, duration: 60 })
    app.use(async (ctx, next) => {
      try {
        await limiter.consume(ctx.ip)
      } catch {
        ctx.status = 429
        return
      }
      await next()
    })
    app.use(
      koaJwt({
        secret: createSecretKey(secret),
        issuer: ISSUER,
        audience: AUDIENCE,
        algorithms: ['HS256'],
      }),
    )
    router.get(
      '/docs/:id',
      async (ctx, next) => {
        if (!hasScope(ctx.state.user?.scope)) ctx.throw(403)
        await next()
      },
      handler,
    )
    app.use(router.routes())
    return { app, headers: { authorization: `Bearer ${token}` } }
  }
  const { authMiddleware, problemHandler, requirePolicy } = await import('@portcullis/koa')
  const setup = await portcullisSetup(variant)
  app.use(problemHandler({ gate: setup.gate }))
  app.use(authMiddleware({ gate: setup.gate }))
  router.get('/docs/:id', requirePolicy(SCOPE), handler)
  app.use(router.routes())
  return { app, ...setup }
}

async function fastifyApp(variant) {
  const { default: Fastify } = await import('fastify')
  const app = Fastify({ logger: false })
  const handler = async (request) => ({ id: request.params.id })
  if (variant === 'bare') {
    app.get('/docs/:id', handler)
    return { app, headers: {} }
  }
  if (variant === 'noop') {
    app.addHook('onRequest', (request, reply, done) => done())
    app.get('/docs/:id', handler)
    return { app, headers: {} }
  }
  if (variant === 'floor') {
    const { key, lookup } = floorKey()
    app.decorateRequest('user', null)
    app.addHook('onRequest', (request, reply, done) => {
      const user = lookup(request.headers['x-api-key'])
      if (user === undefined) return reply.code(401).send()
      request.user = user
      done()
    })
    app.get('/docs/:id', handler)
    return { app, headers: { 'x-api-key': key } }
  }
  if (variant === 'peer-fastifyjwt') {
    const { default: fastifyJwt } = await import('@fastify/jwt')
    const { default: fastifyRateLimit } = await import('@fastify/rate-limit')
    const { token, secret } = await jwtFixture('HS256')
    await app.register(fastifyRateLimit, { max: 1_000_000_000, timeWindow: 60_000 })
    await app.register(fastifyJwt, {
      secret: Buffer.from(secret),
      verify: { algorithms: ['HS256'], allowedIss: ISSUER, allowedAud: AUDIENCE },
    })
    app.addHook('onRequest', async (request, reply) => {
      try {
        await request.jwtVerify()
      } catch {
        return reply.code(401).send({ error: 'unauthorized' })
      }
      if (!hasScope(request.user.scope)) return reply.code(403).send({ error: 'forbidden' })
    })
    app.get('/docs/:id', handler)
    return { app, headers: { authorization: `Bearer ${token}` } }
  }
  const { portcullisPlugin } = await import('@portcullis/fastify')
  const setup = await portcullisSetup(variant)
  await app.register(portcullisPlugin, { gate: setup.gate, problemErrors: true })
  app.get('/docs/:id', { config: { portcullis: SCOPE } }, handler)
  return { app, ...setup }
}

/**
 * Builds the app of a framework and variant, with the credential that passes it.
 * @param {string} framework
 * @param {string} variant
 * @returns {Promise<{ app: any, headers: Record<string, string>, tmpDir?: string, close?: () => Promise<void> }>}
 */
export async function setupVariant(framework, variant) {
  if (framework === 'express') return expressApp(variant)
  if (framework === 'koa') return koaApp(variant)
  return fastifyApp(variant)
}

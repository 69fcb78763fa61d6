/**
 * The apps under load, per framework and variant. Every variant serves `GET /docs/:id` →
 * `{"id":"1"}` and requires (except `bare` and `noop`) a credential; see {@link VARIANTS}.
 *
 * Portcullis variants use only the adapters' public API (`authMiddleware`, `requirePolicy`,
 * `problemHandler`, the Fastify plugin with `config.portcullis`, `createGate` and its options), so
 * that the harness measures whatever the adapters' internals become. Peer stacks do exactly the
 * same work as the Portcullis variant they are compared with: the same HS256 token verified on
 * every request, one per-principal limit in memory (never reached), one scope check, no audit.
 * The jsonwebtoken-based peers (express-jwt, koa-jwt) get the secret as a KeyObject: given a
 * string or Buffer, jsonwebtoken first tries `createPublicKey` on it and fails on every request;
 * the bench measures their fast configuration.
 * @module
 */
import { createHmac, createSecretKey, hash, randomBytes, timingSafeEqual } from 'node:crypto'
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
  PRINCIPAL_LIMIT,
  principalLimitStage,
  SCOPE,
} from '../lib/fixtures.mjs'

export const FRAMEWORKS = ['express', 'koa', 'fastify']

/**
 * Every variant: its label, the frameworks it exists on (default: all) and whether the default
 * plan of `run.mjs` measures it (the others run with `--variants`).
 * @type {Record<string, { label: string, only?: string[], extra?: boolean }>}
 */
export const VARIANTS = {
  bare: { label: 'bare framework' },
  'floor-apikey': { label: 'API-key floor: one SHA-256 + Map lookup in one middleware/hook' },
  'floor-jwt': {
    label:
      'JWT floor: one middleware/hook doing HMAC + compare + two JSON.parse + exp + Map counter + scope check',
  },
  jwt: { label: 'ours: JWT + limit + scope (HS256, token cache off)' },
  'peer-jwt': { label: 'peer: JWT + limit + scope' },
  'apikey-alone': { label: 'ours: API key alone (authMiddleware, no limit, no route guard)' },
  apikey: { label: 'ours: API key + limit + scope' },
  'peer-apikey': {
    label: 'peer: passport-headerapikey + express-rate-limit + scope',
    only: ['express'],
  },
  full: { label: 'ours: full gate, audit on' },
  'full-noaudit': { label: 'ours: full gate, audit off' },
  'full-redis': { label: 'ours: full gate, audit on, Redis limits + quota', only: ['express'] },
  // Not in the default plan.
  noop: { label: 'no-op middleware at the mount points', extra: true },
  'jwt-cached': { label: 'ours: JWT + limit + scope, token cache on', extra: true },
  'full-durable': { label: 'ours: full gate, durable audit (waits for fdatasync)', extra: true },
}

/** What each framework's peer JWT stack is. */
export const PEER_JWT = {
  express: 'express-jwt + express-rate-limit + scope check',
  koa: 'koa-jwt + rate-limiter-flexible + scope check',
  fastify: '@fastify/jwt + @fastify/rate-limit + scope check',
}

/**
 * Variants a framework supports.
 * @param {string} framework
 * @returns {string[]}
 */
export function variantsOf(framework) {
  return Object.entries(VARIANTS)
    .filter(([, v]) => v.only === undefined || v.only.includes(framework))
    .map(([id]) => id)
}

/** The label of a variant on a framework (the peer stacks differ per framework). */
export function labelOf(framework, variant) {
  return variant === 'peer-jwt' ? `peer: ${PEER_JWT[framework]}` : VARIANTS[variant].label
}

/** Variants served without a credential. */
export const OPEN_VARIANTS = ['bare', 'noop']

const hasScope = (scope) => typeof scope === 'string' && scope.split(' ').includes(SCOPE)

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

/**
 * The JWT floor: the least work of "HS256 JWT + per-principal limit + scope" in one function: one
 * HMAC, a constant-time compare, `JSON.parse` of header and payload, `alg` and `exp`, a `Map`
 * counter per subject and the scope check. No `iss`/`aud` check, no headers, no window reset.
 * @param {Uint8Array} secret
 * @returns {(authorization: unknown) => number} the status to answer (200 to go on)
 */
function jwtFloor(secret) {
  const key = createSecretKey(secret)
  const counts = new Map()
  return (authorization) => {
    if (typeof authorization !== 'string' || !authorization.startsWith('Bearer ')) return 401
    const dot1 = authorization.indexOf('.', 7)
    const dot2 = authorization.indexOf('.', dot1 + 1)
    if (dot1 === -1 || dot2 === -1) return 401
    const mac = createHmac('sha256', key).update(authorization.slice(7, dot2)).digest()
    const signature = Buffer.from(authorization.slice(dot2 + 1), 'base64url')
    if (signature.length !== mac.length || !timingSafeEqual(mac, signature)) return 401
    let header
    let claims
    try {
      header = JSON.parse(Buffer.from(authorization.slice(7, dot1), 'base64url').toString())
      claims = JSON.parse(Buffer.from(authorization.slice(dot1 + 1, dot2), 'base64url').toString())
    } catch {
      return 401
    }
    if (header?.alg !== 'HS256' || !(claims?.exp * 1000 > Date.now())) return 401
    const n = (counts.get(claims.sub) ?? 0) + 1
    counts.set(claims.sub, n)
    if (n > PRINCIPAL_LIMIT.limit) return 429
    return hasScope(claims.scope) ? 200 : 403
  }
}

/**
 * The gate of a Portcullis variant, the credential that passes it and the route's requirements.
 * @param {string} variant
 * @returns {Promise<{ gate: import('@portcullis/core').Gate, headers: Record<string, string>, requirements?: unknown, tmpDir?: string, close?: () => Promise<void> }>}
 */
async function portcullisSetup(variant) {
  if (variant === 'jwt' || variant === 'jwt-cached') {
    const { token, gateJwt } = await jwtFixture('HS256')
    const gate = createGate({
      jwt: variant === 'jwt' ? { ...gateJwt, cache: false } : gateJwt,
      stages: [principalLimitStage()],
      audit: false,
    })
    return {
      gate,
      headers: { authorization: `Bearer ${token}` },
      requirements: { scopes: [SCOPE] },
      close: () => gate.close(),
    }
  }
  const { store, pepper, key } = await apiKeyFixture()
  const headers = { 'x-api-key': key }
  if (variant === 'apikey-alone') {
    const gate = createGate({ apiKeys: { store, pepper }, audit: false })
    return { gate, headers, close: () => gate.close() }
  }
  if (variant === 'apikey') {
    const gate = createGate({
      apiKeys: { store, pepper },
      stages: [principalLimitStage()],
      audit: false,
    })
    return { gate, headers, requirements: { scopes: [SCOPE] }, close: () => gate.close() }
  }

  // The full gate: API key + two named limits + quota + 20-rule policy + audit to JSON lines.
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
  })
  return {
    gate,
    headers,
    requirements: SCOPE,
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
  if (variant === 'floor-apikey') {
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
  if (variant === 'floor-jwt') {
    const { token, secret } = await jwtFixture('HS256')
    const check = jwtFloor(secret)
    app.use((req, res, next) => {
      const status = check(req.headers.authorization)
      if (status !== 200) return void res.status(status).end()
      next()
    })
    app.get('/docs/:id', handler)
    return { app, headers: { authorization: `Bearer ${token}` } }
  }
  if (variant.startsWith('peer-')) return expressPeer(app, variant, handler)
  const { authMiddleware, problemHandler, requirePolicy } = await import('@portcullis/express')
  const setup = await portcullisSetup(variant)
  app.use(authMiddleware({ gate: setup.gate }))
  if (setup.requirements === undefined) app.get('/docs/:id', handler)
  else app.get('/docs/:id', requirePolicy(setup.requirements), handler)
  app.use(problemHandler({ gate: setup.gate }))
  return { app, ...setup }
}

async function expressPeer(app, variant, handler) {
  const { rateLimit } = await import('express-rate-limit')
  const scopeCheck = (req, res, next) =>
    hasScope((req.auth ?? req.user)?.scope) ? next() : res.status(403).json({ error: 'forbidden' })
  const limiter = (keyOf) =>
    rateLimit({
      windowMs: PRINCIPAL_LIMIT.windowMs,
      limit: PRINCIPAL_LIMIT.limit,
      standardHeaders: 'draft-8',
      legacyHeaders: false,
      keyGenerator: keyOf,
    })
  if (variant === 'peer-jwt') {
    const { expressjwt } = await import('express-jwt')
    const { token, secret } = await jwtFixture('HS256')
    app.use(
      expressjwt({
        secret: createSecretKey(secret),
        algorithms: ['HS256'],
        issuer: ISSUER,
        audience: AUDIENCE,
      }),
    )
    app.use(limiter((req) => req.auth.sub))
    app.get('/docs/:id', scopeCheck, handler)
    // Express's default handler would log every 401 of the self-check; answer as users do.
    app.use((error, req, res, next) =>
      error.status === 401 ? res.status(401).json({ error: error.code }) : next(error),
    )
    return { app, headers: { authorization: `Bearer ${token}` } }
  }
  // peer-apikey: keys looked up by their SHA-256 in a Map (the API-key floor's lookup).
  const { default: passport } = await import('passport')
  const { HeaderAPIKeyStrategy } = await import('passport-headerapikey')
  const { key, lookup } = floorKey()
  passport.use(
    new HeaderAPIKeyStrategy({ header: 'x-api-key', prefix: '' }, false, (apikey, done) =>
      done(null, lookup(apikey) ?? false),
    ),
  )
  app.use(passport.initialize())
  app.use(passport.authenticate('headerapikey', { session: false }))
  app.use(limiter((req) => req.user.id))
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
  if (variant === 'floor-apikey') {
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
  if (variant === 'floor-jwt') {
    const { token, secret } = await jwtFixture('HS256')
    const check = jwtFloor(secret)
    app.use((ctx, next) => {
      const status = check(ctx.req.headers.authorization)
      if (status !== 200) return void (ctx.status = status)
      return next()
    })
    router.get('/docs/:id', handler)
    app.use(router.routes())
    return { app, headers: { authorization: `Bearer ${token}` } }
  }
  if (variant === 'peer-jwt') {
    const { default: koaJwt } = await import('koa-jwt')
    const { RateLimiterMemory } = await import('rate-limiter-flexible')
    const { token, secret } = await jwtFixture('HS256')
    const limiter = new RateLimiterMemory({
      points: PRINCIPAL_LIMIT.limit,
      duration: PRINCIPAL_LIMIT.windowMs / 1000,
    })
    app.use(
      koaJwt({
        secret: createSecretKey(secret),
        issuer: ISSUER,
        audience: AUDIENCE,
        algorithms: ['HS256'],
      }),
    )
    app.use(async (ctx, next) => {
      try {
        await limiter.consume(ctx.state.user.sub)
      } catch {
        ctx.status = 429
        return
      }
      await next()
    })
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
  if (setup.requirements === undefined) router.get('/docs/:id', handler)
  else router.get('/docs/:id', requirePolicy(setup.requirements), handler)
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
  if (variant === 'floor-apikey') {
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
  if (variant === 'floor-jwt') {
    const { token, secret } = await jwtFixture('HS256')
    const check = jwtFloor(secret)
    app.addHook('onRequest', (request, reply, done) => {
      const status = check(request.headers.authorization)
      if (status !== 200) return reply.code(status).send()
      done()
    })
    app.get('/docs/:id', handler)
    return { app, headers: { authorization: `Bearer ${token}` } }
  }
  if (variant === 'peer-jwt') {
    const { default: fastifyJwt } = await import('@fastify/jwt')
    const { default: fastifyRateLimit } = await import('@fastify/rate-limit')
    const { token, secret } = await jwtFixture('HS256')
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
    // Per principal: counted after the token is verified.
    await app.register(fastifyRateLimit, {
      max: PRINCIPAL_LIMIT.limit,
      timeWindow: PRINCIPAL_LIMIT.windowMs,
      hook: 'preHandler',
      keyGenerator: (request) => request.user.sub,
    })
    app.get('/docs/:id', handler)
    return { app, headers: { authorization: `Bearer ${token}` } }
  }
  const { portcullisPlugin } = await import('@portcullis/fastify')
  const setup = await portcullisSetup(variant)
  await app.register(portcullisPlugin, { gate: setup.gate, problemErrors: true })
  if (setup.requirements === undefined) app.get('/docs/:id', handler)
  else app.get('/docs/:id', { config: { portcullis: setup.requirements } }, handler)
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

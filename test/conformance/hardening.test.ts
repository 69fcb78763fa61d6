// The request path under a stalled dependency and under guessing, on every adapter and framework
// major: a key store that never answers, one that answers after the deadline, a JWKS endpoint
// that accepts the connection and sends nothing, and failed-authentication throttling.
import { createServer, type Server } from 'node:net'
import { once } from 'node:events'
import { expect } from 'chai'
import {
  createApiKeyManager,
  createAuthFailureThrottle,
  createGate,
  createRateLimitStage,
  encodeBase64url,
  type ApiKeyRecord,
  type Gate,
  type KeyStore,
} from '@portcullis/core'
import {
  createMemoryAuditSink,
  createMemoryKeyStore,
  createMemoryMetrics,
  type MemoryAuditSink,
} from '@portcullis/core/testing'
import { call, FRAMEWORKS, type App } from '../helpers/minimal-apps.js'

const PEPPER = 'hardening-pepper-0123456789abcdef0123'

/** A key store whose `get` is held for `delayMs` (forever when `undefined`), then rejects. */
function stalledStore(
  inner: KeyStore,
  delayMs: number | undefined,
): { store: KeyStore; stalled: () => boolean } {
  let on = false
  const store: KeyStore = new Proxy(inner, {
    get(target, name, receiver) {
      if (name !== 'get') return Reflect.get(target, name, receiver) as unknown
      return (id: Parameters<KeyStore['get']>[0]): Promise<ApiKeyRecord | undefined> => {
        if (!on) return target.get(id)
        return new Promise((_resolve, reject) => {
          if (delayMs !== undefined)
            setTimeout(() => reject(new Error('store answered too late')), delayMs)
        })
      }
    },
  })
  return {
    store,
    stalled: () => {
      on = true
      return on
    },
  }
}

for (const [framework, makeApp] of Object.entries(FRAMEWORKS)) {
  describe(`hardening over HTTP: ${framework}`, () => {
    let gate: Gate | undefined
    let app: App | undefined
    let sink: MemoryAuditSink
    afterEach(async () => {
      await app?.close()
      await gate?.close()
      app = undefined
      gate = undefined
    })

    async function start(options: Parameters<typeof createGate>[0]): Promise<App> {
      sink = createMemoryAuditSink()
      gate = createGate({ ...options, audit: { sinks: [sink], flushIntervalMs: 0 } })
      app = await makeApp(gate)
      return app
    }

    for (const [what, delayMs] of [
      ['never answers', undefined],
      ['answers after the deadline', 300],
    ] as const) {
      it(`answers 503 ERR_DEPENDENCY_TIMEOUT with Retry-After when the key store ${what}`, async () => {
        const base = createMemoryKeyStore()
        const { store, stalled } = stalledStore(base, delayMs)
        const keys = createApiKeyManager({ store: base, pepper: PEPPER })
        const { key } = await keys.create({
          name: 'alice key',
          ownerId: 'alice',
          scopes: ['documents:read'],
        })
        const metrics = createMemoryMetrics()
        const unhandled: unknown[] = []
        const onUnhandled = (e: unknown): number => unhandled.push(e)
        process.on('unhandledRejection', onUnhandled)
        try {
          const running = await start({
            apiKeys: { store, pepper: PEPPER, cache: false },
            timeouts: { apiKeys: 100 },
            metrics,
          })
          stalled()
          const started = Date.now()
          const res = await call(running, '/me', { 'x-api-key': key })
          const took = Date.now() - started
          expect(res.status, JSON.stringify(res.body)).to.equal(503)
          expect(res.type).to.equal('application/problem+json')
          expect(res.body).to.include({ code: 'ERR_DEPENDENCY_TIMEOUT' })
          expect(res.headers.get('retry-after')).to.equal('1')
          // Answered by the deadline, not by the store (which answers at 300 ms or never).
          expect(took).to.be.below(290)
          // The late settlement (a rejection) changes nothing and is never unhandled.
          await new Promise((resolve) => setTimeout(resolve, 350))
          expect(unhandled).to.deep.equal([])
          await gate?.audit.flush()
          const events = sink.events.filter((e) => e.reason?.code === 'ERR_DEPENDENCY_TIMEOUT')
          expect(events.map((e) => e.type)).to.deep.equal(['dependency.timeout'])
          expect(metrics.value('dependencyTimeouts', { dependency: 'apikey' })).to.equal(1)
          expect(JSON.stringify(sink.events)).to.not.include(key)
        } finally {
          process.off('unhandledRejection', onUnhandled)
        }
      })
    }

    it('answers 503 ERR_DEPENDENCY_TIMEOUT when the JWKS endpoint accepts and sends nothing', async () => {
      const sockets = new Set<import('node:net').Socket>()
      const silent: Server = createServer((socket) => {
        // Accepts the connection and never answers.
        sockets.add(socket)
      })
      silent.listen(0, '127.0.0.1')
      await once(silent, 'listening')
      const { port } = silent.address() as { port: number }
      try {
        const running = await start({
          jwt: {
            jwks: { url: `http://127.0.0.1:${port}/jwks.json` },
            algorithms: ['RS256'],
            issuer: 'https://id.example',
            audience: 'api',
          },
          timeouts: { jwt: 200 },
        })
        const now = Math.floor(Date.now() / 1000)
        const token = [
          encodeBase64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: 'k1' })),
          encodeBase64url(
            JSON.stringify({
              iss: 'https://id.example',
              aud: 'api',
              sub: 'u',
              iat: now,
              exp: now + 60,
            }),
          ),
          encodeBase64url('not-a-signature'),
        ].join('.')
        const started = Date.now()
        const res = await call(running, '/me', { authorization: `Bearer ${token}` })
        expect(res.status, JSON.stringify(res.body)).to.equal(503)
        expect(res.body).to.include({ code: 'ERR_DEPENDENCY_TIMEOUT' })
        expect(res.headers.get('retry-after')).to.equal('1')
        expect(Date.now() - started).to.be.below(2_000)
      } finally {
        for (const socket of sockets) socket.destroy()
        await new Promise<void>((resolve) => silent.close(() => resolve()))
      }
    })

    it('counts a global limit keyed by route per concrete path, the same on every adapter', async () => {
      const store = createMemoryKeyStore()
      const keys = createApiKeyManager({ store, pepper: PEPPER })
      const { key } = await keys.create({ name: 'k', ownerId: 'alice', scopes: [] })
      const running = await start({
        apiKeys: { store, pepper: PEPPER },
        stages: [
          createRateLimitStage({
            limits: [{ name: 'per-path', key: 'route', limit: 2, windowMs: 60_000 }],
          }),
        ],
      })
      const get = (path: string) => call(running, path, { 'x-api-key': key })
      expect((await get('/docs/1')).status).to.equal(200)
      expect((await get('/docs/1')).status).to.equal(200)
      const limited = await get('/docs/1')
      expect(limited.status).to.equal(429)
      expect(limited.body).to.include({ code: 'ERR_RATE_LIMITED' })
      // Another path of the same pattern has its own count: paths, not patterns, on every adapter.
      expect((await get('/docs/2')).status).to.equal(200)
    })

    it('throttles failed authentication per client address: 429 ERR_AUTH_THROTTLED with Retry-After, audited', async () => {
      const store = createMemoryKeyStore()
      const keys = createApiKeyManager({ store, pepper: PEPPER })
      const { key } = await keys.create({
        name: 'alice key',
        ownerId: 'alice',
        scopes: ['documents:read'],
      })
      const running = await start({
        apiKeys: { store, pepper: PEPPER },
        authFailureThrottle: createAuthFailureThrottle({
          addressThreshold: 3,
          baseLockSeconds: 30,
        }),
      })
      expect((await call(running, '/me', { 'x-api-key': key })).status).to.equal(200)
      const wrong = `${key.slice(0, -8)}AAAAAAAA`
      for (let i = 0; i < 3; i++)
        expect((await call(running, '/me', { 'x-api-key': wrong })).status).to.equal(401)
      const locked = await call(running, '/me', { 'x-api-key': wrong })
      expect(locked.status).to.equal(429)
      expect(locked.type).to.equal('application/problem+json')
      expect(locked.body).to.include({ code: 'ERR_AUTH_THROTTLED' })
      expect(Number(locked.headers.get('retry-after'))).to.be.within(1, 30)
      // The address is locked: its valid key waits too (a guess that succeeds learns nothing).
      expect((await call(running, '/me', { 'x-api-key': key })).status).to.equal(429)
      await gate?.audit.flush()
      const types = sink.events.map((e) => e.type)
      expect(types.filter((t) => t === 'authn.failure')).to.have.length(3)
      expect(types.filter((t) => t === 'authn.throttled')).to.have.length(2)
      expect(JSON.stringify(sink.events)).to.not.include(wrong)
    })
  })
}

// JWT revocation over HTTP on every adapter and framework major: a token accepted, then revoked
// (by jti, then a subject cut-off), then refused 401 ERR_JWT_REVOKED as a problem, and audited.
import { expect } from 'chai'
import {
  createGate,
  createMemoryRevocationList,
  type Gate,
  type MemoryRevocationList,
} from '@portcullis/core'
import { createMemoryAuditSink, type MemoryAuditSink } from '@portcullis/core/testing'
import { seconds, signHmac } from '../helpers/jwt.js'
import { FRAMEWORKS, type App } from '../helpers/minimal-apps.js'

const SECRET = 'revocation-jwt-secret-0123456789abcdef'
const ISSUER = 'https://id.example'
const AUDIENCE = 'documents-api'

for (const [framework, makeApp] of Object.entries(FRAMEWORKS)) {
  describe(`JWT revocation over HTTP: ${framework}`, () => {
    let revocations: MemoryRevocationList
    let sink: MemoryAuditSink
    let gate: Gate
    let app: App

    beforeEach(async () => {
      revocations = createMemoryRevocationList()
      sink = createMemoryAuditSink()
      gate = createGate({
        jwt: { secret: SECRET, issuer: ISSUER, audience: AUDIENCE, revocations },
        audit: { sinks: [sink], flushIntervalMs: 0 },
      })
      app = await makeApp(gate)
    })
    afterEach(async () => {
      await app.close()
      await gate.close()
    })

    const token = (claims: Record<string, unknown>): string => {
      const now = seconds(Date.now())
      return signHmac(
        { claims: { iss: ISSUER, aud: AUDIENCE, iat: now - 5, exp: now + 600, ...claims } },
        SECRET,
      )
    }

    const get = async (
      jwt: string,
    ): Promise<{ status: number; type: string | null; body: Record<string, unknown> }> => {
      const { port } = app.server.address() as { port: number }
      const res = await fetch(`http://127.0.0.1:${port}/me`, {
        headers: { authorization: `Bearer ${jwt}` },
      })
      return {
        status: res.status,
        type: res.headers.get('content-type'),
        body: (await res.json()) as Record<string, unknown>,
      }
    }

    async function expectRevoked(jwt: string): Promise<void> {
      const res = await get(jwt)
      expect(res.status, JSON.stringify(res.body)).to.equal(401)
      expect(res.type).to.equal('application/problem+json')
      expect(res.body).to.include({ status: 401, code: 'ERR_JWT_REVOKED', title: 'Token revoked' })
    }

    it('accepts a token, then refuses it 401 ERR_JWT_REVOKED once its jti is revoked, audited', async () => {
      const jwt = token({ sub: 'dave', jti: 'tok-dave-1' })
      expect(await get(jwt)).to.deep.include({ status: 200, body: { id: 'dave' } })
      // Served again: now from the verifier's token cache.
      expect((await get(jwt)).status).to.equal(200)
      await revocations.revokeToken({ jti: 'tok-dave-1' })
      await expectRevoked(jwt)
      expect((await get(token({ sub: 'dave', jti: 'tok-dave-2' }))).status).to.equal(200)
      await gate.audit.flush()
      const denials = sink.events.filter((e) => e.reason?.code === 'ERR_JWT_REVOKED')
      expect(denials.map((e) => [e.type, e.outcome])).to.deep.equal([['authn.failure', 'failure']])
      expect(JSON.stringify(sink.events)).to.not.include(jwt)
    })

    it('refuses every token of a subject issued before the cut-off, and accepts later ones', async () => {
      const old = token({ sub: 'erin', iat: seconds(Date.now()) - 60 })
      expect((await get(old)).status).to.equal(200)
      await revocations.revokeSubject({ subject: 'erin', beforeMs: Date.now() - 30_000 })
      await expectRevoked(old)
      expect((await get(token({ sub: 'erin', iat: seconds(Date.now()) }))).status).to.equal(200)
      expect((await get(token({ sub: 'frank', iat: seconds(Date.now()) - 60 }))).status).to.equal(
        200,
      )
    })
  })
}

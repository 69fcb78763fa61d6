// docs/migrating.md: its snippets are the files of docs/migrating/ (type-checked by `tsc -p test`,
// whose include names them), and the before/after pairs answer the same requests the same way.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect } from 'chai'
import type { Application } from 'express'
import type { FastifyInstance } from 'fastify'
import type Koa from 'koa'
import request from 'supertest'
import { signHmac } from '../helpers/jwt.js'

const ROOT = join(import.meta.dirname, '..', '..')
const SNIPPETS = join(ROOT, 'docs', 'migrating')
const SECRET = 'a-jwt-secret-for-the-migration-guide-tests'

const now = (): number => Math.floor(Date.now() / 1000)
const token = (claims: Record<string, unknown> = {}): string =>
  signHmac(
    {
      claims: {
        sub: 'alice',
        iss: 'https://id.example',
        aud: 'documents-api',
        iat: now(),
        exp: now() + 300,
        scope: 'documents:read',
        tenant: 'acme',
        ...claims,
      },
    },
    SECRET,
  )
const bearer = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` })

interface Answer {
  readonly status: number
  readonly body: unknown
}
type Send = (path: string, headers?: Record<string, string>) => Promise<Answer>

const viaSupertest =
  (server: Parameters<typeof request>[0]): Send =>
  async (path, headers = {}) => {
    const res = await request(server).get(path).set(headers)
    return { status: res.status, body: res.body as unknown }
  }
const viaInject =
  (app: FastifyInstance): Send =>
  async (path, headers = {}) => {
    const res = await app.inject({ url: path, headers })
    return { status: res.statusCode, body: res.json() as unknown }
  }

async function load<TApp>(name: string): Promise<TApp> {
  return ((await import(`../../docs/migrating/${name}.js`)) as { app: TApp }).app
}

/** The same requests to both apps: the same statuses, and the same JSON when allowed. */
async function expectSameAnswers(
  before: Send,
  after: Send,
  cases: readonly { path: string; headers?: Record<string, string>; status: number }[],
): Promise<void> {
  for (const c of cases) {
    const [b, a] = [await before(c.path, c.headers), await after(c.path, c.headers)]
    expect([b.status, a.status], `${c.path} ${JSON.stringify(c.headers ?? {})}`).to.deep.equal([
      c.status,
      c.status,
    ])
    if (c.status < 400) expect(a.body).to.deep.equal(b.body)
  }
}

const JWT_CASES = () => [
  { path: '/health', status: 200 },
  { path: '/me', status: 401 },
  { path: '/me', headers: bearer(token()), status: 200 },
  { path: '/me', headers: bearer(token({ exp: now() - 120 })), status: 401 },
  { path: '/me', headers: bearer(token({ aud: 'another-api' })), status: 401 },
  { path: '/me', headers: bearer(token({ iss: 'https://evil.example' })), status: 401 },
  { path: '/me', headers: bearer(`${token().slice(0, -4)}AAAA`), status: 401 },
]

describe('docs/migrating.md', () => {
  before(() => {
    process.env.JWT_SECRET = SECRET
  })

  it('shows exactly the files of docs/migrating, each as it is', () => {
    const markdown = readFileSync(join(ROOT, 'docs', 'migrating.md'), 'utf8')
    const shown = new Map<string, string>()
    for (const m of markdown.matchAll(/```ts\n\/\/ docs\/migrating\/([\w.-]+)\n([\s\S]*?)```/g))
      shown.set(m[1] as string, m[2] as string)
    const files = readdirSync(SNIPPETS).filter((f) => f.endsWith('.ts'))
    expect([...shown.keys()].sort()).to.deep.equal(files.sort())
    for (const f of files) expect(shown.get(f), f).to.equal(readFileSync(join(SNIPPETS, f), 'utf8'))
    // Every snippet but the pending ones is type-checked by `tsc -p test` (npm run lint).
    const tsconfig = JSON.parse(readFileSync(join(ROOT, 'test', 'tsconfig.json'), 'utf8')) as {
      include: string[]
      exclude?: string[]
    }
    expect(tsconfig.include).to.include('../docs/migrating/*.ts')
    expect(tsconfig.exclude ?? []).to.deep.equal([])
  })

  it('express-jwt and @portcullis/express answer the same requests the same way', async () => {
    const [before, after] = [
      await load<Application>('express-jwt.before'),
      await load<Application>('express-jwt.after'),
    ]
    await expectSameAnswers(viaSupertest(before), viaSupertest(after), JWT_CASES())
    expect((await viaSupertest(after)('/me', bearer(token()))).body).to.deep.equal({
      id: 'alice',
      tenant: 'acme',
    })
    // What the guide says differs: a token without `exp`, and the problem body of a denial.
    const noExp = bearer(token({ exp: undefined }))
    expect((await viaSupertest(before)('/me', noExp)).status).to.equal(200)
    const refused = await request(after).get('/me').set(noExp)
    expect(refused.status).to.equal(401)
    expect(refused.headers['www-authenticate']).to.match(
      /^Bearer realm="api", error="invalid_token"/,
    )
    expect(refused.body).to.include({ code: 'ERR_JWT_INVALID' })
    expect((await viaSupertest(after)('/docs', bearer(token()))).status).to.equal(200)
    expect((await viaSupertest(after)('/docs', bearer(token({ scope: 'other' })))).status).to.equal(
      403,
    )
  })

  it('koa-jwt and @portcullis/koa answer the same requests the same way', async () => {
    const [before, after] = [await load<Koa>('koa-jwt.before'), await load<Koa>('koa-jwt.after')]
    await expectSameAnswers(
      viaSupertest(before.callback()),
      viaSupertest(after.callback()),
      JWT_CASES(),
    )
    expect((await viaSupertest(after.callback())('/me', bearer(token()))).body).to.deep.equal({
      id: 'alice',
      tenant: 'acme',
    })
  })

  it('@fastify/jwt and @portcullis/fastify answer the same requests the same way', async () => {
    const [before, after] = [
      await load<FastifyInstance>('fastify-jwt.before'),
      await load<FastifyInstance>('fastify-jwt.after'),
    ]
    await expectSameAnswers(viaInject(before), viaInject(after), JWT_CASES())
    expect((await viaInject(after)('/me', bearer(token()))).body).to.deep.equal({
      id: 'alice',
      tenant: 'acme',
    })
  })

  it('a passport strategy answers the same behind passport and behind the gate', async () => {
    const [before, after] = [
      await load<Application>('passport.before'),
      await load<Application>('passport.after'),
    ]
    const basic = (user: string, password: string) => ({
      authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
    })
    await expectSameAnswers(viaSupertest(before), viaSupertest(after), [
      { path: '/me', status: 401 },
      { path: '/me', headers: basic('ada', 'lovelace'), status: 200 },
      { path: '/me', headers: basic('ada', 'wrong'), status: 401 },
      { path: '/me', headers: basic('bob', 'lovelace'), status: 401 },
    ])
    expect((await viaSupertest(after)('/me', basic('ada', 'lovelace'))).body).to.deep.equal({
      id: 'ada',
    })
  })

  it('express-rate-limit and the drop-in count and refuse alike', async () => {
    const [before, after] = [
      await load<Application>('express-rate-limit.before'),
      await load<Application>('express-rate-limit.after'),
    ]
    const login = async (app: Application) => {
      const seen: [number, unknown][] = []
      for (let i = 0; i < 6; i++) {
        const res = await request(app).post('/login')
        seen.push([res.status, res.status === 200 ? res.body : res.text])
      }
      return seen
    }
    const [b, a] = [await login(before), await login(after)]
    expect(a).to.deep.equal(b)
    expect(a.map(([status]) => status)).to.deep.equal([200, 200, 200, 200, 200, 429])
    expect(a[0]?.[1]).to.deep.equal({ remaining: 4 })
  })
  it('@fastify/rate-limit and fastifyRateLimit count and refuse alike', async () => {
    const [before, after] = [
      await load<FastifyInstance>('fastify-rate-limit.before'),
      await load<FastifyInstance>('fastify-rate-limit.after'),
    ]
    const answers = async (app: FastifyInstance) => {
      const seen: [number, unknown, string | undefined][] = []
      for (let i = 0; i < 4; i++) {
        const res = await app.inject({ url: '/health' })
        const remaining = res.headers['x-ratelimit-remaining']
        seen.push([
          res.statusCode,
          res.json(),
          remaining === undefined ? undefined : String(remaining),
        ])
      }
      return seen
    }
    const [b, a] = [await answers(before), await answers(after)]
    expect(a).to.deep.equal(b)
    expect(a.map(([status, , remaining]) => [status, remaining])).to.deep.equal([
      [200, '2'],
      [200, '1'],
      [200, '0'],
      [429, '0'],
    ])
  })
})

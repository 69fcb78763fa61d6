// A decorated controller behind Portcullis. The decorators are TC39 standard decorators (run here
// through tsx); the same classes work with `experimentalDecorators` (NestJS-style code bases).
//
//   npm start               serve on PORT (default 3002) and print a key and curl lines
//   npm start -- --smoke    serve on a free port, check 200/401/403/429, exit 0 or 1
import type { AddressInfo } from 'node:net'
import express, { type Request } from 'express'
import {
  Controller,
  createApiKeyManager,
  createGate,
  createMemoryKeyStore,
  createRateLimitStage,
  Get,
  Policy,
  Post,
  Public,
  RateLimit,
  SECOND,
} from '@portcullis/core'
import { mountController, problemHandler } from '@portcullis/express'

@Controller('/docs')
@Policy('documents:read')
class DocsController {
  readonly #docs = new Map([['1', { id: '1', title: 'Welcome' }]])

  @Public()
  @Get('/about')
  about(): { service: string } {
    return { service: 'documents' }
  }

  @RateLimit({ name: 'list', limit: 3, windowMs: 10 * SECOND })
  @Get()
  list(): unknown[] {
    return [...this.#docs.values()]
  }

  @Policy('documents:write')
  @Post()
  create(req: Request): { id: string } {
    const id = String(this.#docs.size + 1)
    this.#docs.set(id, {
      id,
      title: String((req.body as { title?: unknown } | undefined)?.title ?? 'Untitled'),
    })
    return { id }
  }
}

const smoke = process.argv.includes('--smoke')
const pepper = 'example-pepper-do-not-use-in-production!'
const store = createMemoryKeyStore()
const gate = createGate({ apiKeys: { store, pepper }, stages: [createRateLimitStage()] })
const { key } = await createApiKeyManager({ store, pepper }).create({
  name: 'reader',
  ownerId: 'reader',
  scopes: ['documents:read'],
})

const app = express()
app.use(express.json())
// Mounted with the gate itself, so @Public() routes serve anonymous callers.
mountController(app, DocsController, { gate })
app.use(problemHandler({ gate }))

const server = app.listen(smoke ? 0 : Number(process.env.PORT ?? 3002), '127.0.0.1', () => {
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  if (smoke) {
    void runSmoke(url)
    return
  }
  console.log(`Decorated controller on ${url}
API key (documents:read): ${key}

  curl -i ${url}/docs/about                               # 200, @Public
  curl -i -H "X-API-Key: ${key}" ${url}/docs              # 200 (3 per 10 s, then 429)
  curl -i ${url}/docs                                     # 401
  curl -i -X POST -H "X-API-Key: ${key}" ${url}/docs      # 403, needs documents:write
`)
})

async function runSmoke(url: string): Promise<void> {
  const h = { 'x-api-key': key }
  const checks: Array<[string, number, () => Promise<Response>]> = [
    ['public', 200, () => fetch(`${url}/docs/about`)],
    ['allowed', 200, () => fetch(`${url}/docs`, { headers: h })],
    ['no credentials', 401, () => fetch(`${url}/docs`)],
    ['missing scope', 403, () => fetch(`${url}/docs`, { method: 'POST', headers: h })],
    ['second', 200, () => fetch(`${url}/docs`, { headers: h })],
    ['third', 200, () => fetch(`${url}/docs`, { headers: h })],
    ['rate limited', 429, () => fetch(`${url}/docs`, { headers: h })],
  ]
  let failed = 0
  for (const [name, expected, run] of checks) {
    const res = await run()
    const ok = res.status === expected
    if (!ok) failed++
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${res.status} (expected ${expected})`)
  }
  server.close()
  await gate.close()
  process.exit(failed === 0 ? 0 : 1)
}

import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { expect } from 'chai'
import {
  Controller,
  describeController,
  Get,
  Policy,
  Post,
  Public,
  RateLimit,
} from '@portcullis/core'

const run = promisify(execFile)

function summary(ctor: abstract new (...args: never[]) => unknown) {
  return describeController(ctor).routes.map((r) => ({
    ...withoutLimits(r),
    method: r.method,
    path: r.path,
    handler: String(r.handler),
    limits: r.rateLimits.map((l) => l.name),
  }))
}

// Limits are listed separately; they also ride in the requirements.
function withoutLimits(r: { requirements: { source: object } }) {
  const { rateLimits: _limits, ...requirements } = r.requirements.source as { rateLimits?: unknown }
  return { requirements }
}

const EXPECTED = [
  {
    method: 'GET',
    path: '/legacy/health',
    handler: 'health',
    requirements: { public: true },
    limits: ['class'],
  },
  {
    method: 'POST',
    path: '/legacy/reports',
    handler: 'create',
    requirements: { permission: 'reports:write' },
    limits: ['class', 'burst'],
  },
  {
    method: 'GET',
    path: '/legacy',
    handler: 'index',
    requirements: { roles: ['staff'] },
    limits: ['class'],
  },
]

describe('controller decorators', () => {
  it('records routes, policies, public marks and limits with standard decorators', () => {
    @Controller('/legacy')
    @Policy({ roles: ['staff'] })
    @RateLimit({ limit: 100, windowMs: 60_000, name: 'class' })
    class StandardController {
      @Public()
      @Get('/health')
      health(): string {
        return 'ok'
      }

      @Policy('reports:write')
      @RateLimit({ limit: 5, windowMs: 1000, name: 'burst' })
      @Post('/reports')
      create(): string {
        return 'created'
      }

      @Get()
      index(): string {
        return 'index'
      }
    }
    expect(summary(StandardController)).to.deep.equal(EXPECTED)
  })

  it('records the same with legacy experimentalDecorators compiled by tsc', async function () {
    this.timeout(60_000)
    const out = await mkdtemp(join(resolve('test/fixtures/decorators'), '.build-'))
    try {
      await writeFile(
        join(out, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            experimentalDecorators: true,
            target: 'ES2022',
            module: 'NodeNext',
            moduleResolution: 'NodeNext',
            outDir: '.',
            rootDir: '..',
            skipLibCheck: true,
            types: [],
          },
          files: ['../legacy-controller.ts'],
        }),
      )
      await run(process.execPath, [
        resolve('node_modules/typescript/bin/tsc'),
        '-p',
        join(out, 'tsconfig.json'),
      ])
      await writeFile(join(out, 'package.json'), '{"type":"module"}')
      // Read it back in a plain Node process, so the compiled class and describeController share
      // one module graph, as in an application.
      await writeFile(
        join(out, 'read.js'),
        `import { describeController } from '@portcullis/core'
import { LegacyController } from './legacy-controller.js'
console.log(JSON.stringify(describeController(LegacyController).routes.map((r) => ({
  method: r.method, path: r.path, handler: String(r.handler), requirements: { ...r.requirements.source, rateLimits: undefined },
  limits: r.rateLimits.map((l) => l.name) }))))`,
      )
      const { stdout } = await run(process.execPath, [join(out, 'read.js')])
      expect(JSON.parse(stdout)).to.deep.equal(EXPECTED)
    } finally {
      await rm(out, { recursive: true, force: true })
    }
  })

  it('refuses invalid declarations when the class is defined', () => {
    expect(() => Policy({ scope: ['x'] } as never)).to.throw(/did you mean "scopes"/)
    expect(() => RateLimit({ limit: 0, windowMs: 1000 })).to.throw(
      /limit must be a positive integer/,
    )
    expect(() => Get('no-slash')).to.throw(/must start with "\/"/)
    class NotAController {}
    expect(() => describeController(NotAController)).to.throw(/not a controller/)
    class Orphan {
      @Policy('a:b')
      method(): void {}
    }
    expect(() => describeController(Orphan)).to.throw(/without a route decorator/)
  })
})

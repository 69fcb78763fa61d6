/**
 * In-process micro-benchmarks of one credential check, in nanoseconds per operation: the floors
 * (the least work any correct check must do), Portcullis's verifiers and whole gate, and the peer
 * JWT libraries. Each is warmed up, calibrated, then timed in 5 batches with
 * `process.hrtime.bigint()`; the median batch is reported.
 *
 * Run by `run.mjs` after the HTTP part; on its own: `node bench/micro.mjs [--quick] [--only c,h1]`.
 * @module
 */
import {
  createHmac,
  createSecretKey,
  hash,
  randomBytes,
  randomUUID,
  timingSafeEqual,
  webcrypto,
} from 'node:crypto'
import { mkdtemp, readFile, rm, truncate } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { jwtVerify, SignJWT } from 'jose'
import {
  createApiKeyManager,
  createApiKeyVerifier,
  createAuditTrail,
  createGate,
  createJsonLinesFileSink,
  createJwtVerifier,
  createMemoryKeyStore,
} from '@portcullis/core'
import { fakeRequest } from '@portcullis/core/testing'
import { jwtFixture, limitStages, POLICY_20 } from './lib/fixtures.mjs'
import { fmt, fmtNs, median, range, table } from './lib/stats.mjs'

const ISSUER = 'https://id.bench.example'
const AUDIENCE = 'documents-api'
const BATCHES = 5
/** Async loops yield to the event loop every this many operations (a power of two). */
const YIELD_EVERY = 1024

/**
 * @typedef {object} MicroRow
 * @property {string} id short id (a, b, c...)
 * @property {string} name what is measured
 * @property {string} [floor] id of the floor this row is compared with
 * @property {number} [ns] median ns per operation
 * @property {number} [min] fastest batch, ns per operation
 * @property {number} [max] slowest batch, ns per operation
 * @property {number} [ratio] ns / floor's ns
 * @property {string} [skipped] why the row was not measured
 */

/**
 * Times one operation: warm-up (also calibrates the batch size), then {@link BATCHES} batches.
 * @param {() => unknown} op the operation; may return a promise, which is awaited
 * @param {object} o
 * @param {boolean} o.isAsync whether `op` returns a promise
 * @param {number} [o.yieldEvery] async loops yield to the event loop every this many operations
 * @param {number} o.warmupMs
 * @param {number} o.batchMs target duration of one batch
 * @param {() => Promise<void>} [o.settle] awaited inside the timed part after each batch (audit flush)
 * @param {() => Promise<void>} [o.between] awaited outside the timed part after each batch
 * @returns {Promise<{ ns: number, min: number, max: number }>}
 */
async function measure(
  op,
  { isAsync, yieldEvery = YIELD_EVERY, warmupMs, batchMs, settle, between },
) {
  const mask = yieldEvery - 1
  const loop = isAsync
    ? async (n) => {
        for (let i = 0; i < n; i++) {
          await op()
          if ((i & mask) === mask) await nextTurn()
        }
      }
    : async (n) => {
        for (let i = 0; i < n; i++) op()
      }
  const timed = async (n) => {
    const t0 = process.hrtime.bigint()
    await loop(n)
    if (settle !== undefined) await settle()
    return Number(process.hrtime.bigint() - t0) / n
  }
  // Warm-up, growing the chunk until the warm-up time is spent; the last chunk calibrates.
  let n = 256
  let estimate = Number.NaN
  const warmupEnd = process.hrtime.bigint() + BigInt(Math.round(warmupMs * 1e6))
  while (process.hrtime.bigint() < warmupEnd) {
    estimate = await timed(n)
    if (between !== undefined) await between()
    if (estimate * n < 50e6) n *= 2
  }
  const perBatch = Math.max(1000, Math.round((batchMs * 1e6) / estimate))
  const samples = []
  for (let b = 0; b < BATCHES; b++) {
    samples.push(await timed(perBatch))
    if (between !== undefined) await between()
  }
  return { ns: median(samples), ...range(samples) }
}

/**
 * Imports an optional peer library, or returns why it could not be.
 * @param {string} name
 * @returns {Promise<{ mod?: any, skipped?: string }>}
 */
async function optional(name) {
  try {
    const mod = await import(name)
    return { mod: mod.default ?? mod }
  } catch (error) {
    if (error?.code === 'ERR_MODULE_NOT_FOUND')
      return {
        skipped: `skipped: ${name} is not installed (add "bench" to the root workspaces and run npm install, or npm i --no-save ${name})`,
      }
    throw error
  }
}

/**
 * The floor of HS256 JWT verification: one HMAC, a constant-time compare, `JSON.parse` of the
 * payload and the `exp` check. No header, `iss` or `aud` check.
 * @param {string} token
 * @param {import('node:crypto').KeyObject} key
 */
function floorHs256(token, key) {
  const dot1 = token.indexOf('.')
  const dot2 = token.indexOf('.', dot1 + 1)
  const mac = createHmac('sha256', key).update(token.slice(0, dot2)).digest()
  const signature = Buffer.from(token.slice(dot2 + 1), 'base64url')
  if (signature.length !== mac.length || !timingSafeEqual(mac, signature))
    throw new Error('floor: bad signature')
  const claims = JSON.parse(Buffer.from(token.slice(dot1 + 1, dot2), 'base64url').toString('utf8'))
  if (!(claims.exp * 1000 > Date.now())) throw new Error('floor: expired')
  return claims
}

/**
 * Runs every micro-benchmark.
 * @param {{ quick?: boolean, only?: readonly string[], log?: (line: string) => void }} [options]
 *   `only`: ids of the cases to run (ratios need their floor among them)
 * @returns {Promise<MicroRow[]>}
 */
export async function runMicro({ quick = false, only, log = () => {} } = {}) {
  const timing = quick ? { warmupMs: 100, batchMs: 50 } : { warmupMs: 400, batchMs: 300 }
  const secret = randomBytes(32)
  const secretKey = createSecretKey(secret)
  const cryptoKey = await webcrypto.subtle.importKey(
    'raw',
    secret,
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['verify'],
  )
  const token = await new SignJWT({ scope: 'documents:read' })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject('bench-user')
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(secret)

  const store = createMemoryKeyStore()
  const pepper = randomBytes(32)
  const { key: apiKey } = await createApiKeyManager({ store, pepper }).create({
    name: 'bench',
    ownerId: 'bench-user',
    scopes: ['documents:read'],
  })
  const keyMap = new Map([[hash('sha256', apiKey, 'base64'), { ownerId: 'bench-user' }]])

  const jwtOptions = { secret, issuer: ISSUER, audience: AUDIENCE }
  const uncached = createJwtVerifier({ ...jwtOptions, cache: false }, { now: Date.now })
  const cached = createJwtVerifier(jwtOptions, { now: Date.now })
  const gate = createGate({ apiKeys: { store, pepper }, jwt: jwtOptions, audit: false })
  const compiled = gate.compile('documents:read')
  const keyRequest = fakeRequest({ url: '/docs/1', headers: { 'x-api-key': apiKey } })
  const jwtRequest = fakeRequest({ url: '/docs/1', headers: { authorization: `Bearer ${token}` } })

  const auditDir = await mkdtemp(join(tmpdir(), 'portcullis-bench-'))
  const auditFile = join(auditDir, 'audit.jsonl')
  const trail = createAuditTrail({
    sinks: [createJsonLinesFileSink({ path: auditFile, fsync: false })],
  })
  const auditedGate = createGate({ apiKeys: { store, pepper }, audit: trail })
  // How many events one decision writes, for the label.
  await auditedGate.evaluate(keyRequest, gate.compile('documents:read'))
  await trail.flush()
  const eventsPerDecision = (await readFile(auditFile, 'utf8')).split('\n').length - 1
  await truncate(auditFile, 0)

  // The full gate: API key + two named limits + quota + 20-rule policy, audit off and on.
  const fullGate = createGate({
    apiKeys: { store, pepper },
    stages: limitStages(),
    policy: POLICY_20,
    audit: false,
  })
  const fullTrail = createAuditTrail({
    sinks: [createJsonLinesFileSink({ path: auditFile, fsync: false })],
  })
  const fullAuditedGate = createGate({
    apiKeys: { store, pepper },
    stages: limitStages(),
    policy: POLICY_20,
    audit: fullTrail,
  })
  const fullCompiled = fullGate.compile('documents:read')
  const prior = await fullGate.authenticate(keyRequest)
  if (!prior.allowed) throw new Error(`full gate denied: ${prior.error.code}`)
  const [rateStage, quotaStage] = limitStages()
  const stageContext = { request: keyRequest, principal: prior.principal, requirements: undefined }
  const keyVerifier = createApiKeyVerifier({ store, pepper }, { now: Date.now })
  const uncachedGate = createGate({ jwt: { ...jwtOptions, cache: false }, audit: false })
  const asymmetric = []
  for (const alg of ['RS256', 'ES256', 'EdDSA']) {
    const f = await jwtFixture(alg)
    asymmetric.push({
      alg,
      token: f.token,
      verifier: createJwtVerifier({ ...f.gateJwt, cache: false }, { now: Date.now }),
    })
  }

  // Stand-ins until the revocation and failed-authentication throttle modules land (rows s5, s6):
  // the least work each check must do per request, against a verified token's claims and a client
  // address. Point these two rows at the real APIs once they exist.
  const verifiedClaims = (await uncached.verify(token)).claims
  const claims = { ...verifiedClaims, jti: randomUUID() }
  const revokedJtis = new Set(Array.from({ length: 10_000 }, () => randomUUID()))
  const revokedBefore = new Map(
    Array.from({ length: 1_000 }, (_, i) => [`user-${i}`, Math.floor(Date.now() / 1000)]),
  )
  const isRevoked = (c) => revokedJtis.has(c.jti) || (revokedBefore.get(c.sub) ?? -1) >= c.iat
  const failures = new Map(
    Array.from({ length: 10_000 }, (_, i) => [
      `198.51.${i >> 8}.${i & 255}`,
      { count: 1 + (i % 4), resetAtMs: Date.now() + 900_000 },
    ]),
  )
  const throttled = (ip) => {
    const entry = failures.get(ip)
    return entry !== undefined && entry.count >= 5 && entry.resetAtMs > Date.now()
  }

  const jsonwebtoken = await optional('jsonwebtoken')
  const fastJwt = await optional('fast-jwt')

  const mustAllow = (d) => {
    if (!d.allowed) throw new Error(`gate denied: ${d.error.code}`)
  }
  const mustVerify = (r) => {
    if (!r.ok) throw new Error(`verifier refused: ${r.error.code}`)
  }

  /** @type {Array<{ id: string, name: string, floor?: string, skipped?: string, isAsync?: boolean, yieldEvery?: number, op?: () => unknown, settle?: () => Promise<void>, between?: () => Promise<void> }>} */
  const cases = [
    {
      id: 'a',
      name: 'floor HS256: createHmac + timingSafeEqual + JSON.parse + exp',
      op: () => floorHs256(token, secretKey),
    },
    {
      id: 'b',
      name: 'floor API key: one SHA-256 (crypto.hash) + Map lookup',
      op: () => {
        if (keyMap.get(hash('sha256', apiKey, 'base64')) === undefined) throw new Error('no key')
      },
    },
    {
      id: 'c',
      name: 'portcullis createJwtVerifier, cache off',
      floor: 'a',
      isAsync: true,
      op: async () => mustVerify(await uncached.verify(token)),
    },
    {
      id: 'd',
      name: 'portcullis createJwtVerifier, cache on (hit)',
      floor: 'a',
      isAsync: true,
      op: async () => mustVerify(await cached.verify(token)),
    },
    {
      id: 'e',
      name: 'jose jwtVerify (Uint8Array secret)',
      floor: 'a',
      isAsync: true,
      op: async () => jwtVerify(token, secret, { issuer: ISSUER, audience: AUDIENCE }),
    },
    {
      id: 'e2',
      name: 'jose jwtVerify (CryptoKey imported once)',
      floor: 'a',
      isAsync: true,
      op: async () => jwtVerify(token, cryptoKey, { issuer: ISSUER, audience: AUDIENCE }),
    },
    jsonwebtoken.mod === undefined
      ? {
          id: 'f',
          name: 'jsonwebtoken verify (KeyObject)',
          floor: 'a',
          skipped: jsonwebtoken.skipped,
        }
      : {
          id: 'f',
          name: `jsonwebtoken verify (KeyObject)`,
          floor: 'a',
          op: () =>
            jsonwebtoken.mod.verify(token, secretKey, {
              algorithms: ['HS256'],
              issuer: ISSUER,
              audience: AUDIENCE,
            }),
        },
    ...(fastJwt.mod === undefined
      ? [{ id: 'g', name: 'fast-jwt createVerifier', floor: 'a', skipped: fastJwt.skipped }]
      : [false, true].map((cache) => {
          const verify = fastJwt.mod.createVerifier({
            key: secret,
            algorithms: ['HS256'],
            allowedIss: ISSUER,
            allowedAud: AUDIENCE,
            cache,
          })
          return {
            id: cache ? 'g2' : 'g',
            name: `fast-jwt createVerifier, cache ${cache ? 'on (hit)' : 'off'}`,
            floor: 'a',
            op: () => verify(token),
          }
        })),
    ...asymmetric.map(({ alg, token: t, verifier }) => ({
      id: `c-${alg.toLowerCase()}`,
      name: `portcullis createJwtVerifier ${alg}, cache off`,
      isAsync: true,
      op: async () => mustVerify(await verifier.verify(t)),
    })),
    {
      id: 's1',
      name: 'stage: API-key verifier, cached key',
      floor: 'b',
      isAsync: true,
      op: async () => mustVerify(await keyVerifier.verify(apiKey, keyRequest)),
    },
    {
      id: 's2',
      name: 'stage: rate limit, 2 named limits (memory)',
      isAsync: true,
      op: async () => {
        if (!(await rateStage.run(stageContext)).ok) throw new Error('limited')
      },
    },
    {
      id: 's3',
      name: 'stage: quota (memory)',
      isAsync: true,
      op: async () => {
        if (!(await quotaStage.run(stageContext)).ok) throw new Error('over quota')
      },
    },
    {
      id: 's4',
      name: 'stage: gate.authorize with the 20-rule policy (audit off)',
      isAsync: true,
      op: async () => mustAllow(await fullGate.authorize(keyRequest, prior, fullCompiled)),
    },
    {
      id: 's5',
      name: 'stage stand-in: JWT revocation lookup (Set.has(jti) + Map subject → revoked-before time vs iat, on verified claims; not the revocation module yet)',
      op: () => {
        if (isRevoked(claims)) throw new Error('revoked')
      },
    },
    {
      id: 's6',
      name: 'stage stand-in: failed-authentication throttle check (Map lookup by client address + count and window; not the throttle module yet)',
      op: () => {
        if (throttled('198.51.3.7')) throw new Error('throttled')
      },
    },
    {
      id: 'h1',
      name: 'whole gate.evaluate, API key (cached), audit off',
      floor: 'b',
      isAsync: true,
      op: async () => mustAllow(await gate.evaluate(keyRequest, compiled)),
    },
    {
      id: 'h2',
      name: 'whole gate.evaluate, JWT (cached), audit off',
      floor: 'a',
      isAsync: true,
      op: async () => mustAllow(await gate.evaluate(jwtRequest, compiled)),
    },
    {
      id: 'h3',
      name: 'whole gate.evaluate, JWT HS256 uncached (verifier cache off), audit off',
      floor: 'a',
      isAsync: true,
      op: async () => mustAllow(await uncachedGate.evaluate(jwtRequest, compiled)),
    },
    {
      id: 'h4',
      name: 'whole gate.evaluate, full gate (API key + 2 limits + quota + 20-rule policy), audit off',
      floor: 'b',
      isAsync: true,
      op: async () => mustAllow(await fullGate.evaluate(keyRequest, fullCompiled)),
    },
    {
      id: 'i2',
      name: 'whole gate.evaluate, full gate, audit to JSON-lines file (fsync off)',
      floor: 'b',
      isAsync: true,
      op: async () => mustAllow(await fullAuditedGate.evaluate(keyRequest, fullCompiled)),
      yieldEvery: 128,
      settle: () => fullTrail.flush(),
      between: () => truncate(auditFile, 0).catch(() => {}),
    },
    {
      id: 'i',
      name: `whole gate.evaluate, API key (cached), audit to JSON-lines file (fsync off, ${eventsPerDecision} events/decision)`,
      floor: 'b',
      isAsync: true,
      op: async () => mustAllow(await auditedGate.evaluate(keyRequest, compiled)),
      // Yield as often as a server would let the audit timer and writes run, so that the queue
      // stays a few thousand events deep (every 1024 operations it grows past 40,000).
      yieldEvery: 128,
      // Writing the events is part of the cost: each timed batch ends when the file has them all.
      settle: () => trail.flush(),
      between: () => truncate(auditFile, 0).catch(() => {}),
    },
  ]

  // --- Failed-authentication throttle (issue 17), a block of its own ---
  // check() as the gate calls it before verifying every credential: t1 with no lock anywhere,
  // t2 with another address locked (the keys are derived and looked up).
  const { createAuthFailureThrottle } = await import('@portcullis/core')
  const idleThrottle = createAuthFailureThrottle()
  const busyThrottle = createAuthFailureThrottle({ addressThreshold: 1 })
  busyThrottle.failed({ ip: '198.51.100.66' })
  const throttleSubject = { ip: '192.0.2.10', credentialId: 'bench-key-id' }
  for (const [id, throttle, state] of [
    ['t1', idleThrottle, 'no lock anywhere'],
    ['t2', busyThrottle, 'another address locked'],
  ]) {
    cases.push({
      id,
      name: `auth-failure throttle check(), address with no failures, ${state} (memory)`,
      op: () => {
        if (throttle.check(throttleSubject) !== undefined) throw new Error('locked')
      },
    })
  }
  // --- end of the throttle block ---

  /** @type {MicroRow[]} */
  const rows = []
  try {
    for (const c of cases) {
      if (only !== undefined && !only.includes(c.id)) continue
      if (c.skipped !== undefined) {
        rows.push({ id: c.id, name: c.name, floor: c.floor, skipped: c.skipped })
        log(`micro ${c.id}: ${c.skipped}`)
        continue
      }
      await c.op() // fails loudly before timing if the setup is wrong
      const r = await measure(c.op, {
        isAsync: c.isAsync === true,
        yieldEvery: c.yieldEvery,
        ...timing,
        settle: c.settle,
        between: c.between,
      })
      rows.push({ id: c.id, name: c.name, floor: c.floor, ...r })
      log(`micro ${c.id}: ${fmtNs(r.ns)} ns/op  ${c.name}`)
    }
  } finally {
    await auditedGate.close()
    await gate.close()
    await fullGate.close()
    await fullAuditedGate.close()
    await uncachedGate.close()
    await keyVerifier.close()
    await rm(auditDir, { recursive: true, force: true })
  }
  for (const row of rows) {
    const floor = rows.find((f) => f.id === row.floor)
    if (row.ns !== undefined && floor?.ns !== undefined) row.ratio = row.ns / floor.ns
  }
  return rows
}

/**
 * The decision-time targets of issue 9, from the rows: a cached API key or cached JWT through the
 * whole gate within 2× its floor + 2 µs; an uncached HS256 JWT within 1.5× the floor with parse.
 * `value` is bound / measured (≥ 1: met).
 * @param {readonly MicroRow[]} rows
 * @returns {Array<{ label: string, value: number, measuredNs: number, boundNs: number, rule: string }>}
 */
export function microTargets(rows) {
  const ns = (id) => rows.find((r) => r.id === id)?.ns
  const out = []
  const add = (label, id, floorId, factor, plus, rule) => {
    const measured = ns(id)
    const floor = ns(floorId)
    if (measured === undefined || floor === undefined) return
    const bound = factor * floor + plus
    out.push({ label, value: bound / measured, measuredNs: measured, boundNs: bound, rule })
  }
  add('Whole gate, cached API key (h1)', 'h1', 'b', 2, 2000, '2 × floor b + 2 µs')
  add('Whole gate, cached JWT (h2)', 'h2', 'a', 2, 2000, '2 × floor a + 2 µs')
  add('Whole gate, uncached HS256 JWT (h3)', 'h3', 'a', 1.5, 0, '1.5 × floor a')
  add('JWT verifier alone, uncached HS256 (c)', 'c', 'a', 1.5, 0, '1.5 × floor a')
  return out
}

/**
 * Renders the rows as a Markdown table.
 * @param {readonly MicroRow[]} rows
 * @returns {string}
 */
export function microTable(rows) {
  return table(
    ['', 'Operation', 'ns/op (median)', 'min–max', 'ops/s', 'vs floor'],
    rows.map((r) =>
      r.skipped !== undefined
        ? [r.id, r.name, r.skipped, '', '', '']
        : [
            r.id,
            r.name,
            fmtNs(r.ns),
            `${fmtNs(r.min)}–${fmtNs(r.max)}`,
            fmt(1e9 / r.ns),
            r.ratio !== undefined
              ? `${fmt(r.ratio, 2)}× ${r.floor}`
              : r.id === 'a' || r.id === 'b'
                ? 'floor'
                : '',
          ],
    ),
    ['l', 'l', 'r', 'r', 'r', 'r'],
  )
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const at = process.argv.indexOf('--only')
  const rows = await runMicro({
    quick: process.argv.includes('--quick'),
    only: at === -1 ? undefined : process.argv[at + 1]?.split(','),
    log: (l) => process.stderr.write(`${l}\n`),
  })
  console.log(microTable(rows))
}

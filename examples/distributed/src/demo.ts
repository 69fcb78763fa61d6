// Portcullis on several instances: starts redis-server and PostgreSQL (loopback, temp folders),
// then three instances of instance.ts, and shows
//   1. a rate limit shared by the three (counters in Redis: no instance admits more than its share)
//   2. a key revoked through one instance and refused by the other two within milliseconds,
//      although each had it cached (the revocation travels over the Redis broker)
// then stops everything. Ctrl-C at any point also stops everything.
//
//   npm start -w examples/distributed     run it; exits 1 if any outcome differs from the above
import { randomBytes } from 'node:crypto'
import { startInstance, type Instance } from './cluster.js'
import { startPostgres, startRedis, type Service } from './services.js'

const QUOTE_LIMIT = 5

const services: Service[] = []
const instances: Instance[] = []
let stopping: Promise<void> | undefined
let failures = 0

/** Stops the instances first (they close their connections), then the servers. */
function shutdown(): Promise<void> {
  stopping ??= (async () => {
    await Promise.all(instances.map((i) => i.stop()))
    await Promise.all(services.map((s) => s.stop()))
  })()
  return stopping
}

/** Keeps what was started, for shutdown; stops it at once if shutdown has begun. */
async function track<TValue extends Service | Instance>(
  started: Promise<TValue>,
  list: TValue[],
): Promise<TValue> {
  const value = await started
  if (stopping !== undefined) {
    await value.stop()
    throw new Error('interrupted')
  }
  list.push(value)
  return value
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.log(`\n${signal}: shutting down`)
    void shutdown().then(() => process.exit(130))
  })
}

function check(ok: boolean, what: string): void {
  if (!ok) failures++
  console.log(`   ${ok ? 'ok  ' : 'FAIL'} ${what}`)
}

async function get(
  instance: Instance,
  path: string,
  key: string,
): Promise<{ status: number; body: { code?: string }; rateLimit: string | null }> {
  const res = await fetch(instance.url + path, { headers: { 'x-api-key': key } })
  return {
    status: res.status,
    body: (await res.json()) as { code?: string },
    rateLimit: res.headers.get('ratelimit'),
  }
}

async function sharedLimit([a, b, c]: Instance[]): Promise<void> {
  console.log(
    `\n1. A shared limit: GET /quote admits ${QUOTE_LIMIT} requests a minute per key, counted in ` +
      'Redis for all instances together',
  )
  const { key } = await (a as Instance).createKey({ name: 'limit-demo', ownerId: 'limit-demo' })
  const ring = [a, b, c] as Instance[]
  const statuses: number[] = []
  for (let n = 0; n < QUOTE_LIMIT + 3; n++) {
    const instance = ring[n % ring.length] as Instance
    const { status, rateLimit } = await get(instance, '/quote', key)
    statuses.push(status)
    console.log(`   request ${n + 1} to ${instance.name}: ${status}   RateLimit: ${rateLimit}`)
  }
  check(
    statuses.slice(0, QUOTE_LIMIT).every((s) => s === 200) &&
      statuses.slice(QUOTE_LIMIT).every((s) => s === 429),
    `${QUOTE_LIMIT} admitted in total, then 429 from every instance`,
  )
}

async function revocation([a, ...others]: Instance[]): Promise<void> {
  const first = a as Instance
  console.log(
    `\n2. Revocation: a key is revoked through ${first.name}; the others have it cached and ` +
      'hear of it over the Redis broker',
  )
  const { key, id } = await first.createKey({ name: 'revoke-demo', ownerId: 'revoke-demo' })
  const all = [first, ...others]
  for (const instance of all) {
    const before = await instance.storeReads()
    const statuses = [(await get(instance, '/whoami', key)).status]
    statuses.push((await get(instance, '/whoami', key)).status)
    const reads = (await instance.storeReads()) - before
    console.log(
      `   ${instance.name}: ${statuses.join(', ')}  (PostgreSQL reads: ${reads}; then cached)`,
    )
  }
  const startedAt = performance.now()
  await first.revokeKey(id)
  const revokeMs = performance.now() - startedAt
  const own = await get(first, '/whoami', key)
  console.log(
    `   revoked through ${first.name} in ${revokeMs.toFixed(1)} ms (PostgreSQL update + publish); ` +
      `${first.name} now answers ${own.status} ${own.body.code}`,
  )
  const refusedAfterMs = await Promise.all(
    others.map(async (instance) => {
      for (;;) {
        const { status, body } = await get(instance, '/whoami', key)
        const ms = performance.now() - startedAt
        if (status === 401) {
          console.log(
            `   ${instance.name} refuses it (${status} ${body.code}) ${ms.toFixed(1)} ms after ` +
              'the revoke began',
          )
          return ms
        }
        if (ms > 5000) return Infinity
        await new Promise((resolve) => setTimeout(resolve, 1))
      }
    }),
  )
  check(own.status === 401, `${first.name} refuses the key at once`)
  check(
    refusedAfterMs.every((ms) => ms < 1000),
    'the other instances refuse it within a second (the cache TTL, 60 s, is the bound without a broker)',
  )
}

try {
  console.log('Starting redis-server and PostgreSQL on 127.0.0.1 (temp folders) ...')
  const [redis, postgres] = await Promise.all([
    track(startRedis(), services),
    track(startPostgres(), services),
  ])
  console.log(`   Redis ${redis.url}\n   PostgreSQL ${postgres.url}`)
  const pepper = randomBytes(32).toString('base64url')
  const ring = await Promise.all(
    [1, 2, 3].map((n) =>
      track(
        startInstance({
          name: `instance-${n}`,
          databaseUrl: postgres.url,
          redisUrl: redis.url,
          pepper,
          quoteLimit: QUOTE_LIMIT,
        }),
        instances,
      ),
    ),
  )
  console.log('Three instances (separate Node processes) share them:')
  for (const i of ring) console.log(`   ${i.name}  ${i.url}  (pid ${i.pid})`)
  await sharedLimit(ring)
  await revocation(ring)
} catch (error) {
  if (stopping === undefined) {
    failures++
    console.error(error)
  }
}
if (stopping === undefined) {
  console.log('\nStopping the instances, Redis and PostgreSQL ...')
  await shutdown()
  console.log(failures === 0 ? 'Done.' : `${failures} check(s) failed.`)
  process.exit(failures === 0 ? 0 : 1)
}

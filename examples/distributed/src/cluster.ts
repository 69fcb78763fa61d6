// Starts and drives instances (instance.ts) as child processes: one Node process each, talking to
// the parent over an IPC channel for key administration. Used by the demo and by the test suite
// (test/distributed/revocation.test.ts).
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

/** What an instance can be asked over IPC. */
export type InstanceCommand =
  | { readonly op: 'create'; readonly name: string; readonly ownerId: string }
  | { readonly op: 'revoke'; readonly keyId: string }
  | { readonly op: 'stats' }

/** A command sent to an instance, with the id its reply carries. */
export type InstanceRequest = InstanceCommand & { readonly id: number }

/** What an instance sends back: `ready` once it serves, then one reply per request. */
export type InstanceReply =
  | { readonly ready: true; readonly port: number }
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: string }

/** Where an instance finds the shared services, and how it is set up. */
export interface InstanceOptions {
  /** Shown in answers and logs. */
  readonly name: string
  readonly databaseUrl: string
  readonly redisUrl: string
  /** The server secret every instance shares (at least 32 bytes). */
  readonly pepper: string
  /** Requests per minute per key on GET /quote, over all instances. @default 5 */
  readonly quoteLimit?: number
}

/** A running instance. */
export interface Instance {
  readonly name: string
  /** `http://127.0.0.1:<port>`. */
  readonly url: string
  readonly pid: number
  /** Issues a key through this instance's ApiKeyManager (stored in PostgreSQL). */
  createKey(input: { name: string; ownerId: string }): Promise<{ key: string; id: string }>
  /** Revokes a key through this instance's ApiKeyManager (which publishes `key.revoked`). */
  revokeKey(keyId: string): Promise<void>
  /** Key-store reads (cache misses) this instance made in PostgreSQL so far. */
  storeReads(): Promise<number>
  /** SIGTERM, then waits for a clean exit (SIGKILL after 5 s). Safe to call twice. */
  stop(): Promise<void>
}

const INSTANCE = fileURLToPath(new URL('./instance.ts', import.meta.url))

/** Starts one instance and waits until it serves HTTP. */
export async function startInstance(options: InstanceOptions): Promise<Instance> {
  const child = fork(INSTANCE, [], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: {
      ...process.env,
      PORTCULLIS_INSTANCE: options.name,
      DATABASE_URL: options.databaseUrl,
      REDIS_URL: options.redisUrl,
      PORTCULLIS_PEPPER: options.pepper,
      QUOTE_LIMIT: String(options.quoteLimit ?? 5),
      PORT: '0',
    },
  })
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  let nextId = 0
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${options.name} did not start in 30 s`)),
      30_000,
    )
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`${options.name} exited before serving (${signal ?? code})`))
    })
    child.on('message', (reply: InstanceReply) => {
      if ('ready' in reply) {
        clearTimeout(timer)
        return resolve(reply.port)
      }
      const call = pending.get(reply.id)
      pending.delete(reply.id)
      if (reply.ok) call?.resolve(reply.result)
      else call?.reject(new Error(`${options.name}: ${reply.error}`))
    })
  }).catch(async (error: unknown) => {
    await stop(child)
    throw error
  })
  child.on('exit', () => {
    for (const call of pending.values()) call.reject(new Error(`${options.name} exited`))
    pending.clear()
  })

  const call = (command: InstanceCommand): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = ++nextId
      pending.set(id, { resolve, reject })
      child.send({ ...command, id } satisfies InstanceRequest)
    })

  return {
    name: options.name,
    url: `http://127.0.0.1:${port}`,
    pid: child.pid as number,
    createKey: async (input) =>
      (await call({ op: 'create', ...input })) as { key: string; id: string },
    revokeKey: async (keyId) => {
      const { revoked } = (await call({ op: 'revoke', keyId })) as { revoked: boolean }
      if (!revoked) throw new Error(`${options.name}: no key ${keyId} to revoke`)
    },
    storeReads: async () => ((await call({ op: 'stats' })) as { storeReads: number }).storeReads,
    stop: () => stop(child),
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exit = once(child, 'exit')
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exit
  clearTimeout(timer)
}

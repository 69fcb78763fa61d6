// Runs the REAL built `portcullis` binary (packages/cli/dist/bin.js, built by `npx tsc -b
// packages/cli`) for the CLI suites, in an environment without the developer's PORTCULLIS_*.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import {
  createApiKeyVerifier,
  type ApiKeyOptions,
  type ApiKeyVerifyResult,
  type KeyStore,
} from '@portcullis/core'

/** The built binary. */
export const CLI_BIN = resolve('packages/cli/dist/bin.js')

/** What one run of the binary gave. */
export interface CliRun {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** This process's environment without any `PORTCULLIS_*` variable. */
export function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('PORTCULLIS_')) env[k] = v
  return env
}

/**
 * Runs the binary asynchronously (the event loop stays free for servers and subscribers the test
 * runs meanwhile), with {@link cleanEnv} and `env` on top.
 */
export function runCli(args: readonly string[], env: Record<string, string>): Promise<CliRun> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [CLI_BIN, ...args], {
      env: { ...cleanEnv(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s))
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s))
    child.on('error', fail)
    child.on('close', (code) => done({ code, stdout, stderr }))
  })
}

/** A `before` hook failing the suite when the binary has not been built. */
export function requireBuiltCli(): void {
  before(function () {
    if (!existsSync(CLI_BIN))
      throw new Error(`${CLI_BIN} is missing: run \`npx tsc -b packages/cli\` first`)
  })
}

/**
 * Checks `key` the way the gate would, on `store`, with no cache in between; closes the verifier
 * and the store after.
 */
export async function verifyOnce(
  store: KeyStore & { close(): Promise<void> },
  options: Omit<ApiKeyOptions, 'store' | 'cache'>,
  key: string,
): Promise<ApiKeyVerifyResult> {
  const verifier = createApiKeyVerifier({ ...options, store, cache: false }, { now: Date.now })
  try {
    return await verifier.verify(key)
  } finally {
    verifier.close()
    await store.close()
  }
}

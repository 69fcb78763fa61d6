// Runs the REAL built `portcullis audit verify` (packages/cli/dist/bin.js, built by `npm run
// build`) on a JSON-lines trail, as an operator would after a fault, and reads back its events.
import { spawnSync } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import type { AuditEvent, AuditVerifyResult } from '@portcullis/core'

const BIN = resolve('packages/cli/dist/bin.js')

export interface CliVerify {
  /** The exit code. */
  readonly code: number | null
  /** The `--json` result. */
  readonly result: AuditVerifyResult
  readonly stderr: string
}

/** `portcullis audit verify <file> --json` with the chain key in PORTCULLIS_AUDIT_KEY. */
export function verifyWithCli(file: string, key: string): CliVerify {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('PORTCULLIS_')) env[k] = v
  const r = spawnSync(process.execPath, [BIN, 'audit', 'verify', file, '--json'], {
    cwd: dirname(file),
    env: { ...env, PORTCULLIS_AUDIT_KEY: key },
    encoding: 'utf8',
    input: '',
  })
  return { code: r.status, result: JSON.parse(r.stdout) as AuditVerifyResult, stderr: r.stderr }
}

/** The events of a JSON-lines file (every line must parse). */
export async function readEvents(file: string): Promise<AuditEvent[]> {
  const text = await readFile(file, 'utf8')
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as AuditEvent)
}

/** The request events of a trail (the trail's own audit.* events left out), in stored order. */
export const requestEvents = (events: readonly AuditEvent[]): AuditEvent[] =>
  events.filter((e) => !e.type.startsWith('audit.'))

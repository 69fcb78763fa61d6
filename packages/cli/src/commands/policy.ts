/**
 * `portcullis policy lint|explain|test`: check a policy file, explain one decision, and run
 * table-driven cases with a rule-coverage report. A shell over core's `lintPolicySet`,
 * `explainPolicy` and `runPolicyTests`; files are YAML or JSON (YAML is a superset of JSON).
 *
 * Reachable from `@portcullis/cli`.
 * @packageDocumentation
 */
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import {
  accessRequestFromInput,
  compilePolicySet,
  explainPolicy,
  formatPolicyDiagnostic,
  lintPolicySet,
  principalFromInput,
  runPolicyTests,
  type PolicyDiagnostic,
} from '@portcullis/core'
import type { Command } from 'commander'
import YAML from 'yaml'
import { CliError, EXIT_FAILURE, argParser, usageError, type CliContext } from '../io.js'

/** Reads and parses a YAML or JSON file; duplicate keys are refused. */
function readData(path: string): unknown {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw new CliError(
      `${path}: cannot read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    )
  }
  try {
    return YAML.parse(text, { uniqueKeys: true, maxAliasCount: 100, prettyErrors: true })
  } catch (error) {
    throw new CliError(
      `${path}: malformed policy file: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`,
    )
  }
}

const jsonArg = argParser<unknown>((v) => {
  try {
    return JSON.parse(v) as unknown
  } catch {
    return undefined
  }
}, 'must be JSON, e.g. \'{"id":"alice","roles":["viewer"]}\'')

const instantArg = argParser<number>((v) => {
  const ms = Date.parse(v)
  return Number.isFinite(ms) ? ms : undefined
}, 'must be an ISO 8601 time, e.g. 2026-11-24T10:30:00Z')

function diagnosticLines(list: readonly PolicyDiagnostic[]): string {
  return list.map((d) => `${d.severity}: ${formatPolicyDiagnostic(d)} [${d.kind}]\n`).join('')
}

/** Registers `policy lint|explain|test`. */
export function register(program: Command, context: CliContext): void {
  const { io } = context
  const policy = program.command('policy').description('Check, explain and test policy files.')

  policy
    .command('lint')
    .description('Validate a policy file and report lint warnings (exit 1 on errors).')
    .argument('<file>', 'policy file (YAML or JSON)')
    .option('--strict', 'exit 1 on warnings too')
    .action(function lint(this: Command, file: string, options: { strict?: boolean }) {
      const path = resolve(io.cwd, file)
      const result = lintPolicySet(readData(path), { file })
      context.output(this, result, () => {
        const head = result.ok
          ? `${file}: ok (${result.warnings.length} warning${result.warnings.length === 1 ? '' : 's'})\n`
          : `${file}: ${result.errors.length} error${result.errors.length === 1 ? '' : 's'}\n`
        return head + diagnosticLines(result.errors) + diagnosticLines(result.warnings)
      })
      if (!result.ok) throw new CliError(`${file}: the policy set is invalid`, EXIT_FAILURE)
      if (options.strict === true && result.warnings.length > 0)
        throw new CliError(`${file}: lint warnings (--strict)`, EXIT_FAILURE)
    })

  policy
    .command('explain')
    .description('Explain the decision for one principal and request.')
    .argument('<file>', 'policy file (YAML or JSON)')
    .requiredOption(
      '--principal <json>',
      'the principal, e.g. {"id":"alice","roles":["viewer"]} (or null)',
      jsonArg,
    )
    .requiredOption(
      '--request <json>',
      'the request, e.g. {"action":"documents:read","ip":"10.0.0.1"}',
      jsonArg,
    )
    .option('--now <time>', 'evaluate at this time (ISO 8601)', instantArg)
    .action(function explain(
      this: Command,
      file: string,
      options: { principal: unknown; request: unknown; now?: number },
    ) {
      const path = resolve(io.cwd, file)
      const set = compilePolicySet(readData(path), { file })
      const principal = principalFromInput(options.principal, '--principal')
      const { request, now } = accessRequestFromInput(principal, options.request, '--request')
      const at = options.now ?? now
      const e = explainPolicy(set, request, at)
      const { error, ...shown } = e
      context.output(
        this,
        { ...shown, ...(error === undefined ? {} : { code: error.code }) },
        () => {
          const lines = [
            `decision:    ${e.decision}${error === undefined ? '' : ` (${error.code})`}`,
            `rules:       ${e.matchedRules.join(', ')}`,
            `risk score:  ${e.riskScore}${
              Object.keys(e.signals).length === 0
                ? ''
                : ` (${Object.entries(e.signals)
                    .map(([k, v]) => `${k} ${v}`)
                    .join(', ')})`
            }`,
            `explanation: ${e.explanation}`,
          ]
          if (e.shadowDenied.length > 0)
            lines.push(`shadow:      would deny (${e.shadowDenied.join(', ')})`)
          lines.push('', 'candidate rules, in evaluation order:')
          if (e.rules.length === 0) lines.push('  (no rule is about this action)')
          for (const r of e.rules) {
            lines.push(
              `  ${r.outcome.padEnd(8)} ${r.effect.padEnd(5)} p${r.priority}${r.shadow ? ' shadow' : ''}  ${r.id}`,
            )
            for (const d of r.detail) lines.push(`      ${d}`)
          }
          return `${lines.join('\n')}\n`
        },
      )
    })

  policy
    .command('test')
    .description(
      'Run table-driven cases (principal + request → expected decision) with rule coverage.',
    )
    .argument('<file>', 'test file (YAML or JSON): { policy: <path>, now?: <time>, cases: [...] }')
    .option('--policy <file>', "policy file, instead of the test file's `policy`")
    .option('--require-coverage', 'exit 1 when some rule is exercised by no case')
    .action(function test(
      this: Command,
      file: string,
      options: { policy?: string; requireCoverage?: boolean },
    ) {
      const path = resolve(io.cwd, file)
      const suite = readData(path) as { policy?: unknown; cases?: unknown; now?: unknown } | null
      if (typeof suite !== 'object' || suite === null)
        throw new CliError(`${file}: must be an object with policy and cases`)
      const policyPath =
        options.policy !== undefined
          ? resolve(io.cwd, options.policy)
          : typeof suite.policy === 'string'
            ? resolve(dirname(path), suite.policy)
            : undefined
      if (policyPath === undefined)
        throw usageError(`${file}: no policy: give "policy" in the file or --policy`)
      let now: number | undefined
      if (suite.now !== undefined) {
        now = typeof suite.now === 'number' ? suite.now : Date.parse(String(suite.now))
        if (!Number.isFinite(now)) throw new CliError(`${file}: now: must be an ISO 8601 time`)
      }
      const shownPolicy = options.policy ?? String(suite.policy)
      const report = runPolicyTests(readData(policyPath), suite.cases, {
        file: shownPolicy,
        ...(now === undefined ? {} : { now }),
      })
      context.output(this, report, () => {
        const lines = report.results.map((r) =>
          r.passed ? `  ✔ ${r.name}` : `  ✘ ${r.name}\n      ${r.failure ?? ''}`,
        )
        lines.push(
          '',
          `${report.passed} passed, ${report.failed} failed`,
          `coverage: ${report.covered.length}/${report.covered.length + report.uncovered.length} rules exercised`,
        )
        if (report.uncovered.length > 0)
          lines.push(`rules no case exercises: ${report.uncovered.join(', ')}`)
        return `${lines.join('\n')}\n`
      })
      if (report.failed > 0)
        throw new CliError(
          `${report.failed} of ${report.results.length} policy cases failed`,
          EXIT_FAILURE,
        )
      if (options.requireCoverage === true && report.uncovered.length > 0)
        throw new CliError(`rules no case exercises: ${report.uncovered.join(', ')}`, EXIT_FAILURE)
    })
}

/**
 * What the results depend on: the machine, Node, the installed package versions, CPU pinning.
 * @module
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { cpus, loadavg, release, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The `bench/` folder. */
export const BENCH_DIR = dirname(dirname(fileURLToPath(import.meta.url)))

/**
 * Version of an installed package, found the way Node resolves it from `bench/` (walking up the
 * `node_modules` folders), read from its package.json; `undefined` when not installed.
 * @param {string} name
 * @returns {string | undefined}
 */
export function packageVersion(name) {
  for (let dir = BENCH_DIR; ; dir = dirname(dir)) {
    const file = join(dir, 'node_modules', name, 'package.json')
    if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')).version
    if (dirname(dir) === dir) return undefined
  }
}

/**
 * The CPU model, core count, memory, kernel and load of this machine.
 * @returns {{ cpu: string, cores: number, memoryGiB: number, kernel: string, load: number[] }}
 */
export function machineInfo() {
  let cpu
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim()
  } catch {
    // Not Linux: fall back to what os.cpus() knows.
  }
  return {
    cpu: cpu ?? cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: totalmem() / 2 ** 30,
    kernel: `${process.platform} ${release()}`,
    load: loadavg(),
  }
}

/**
 * The CPUs this process may run on, from `taskset -pc`, or `undefined` without taskset.
 * @returns {number[] | undefined}
 */
export function allowedCpus() {
  if (process.platform !== 'linux') return undefined
  const r = spawnSync('taskset', ['-pc', String(process.pid)], { encoding: 'utf8' })
  if (r.error !== undefined || r.status !== 0) return undefined
  const list = /:\s*([0-9,\-\s]+)$/.exec(r.stdout.trim())?.[1]
  if (list === undefined) return undefined
  const out = []
  for (const part of list.split(',')) {
    const [a, b] = part.trim().split('-').map(Number)
    for (let c = a; c <= (b ?? a); c++) out.push(c)
  }
  return out
}

/**
 * Resident set size of a process, in bytes, from `/proc/<pid>/status` (`VmRSS`).
 * @param {number} pid
 * @returns {number} NaN when unavailable
 */
export function rssOf(pid) {
  try {
    const kb = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
    return kb === undefined ? Number.NaN : Number(kb) * 1024
  } catch {
    return Number.NaN
  }
}

/** Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on every mainstream Linux). */
const USER_HZ = 100

/**
 * CPU time used so far by a process (user + system), in seconds, from `/proc/<pid>/stat`.
 * @param {number} pid
 * @returns {number} NaN when unavailable
 */
export function cpuSecondsOf(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    // After "pid (comm) ", utime and stime are the 12th and 13th fields.
    return (Number(fields[11]) + Number(fields[12])) / USER_HZ
  } catch {
    return Number.NaN
  }
}

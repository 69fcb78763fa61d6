/**
 * Small statistics and formatting helpers shared by the benchmark scripts.
 * @module
 */

/**
 * Median of a list of numbers (mean of the two middle values for an even count).
 * @param {readonly number[]} values
 * @returns {number}
 */
export function median(values) {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/**
 * Smallest and largest value.
 * @param {readonly number[]} values
 * @returns {{ min: number, max: number }}
 */
export function range(values) {
  if (values.length === 0) return { min: Number.NaN, max: Number.NaN }
  return { min: Math.min(...values), max: Math.max(...values) }
}

/**
 * Nearest-rank percentile of an already sorted array.
 * @param {ArrayLike<number>} sorted ascending
 * @param {number} p in [0, 100]
 * @returns {number}
 */
export function percentile(sorted, p) {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]
}

/**
 * Formats a number with a fixed count of decimals, or `n/a`.
 * @param {number} value
 * @param {number} [decimals]
 * @returns {string}
 */
export function fmt(value, decimals = 0) {
  if (!Number.isFinite(value)) return 'n/a'
  return value.toLocaleString('en-US', {
    minimumFractionDigits: decimals,
    maximumFractionDigits: decimals,
  })
}

/**
 * Formats a duration in nanoseconds with a precision that suits its size.
 * @param {number} ns
 * @returns {string}
 */
export function fmtNs(ns) {
  return fmt(ns, ns < 100 ? 1 : 0)
}

/**
 * Renders a Markdown table.
 * @param {readonly string[]} head column titles
 * @param {readonly (readonly string[])[]} rows cells
 * @param {readonly ('l' | 'r')[]} [align] per column, default left for the first and right after
 * @returns {string}
 */
export function table(head, rows, align) {
  const a = align ?? head.map((_, i) => (i === 0 ? 'l' : 'r'))
  const line = (cells) => `| ${cells.join(' | ')} |`
  return [
    line(head),
    line(a.map((x) => (x === 'r' ? '---:' : ':---'))),
    ...rows.map((r) => line(r)),
  ].join('\n')
}

/**
 * Node 20 has no `Symbol.metadata`; TypeScript's standard-decorator output only creates
 * `context.metadata` objects when it exists, so define it (as the proposal's polyfills do) before
 * any decorated class is evaluated. Importing `@portcullis/core` is enough.
 * @internal
 */
const symbols = Symbol as unknown as { metadata?: symbol }
symbols.metadata ??= Symbol.for('Symbol.metadata')

/** The `Symbol.metadata` in use. */
export const METADATA_SYMBOL: symbol = symbols.metadata

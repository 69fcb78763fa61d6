/**
 * Option-name lists typed against their interface: a name the interface lacks, or a key of the
 * interface the list leaves out, fails the build, so the unknown-key warning cannot drift from the
 * options it guards.
 * @packageDocumentation
 */

/** `unknown` when `TNames` names every key of `TOptions`; else a type naming the keys left out. */
export type CoversAll<TOptions, TNames extends readonly unknown[]> = [
  Exclude<keyof TOptions, TNames[number]>,
] extends [never]
  ? unknown
  : { readonly missing: Exclude<keyof TOptions, TNames[number]> }

/** Takes a list of names of `TOptions` and returns it, once the compiler saw that it has them all. */
export type OptionNameList<TOptions> = <const TNames extends readonly (keyof TOptions & string)[]>(
  names: TNames & CoversAll<TOptions, TNames>,
) => TNames

/**
 * Returns a function that returns the list it is given, after the compiler checked that the list
 * names every key of `TOptions` and nothing else. Curried so that `TOptions` is written and the
 * list's own type is inferred: `optionNames<AuditOptions>()(['sinks', 'level', ...])`.
 */
export function optionNames<TOptions>(): OptionNameList<TOptions> {
  return ((names: readonly string[]) => names) as OptionNameList<TOptions>
}

// The packaging checks, as functions that the real run (packaging.test.ts) and the tests proving
// they can fail (checks.test.ts) share: pack, look inside a tarball, lint it with publint and
// @arethetypeswrong, and install tarballs into a consumer project without the network.
import { execFile, type ExecFileOptions } from 'node:child_process'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { pathToFileURL } from 'node:url'
import { publint } from 'publint'
import { formatMessage } from 'publint/utils'
import ts from 'typescript'

/** The repository root (this file is test/packaging/check.ts). */
export const REPO = resolve(import.meta.dirname, '..', '..')

/** The fields of a package.json the checks read. */
export interface Manifest {
  readonly name: string
  readonly version: string
  readonly main?: string
  readonly types?: string
  readonly exports?: unknown
  readonly bin?: string | Readonly<Record<string, string>>
  readonly dependencies?: Readonly<Record<string, string>>
  readonly optionalDependencies?: Readonly<Record<string, string>>
  readonly peerDependencies?: Readonly<Record<string, string>>
  readonly peerDependenciesMeta?: Readonly<Record<string, { readonly optional?: boolean }>>
  readonly engines?: Readonly<Record<string, string>>
  readonly license?: string
}

/** One packed package: its tarball and the tarball's contents unpacked beside it. */
export interface PackedPackage {
  readonly name: string
  /** The tarball npm wrote. */
  readonly tarball: string
  /** npm's integrity of the tarball (sha512). */
  readonly integrity: string
  /** The unpacked tarball (its `package/` folder). */
  readonly dir: string
  /** The package.json inside the tarball. */
  readonly manifest: Manifest
}

/** Output of a finished command. */
export interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command to its end; never rejects for a non-zero exit code (the caller checks `code`). */
export function run(
  file: string,
  args: readonly string[],
  options: ExecFileOptions & { readonly input?: string } = {},
): Promise<Run> {
  return new Promise((done, fail) => {
    const child = execFile(
      file,
      args,
      { maxBuffer: 64 * 1024 * 1024, encoding: 'utf8', ...options },
      (error, stdout, stderr) => {
        if (error !== null && typeof error.code !== 'number') fail(error)
        else
          done({
            code: error === null ? 0 : (error.code as number),
            stdout: String(stdout),
            stderr: String(stderr),
          })
      },
    )
    child.stdin?.end(options.input ?? '')
  })
}

/**
 * The environment for a child `npm`: without the `npm_*` variables an enclosing `npm test` sets
 * (its lifecycle, package and per-run settings such as `npm_config_local_prefix`), so that the
 * child works on the folder it is started in. Where the cache, registry and npmrc files are stays.
 */
function npmEnv(): NodeJS.ProcessEnv {
  const keep = /^npm_config_(cache|registry|userconfig|globalconfig|cafile)$/i
  return Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) || keep.test(k)),
  )
}

async function npm(args: readonly string[], cwd: string): Promise<Run> {
  return mustRun('npm', args, { cwd, env: npmEnv() })
}

async function mustRun(file: string, args: readonly string[], options: ExecFileOptions = {}) {
  const r = await run(file, args, options)
  if (r.code !== 0)
    throw new Error(`${file} ${args.join(' ')} exited with ${r.code}\n${r.stderr}\n${r.stdout}`)
  return r
}

/** The folders under packages/ (each publishes `@portcullis/<folder>`). */
export function packageFolders(): string[] {
  return readdirSync(join(REPO, 'packages'), { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(REPO, 'packages', d.name, 'package.json')))
    .map((d) => join(REPO, 'packages', d.name))
    .sort()
}

interface NpmPackResult {
  readonly name: string
  readonly filename: string
  readonly integrity: string
}

/**
 * `npm pack` of each folder into `destination` (one npm run for all of them), then unpacks every
 * tarball into `destination/unpacked/<tarball name>/package`.
 */
export async function packPackages(
  folders: readonly string[],
  destination: string,
): Promise<PackedPackage[]> {
  await mkdir(destination, { recursive: true })
  const inRepo = folders.every((f) => !relative(REPO, f).startsWith('..'))
  // Workspaces are packed from the root in one run; a folder elsewhere (the copies the negative
  // tests break on purpose) is packed as a plain folder.
  const args = inRepo
    ? [
        'pack',
        '--json',
        '--pack-destination',
        destination,
        ...folders.map((f) => `--workspace=${f}`),
      ]
    : ['pack', '--json', '--pack-destination', destination, ...folders]
  const r = await npm(args, inRepo ? REPO : destination)
  const results = JSON.parse(r.stdout) as NpmPackResult[]
  const packed: PackedPackage[] = []
  for (const result of results) {
    const tarball = join(destination, result.filename)
    const root = join(destination, 'unpacked', result.filename.replace(/\.tgz$/, ''))
    await mkdir(root, { recursive: true })
    await mustRun('tar', ['-xzf', tarball, '-C', root])
    const dir = join(root, 'package')
    const manifest = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as Manifest
    packed.push({ name: result.name, tarball, integrity: result.integrity, dir, manifest })
  }
  return packed
}

/** Every string target of an `exports` value (conditions and fallbacks, at any depth). */
function exportTargets(value: unknown): string[] {
  if (typeof value === 'string') return [value]
  if (Array.isArray(value)) return value.flatMap(exportTargets)
  if (typeof value === 'object' && value !== null)
    return Object.values(value).flatMap(exportTargets)
  return []
}

/** The `exports` map as subpath → value (a bare string or conditions object means `.`). */
function exportsMap(manifest: Manifest): Record<string, unknown> {
  const exports = manifest.exports
  if (exports === undefined) return {}
  if (typeof exports === 'string' || Array.isArray(exports)) return { '.': exports }
  const map = exports as Record<string, unknown>
  return Object.keys(map).every((k) => k.startsWith('.')) ? map : { '.': map }
}

/**
 * The specifiers a user imports: the package name for `.` and `name/sub` for each other key of
 * `exports`, except `./package.json`. Patterns (`./*`) are refused: we publish none, and this
 * list must stay exact.
 */
export function entryPoints(manifest: Manifest): string[] {
  const keys = Object.keys(exportsMap(manifest)).filter((k) => k !== './package.json')
  for (const key of keys)
    if (key.includes('*')) throw new Error(`${manifest.name}: exports pattern ${key} is not listed`)
  return keys.map((k) => (k === '.' ? manifest.name : `${manifest.name}/${k.slice(2)}`))
}

/** Every file the manifest names through `exports`, `main`, `types` and `bin`, with its field. */
export function namedFiles(manifest: Manifest): { field: string; file: string }[] {
  const out: { field: string; file: string }[] = []
  for (const [key, value] of Object.entries(exportsMap(manifest)))
    for (const file of exportTargets(value)) out.push({ field: `exports["${key}"]`, file })
  if (manifest.main !== undefined) out.push({ field: 'main', file: manifest.main })
  if (manifest.types !== undefined) out.push({ field: 'types', file: manifest.types })
  const bin = manifest.bin
  if (typeof bin === 'string') out.push({ field: 'bin', file: bin })
  else if (bin !== undefined)
    for (const [name, file] of Object.entries(bin)) out.push({ field: `bin.${name}`, file })
  return out
}

/**
 * What a published package must hold: LICENSE (the root LICENSE, byte for byte), README.md,
 * package.json, every file named by `exports`, `main`, `types` and `bin`, and bins that start with
 * a `node` shebang. Returns one line per problem; `[]` when all is well.
 */
export function checkContents(dir: string, license: string): string[] {
  const problems: string[] = []
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest
  const where = manifest.name
  for (const file of ['LICENSE', 'README.md', 'package.json'])
    if (!existsSync(join(dir, file))) problems.push(`${where}: ${file} is not in the tarball`)
  if (existsSync(join(dir, 'LICENSE')) && readFileSync(join(dir, 'LICENSE'), 'utf8') !== license)
    problems.push(`${where}: LICENSE differs from the repository's LICENSE`)
  for (const { field, file } of namedFiles(manifest)) {
    const path = resolve(dir, file)
    if (!path.startsWith(dir + sep)) problems.push(`${where}: ${field} ${file} leaves the package`)
    else if (!existsSync(path))
      problems.push(`${where}: ${field} names ${file}, not in the tarball`)
    else if (
      field.startsWith('bin') &&
      !readFileSync(path, 'utf8').startsWith('#!/usr/bin/env node\n')
    )
      problems.push(`${where}: ${field} ${file} does not start with #!/usr/bin/env node`)
  }
  return problems
}

interface SourceMap {
  readonly sourceRoot?: string
  readonly sources?: readonly string[]
  readonly sourcesContent?: readonly (string | null)[]
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? walk(join(dir, d.name)) : [join(dir, d.name)],
  )
}

/**
 * Every shipped `.map` file: each of its `sources` must be a file inside the package, unless the
 * map carries that source's text in `sourcesContent`. Returns one line per problem.
 */
export function checkSourceMaps(dir: string): { maps: number; problems: string[] } {
  const problems: string[] = []
  const maps = walk(dir)
    .filter((f) => f.endsWith('.map'))
    .sort()
  for (const map of maps) {
    const name = relative(dir, map)
    let parsed: SourceMap
    try {
      parsed = JSON.parse(readFileSync(map, 'utf8')) as SourceMap
    } catch (error) {
      problems.push(`${name}: not JSON (${(error as Error).message})`)
      continue
    }
    if (!Array.isArray(parsed.sources) || parsed.sources.length === 0) {
      problems.push(`${name}: no sources`)
      continue
    }
    parsed.sources.forEach((source, i) => {
      if (typeof parsed.sourcesContent?.[i] === 'string') return
      const path = resolve(dirname(map), parsed.sourceRoot ?? '', source)
      if (!path.startsWith(dir + sep))
        problems.push(`${name}: source ${source} is outside the package`)
      else if (!existsSync(path)) problems.push(`${name}: source ${source} is not in the tarball`)
    })
  }
  return { maps: maps.length, problems }
}

/** publint on the tarball itself (what npm would publish): every message, suggestions included. */
export async function runPublint(
  tarball: string,
): Promise<{ type: 'error' | 'warning' | 'suggestion'; text: string }[]> {
  const data = await readFile(tarball)
  const buffer = data.buffer.slice(
    data.byteOffset,
    data.byteOffset + data.byteLength,
  ) as ArrayBuffer
  const { messages, pkg } = await publint({ pack: { tarball: buffer }, level: 'suggestion' })
  return messages.map((m) => ({
    type: m.type,
    text: `${String(pkg.name)}: ${m.code}: ${formatMessage(m, pkg, { color: false }) ?? ''}`,
  }))
}

interface AttwProblem {
  readonly kind: string
  readonly entrypoint?: string
  readonly resolutionKind?: string
}

interface AttwCore {
  createPackageFromTarballData(data: Uint8Array): unknown
  checkPackage(pkg: unknown): Promise<{
    readonly types: false | { readonly kind: string }
    readonly problems: readonly AttwProblem[]
  }>
}

/** The resolution kinds attw's `--profile esm-only` ignores (@arethetypeswrong/cli profiles.js). */
export const ATTW_ESM_ONLY_IGNORED = ['node10', 'node16-cjs']

let attwCore: Promise<AttwCore> | undefined

/**
 * @arethetypeswrong's check of a tarball with the `esm-only` profile: the problems the CLI
 * (`attw <tarball> --profile esm-only`) would fail on. It runs attw's own engine in this process
 * (the `@arethetypeswrong/core` that `@arethetypeswrong/cli` depends on) because loading its
 * TypeScript once instead of once per package saves most of the time.
 */
export async function runAttw(tarball: string): Promise<string[]> {
  attwCore ??= (async () => {
    const cli = createRequire(import.meta.url).resolve('@arethetypeswrong/cli/package.json')
    const core = createRequire(cli).resolve('@arethetypeswrong/core')
    return (await import(pathToFileURL(core).href)) as AttwCore
  })()
  const core = await attwCore
  const analysis = await core.checkPackage(
    core.createPackageFromTarballData(new Uint8Array(await readFile(tarball))),
  )
  if (analysis.types === false) return [`${tarball}: ships no types`]
  return analysis.problems
    .filter(
      (p) => p.resolutionKind === undefined || !ATTW_ESM_ONLY_IGNORED.includes(p.resolutionKind),
    )
    .map((p) => `${p.kind} at ${p.entrypoint ?? '?'} (${p.resolutionKind ?? 'every resolution'})`)
}

interface LockEntry {
  readonly version?: string
  readonly resolved?: string
  readonly integrity?: string
  readonly link?: boolean
  readonly dependencies?: Readonly<Record<string, string>>
  readonly optionalDependencies?: Readonly<Record<string, string>>
  readonly peerDependencies?: Readonly<Record<string, string>>
  readonly peerDependenciesMeta?: Readonly<Record<string, { readonly optional?: boolean }>>
  readonly [field: string]: unknown
}

interface Lockfile {
  readonly packages: Readonly<Record<string, LockEntry>>
}

/** `node_modules/a/node_modules/b` → `b` */
function nameAt(path: string): string {
  return path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length)
}

/**
 * A package.json and package-lock.json for a consumer project that depends on `tarballs` plus
 * `extras` (names installed at the repository's root, e.g. the frameworks the adapters need as
 * peers), every third-party version pinned to what the repository's own lockfile installed.
 *
 * This is what makes the install work offline: npm 11 resolves a new dependency from the full
 * registry document, which its cache does not hold; from a complete lockfile `npm ci` needs only
 * the tarballs, which are cached. npm still checks every range of the packed package.json files
 * against the pinned versions, so a range that the tested versions do not satisfy fails the
 * install. Only the paths the consumer needs are copied, found as Node finds them (the nearest
 * `node_modules` first), so a dependency a package forgot to declare is missing there.
 */
export function consumerLockfile(options: {
  readonly tarballs: readonly PackedPackage[]
  readonly extras: readonly string[]
  /** Where the tarballs are referenced from: the consumer project's folder. */
  readonly consumerDir: string
  readonly registry?: string
}): { packageJson: object; lockfile: object } {
  const root = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as Lockfile
  const registry = (options.registry ?? 'https://registry.npmjs.org/').replace(/\/?$/, '/')
  const byName = new Map(options.tarballs.map((t) => [t.name, t]))
  const packages: Record<string, LockEntry> = {}
  const rootDependencies: Record<string, string> = {}

  // A workspace lives at packages/<folder> in the repository's lockfile and at
  // node_modules/<name> in the consumer's.
  const workspacePath = new Map<string, string>()
  for (const [path, entry] of Object.entries(root.packages))
    if (
      path.startsWith('node_modules/') &&
      entry.link === true &&
      typeof entry.resolved === 'string'
    )
      workspacePath.set(nameAt(path), entry.resolved)

  const find = (from: string, name: string): string | undefined => {
    for (let at = from; ;) {
      const candidate = `${at === '' ? '' : `${at}/`}node_modules/${name}`
      if (root.packages[candidate] !== undefined) return candidate
      if (at === '') return undefined
      const cut = at.lastIndexOf('/node_modules/')
      at = cut === -1 ? '' : at.slice(0, cut)
    }
  }
  const toConsumer = (path: string): string => {
    for (const [name, folder] of workspacePath)
      if (path === folder || path.startsWith(`${folder}/`))
        return `node_modules/${name}${path.slice(folder.length)}`
    return path
  }

  const visit = (from: string, name: string, optional: boolean): void => {
    const tarball = byName.get(name)
    if (tarball !== undefined) {
      const at = `node_modules/${name}`
      if (packages[at] !== undefined) return
      const m = tarball.manifest
      packages[at] = {
        version: m.version,
        resolved: `file:${relative(options.consumerDir, tarball.tarball)}`,
        integrity: tarball.integrity,
        ...pick(m, [
          'license',
          'dependencies',
          'optionalDependencies',
          'peerDependencies',
          'peerDependenciesMeta',
          'bin',
          'engines',
        ]),
      }
      follow(workspacePath.get(name) ?? at, m)
      return
    }
    const path = find(from, name)
    if (path === undefined) {
      if (optional) return
      throw new Error(`${name} (needed from ${from || 'the root'}) is not in package-lock.json`)
    }
    const entry = root.packages[path] as LockEntry
    if (entry.link === true) throw new Error(`${name} is a workspace that was not packed`)
    const at = toConsumer(path)
    if (packages[at] !== undefined) return
    // The consumer installs for production what the repository installed for development; an
    // `optional` flag stays (reached only through optional dependencies there and here, so npm
    // may skip it, e.g. on another platform).
    const { dev: _dev, devOptional: _devOptional, peer: _peer, ...kept } = entry
    // npm aliases (`express4: npm:express@4`) keep the real name in `name`.
    const real = typeof entry.name === 'string' ? entry.name : name
    const base = real.slice(real.lastIndexOf('/') + 1)
    const resolved = entry.resolved ?? `${registry}${real}/-/${base}-${entry.version}.tgz`
    packages[at] = { ...kept, resolved }
    follow(path, entry)
  }
  const follow = (
    from: string,
    entry: Pick<
      LockEntry,
      'dependencies' | 'optionalDependencies' | 'peerDependencies' | 'peerDependenciesMeta'
    >,
  ): void => {
    for (const name of Object.keys(entry.dependencies ?? {})) visit(from, name, false)
    for (const name of Object.keys(entry.optionalDependencies ?? {})) visit(from, name, true)
    // npm installs peers that are not optional; optional ones only when something else needs them.
    for (const name of Object.keys(entry.peerDependencies ?? {}))
      if (entry.peerDependenciesMeta?.[name]?.optional !== true) visit(from, name, false)
  }

  for (const t of options.tarballs) {
    rootDependencies[t.name] = `file:${relative(options.consumerDir, t.tarball)}`
    visit('', t.name, false)
  }
  for (const name of options.extras) {
    const path = find('', name)
    const version = path === undefined ? undefined : root.packages[path]?.version
    if (version === undefined) throw new Error(`${name} is not installed at the repository root`)
    rootDependencies[name] = version
    visit('', name, false)
  }
  const packageJson = {
    name: 'portcullis-packaging-consumer',
    version: '0.0.0',
    private: true,
    dependencies: rootDependencies,
  }
  const lockfile = {
    name: packageJson.name,
    version: packageJson.version,
    lockfileVersion: 3,
    requires: true,
    packages: { '': { ...packageJson, private: undefined }, ...sortKeys(packages) },
  }
  return { packageJson, lockfile }
}

function pick(object: object, keys: readonly string[]): Record<string, unknown> {
  const source = object as Record<string, unknown>
  return Object.fromEntries(keys.filter((k) => source[k] !== undefined).map((k) => [k, source[k]]))
}

function sortKeys<TValue>(object: Record<string, TValue>): Record<string, TValue> {
  return Object.fromEntries(Object.entries(object).sort(([a], [b]) => (a < b ? -1 : 1)))
}

/**
 * Creates a consumer project in `dir` and installs `tarballs` and `extras` into it with
 * `npm ci --offline` (see {@link consumerLockfile}). Install scripts are skipped: they would
 * fetch or compile better-sqlite3's native addon; {@link copyNativeAddon} brings the one built
 * here instead.
 */
export async function installConsumer(
  dir: string,
  tarballs: readonly PackedPackage[],
  extras: readonly string[],
): Promise<Run> {
  // `npm ci` empties node_modules where it runs: never in the repository.
  if (!relative(REPO, resolve(dir)).startsWith('..'))
    throw new Error(`${dir} is inside the repository`)
  await mkdir(dir, { recursive: true })
  const registry = (await npm(['config', 'get', 'registry'], dir)).stdout.trim()
  const { packageJson, lockfile } = consumerLockfile({
    tarballs,
    extras,
    consumerDir: dir,
    registry,
  })
  await writeFile(join(dir, 'package.json'), `${JSON.stringify(packageJson, null, 2)}\n`)
  await writeFile(join(dir, 'package-lock.json'), `${JSON.stringify(lockfile, null, 2)}\n`)
  const args = [
    'ci',
    '--offline',
    '--no-audit',
    '--no-fund',
    '--ignore-scripts',
    '--loglevel=error',
  ]
  const r = await run('npm', args, { cwd: dir, env: npmEnv() })
  if (r.code === 0) return r
  const hint = r.stderr.includes('ENOTCACHED')
    ? "npm's cache lacks a tarball that package-lock.json names: `npm ci` in the repository " +
      'fills it (with the network), then run this again.\n'
    : ''
  throw new Error(`npm ${args.join(' ')} in ${dir} exited with ${r.code}\n${hint}${r.stderr}`)
}

/**
 * Copies better-sqlite3's native addon built in this repository into a consumer's better-sqlite3
 * (the same version, pinned by {@link consumerLockfile}): what its install script would have built.
 */
export async function copyNativeAddon(consumerDir: string): Promise<void> {
  const from = join(
    REPO,
    'node_modules',
    'better-sqlite3',
    'build',
    'Release',
    'better_sqlite3.node',
  )
  const to = join(consumerDir, 'node_modules', 'better-sqlite3', 'build', 'Release')
  await mkdir(to, { recursive: true })
  await cp(from, join(to, 'better_sqlite3.node'))
}

/**
 * Compiles a consumer project with the repository's TypeScript (its compiler API, one program per
 * tsconfig) and returns the errors in the consumer's own files and in our packages' `.d.ts` files,
 * which are checked in full (as with `skipLibCheck: false`). Other packages' declarations are not
 * checked: that costs most of the time, and it reports clashes between third-party types that no
 * change of ours can fix (e.g. @types/koa against the content-disposition 2 that a neighbouring
 * package hoists, which ships its own types without `Options`). Emits unless `noEmit` is set.
 */
export function compileConsumer(tsconfig: string): string[] {
  const problems: ts.Diagnostic[] = []
  const config = ts.getParsedCommandLineOfConfigFile(
    tsconfig,
    { skipLibCheck: false },
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => void problems.push(d),
    },
  )
  if (config === undefined) return problems.map(formatDiagnostic)
  const program = ts.createProgram({ rootNames: config.fileNames, options: config.options })
  problems.push(
    ...config.errors,
    ...program.getOptionsDiagnostics(),
    ...program.getGlobalDiagnostics(),
  )
  for (const file of program.getSourceFiles()) {
    const path = file.fileName
    if (path.includes('/node_modules/') && !path.includes('/node_modules/@portcullis/')) continue
    problems.push(...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file))
  }
  // One file at a time: emit() without one would first check every file, libraries included.
  if (config.options.noEmit !== true)
    for (const root of config.fileNames)
      problems.push(...program.emit(program.getSourceFile(root)).diagnostics)
  return problems.map(formatDiagnostic)
}

function formatDiagnostic(d: ts.Diagnostic): string {
  const text = ts.flattenDiagnosticMessageText(d.messageText, '\n')
  if (d.file === undefined || d.start === undefined) return `TS${d.code}: ${text}`
  const { line, character } = d.file.getLineAndCharacterOfPosition(d.start)
  return `${d.file.fileName}(${line + 1},${character + 1}): TS${d.code}: ${text}`
}

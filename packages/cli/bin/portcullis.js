#!/usr/bin/env node
// The `portcullis` executable that npm links into node_modules/.bin. It is committed, not built:
// npm links bins when it installs, before any build, so a bin inside dist/ would never be linked
// in a fresh clone. It only runs the compiled command line (dist/bin.js).
import { existsSync } from 'node:fs'

const program = new URL('../dist/bin.js', import.meta.url)
if (existsSync(program)) {
  await import(program.href)
} else {
  // Only a checkout before `npm run build` gets here: published packages always hold dist/.
  process.stderr.write('portcullis: dist/bin.js is missing; run `npm run build` first\n')
  process.exitCode = 1
}

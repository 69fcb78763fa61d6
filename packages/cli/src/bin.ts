#!/usr/bin/env node
// The `portcullis` executable: runs the command line and sets the exit code (0 ok, 1 failure,
// 2 usage error). Setting `process.exitCode` rather than calling `process.exit()` lets pending
// output drain.
import { runCli } from './program.js'

process.exitCode = await runCli(process.argv.slice(2))

// The command-line program: runs it and sets the exit code (0 ok, 1 failure, 2 usage error).
// npm links `bin/portcullis.js` (committed, so it exists before the build), which imports this
// file. Setting `process.exitCode` rather than calling `process.exit()` lets pending output drain.
import { runCli } from './program.js'

process.exitCode = await runCli(process.argv.slice(2))

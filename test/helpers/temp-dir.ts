// A fresh temporary folder per test, removed after it.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * Registers `beforeEach`/`afterEach` hooks (call it inside a `describe`): before each test a new
 * folder `<tmp>/<prefix>XXXXXX` is made and handed to `use`; after it, the folder is removed.
 */
export function useTempDir(prefix: string, use: (dir: string) => void): void {
  let dir: string | undefined
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix))
    use(dir)
  })
  afterEach(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
    dir = undefined
  })
}

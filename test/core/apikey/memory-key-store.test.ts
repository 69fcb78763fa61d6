import { createMemoryKeyStore } from '@portcullis/core'
import { describeKeyStoreConformance } from '../../helpers/key-store-conformance.js'

describeKeyStoreConformance('createMemoryKeyStore', async () => ({
  store: createMemoryKeyStore(),
  cleanup: async () => {},
}))

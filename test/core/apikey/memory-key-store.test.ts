import { createMemoryKeyStore } from '@gatehouse/core'
import { describeKeyStoreConformance } from '../../helpers/key-store-conformance.js'

describeKeyStoreConformance('createMemoryKeyStore', async () => ({
  store: createMemoryKeyStore(),
  cleanup: async () => {},
}))

// The limit-backend conformance suite on the memory backend (its windows on the injected clock).
import { createMemoryBackend } from '@portcullis/core'
import { describeLimitBackendConformance } from '../../helpers/limit-backend-conformance.js'

describeLimitBackendConformance('memory backend', {
  backend: (clock) => createMemoryBackend({ now: clock }),
  injectedClock: true,
})

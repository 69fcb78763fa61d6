import type { Principal } from '@portcullis/core'

/** A principal as an authenticator would build it. */
export function principal(
  id: string,
  roles: readonly string[] = [],
  attributes: Record<string, unknown> = {},
  scopes: readonly string[] = [],
): Principal {
  return { id, method: 'jwt', roles, scopes, attributes } as unknown as Principal
}

/** Tue 2026-11-24 10:30 UTC. */
export const TUESDAY_MORNING = Date.UTC(2026, 10, 24, 10, 30)

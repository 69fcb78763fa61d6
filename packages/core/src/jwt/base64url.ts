/**
 * Canonical base64url (RFC 4648 §5, no padding) as JWS requires (RFC 7515 §2).
 * @internal
 */

/**
 * Decodes `text` only if it is canonical base64url: the alphabet `A-Z a-z 0-9 - _`, no padding,
 * and zero unused trailing bits, so that each byte string has exactly one accepted encoding.
 * `Buffer.from(x, 'base64url')` skips invalid characters silently; re-encoding and comparing
 * catches those, padding and non-zero trailing bits in one check. Returns `undefined` otherwise.
 */
export function decodeBase64urlStrict(text: string): Buffer | undefined {
  if (text.length % 4 === 1) return undefined
  const bytes = Buffer.from(text, 'base64url')
  return bytes.toString('base64url') === text ? bytes : undefined
}

/** Encodes bytes or a UTF-8 string as base64url without padding. */
export function encodeBase64url(data: Uint8Array | string): string {
  return (typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data)).toString(
    'base64url',
  )
}

/**
 * Canonical base64url (RFC 4648 §5, no padding) as JWS requires (RFC 7515 §2).
 * @internal
 */

/**
 * Decodes `text` only if it is canonical base64url: the alphabet `A-Z a-z 0-9 - _`, no padding,
 * and zero unused trailing bits, so that each byte string has exactly one accepted encoding.
 * `Buffer.from(x, 'base64url')` skips invalid characters silently, so the alphabet (no `=`, `+`,
 * `/`) and the unused bits of the last character are checked first, without a re-encode.
 * Returns `undefined` otherwise.
 */
export function decodeBase64urlStrict(text: string): Buffer | undefined {
  const rem = text.length % 4
  if (rem === 1 || !ALPHABET.test(text)) return undefined
  if (rem !== 0) {
    // The last character carries 4 (rem 2) or 2 (rem 3) unused low bits, which must be zero.
    const last = VALUES.indexOf(text[text.length - 1] as string)
    if ((last & (rem === 2 ? 0x0f : 0x03)) !== 0) return undefined
  }
  return Buffer.from(text, 'base64url')
}

const ALPHABET = /^[A-Za-z0-9_-]*$/
const VALUES = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/** Encodes bytes or a UTF-8 string as base64url without padding. */
export function encodeBase64url(data: Uint8Array | string): string {
  return (typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data)).toString(
    'base64url',
  )
}

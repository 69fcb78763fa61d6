/**
 * A strict JSON parser for untrusted token segments (RFC 8259 + RFC 7515 §5.2 / RFC 8725 §3.2
 * expectations): rejects duplicate member names, a byte-order mark, invalid UTF-8, trailing data
 * and excessive nesting; defines `__proto__` as an own property, so it is an ordinary key.
 *
 * `JSON.parse` silently keeps the last of duplicate keys, which lets two parsers disagree about
 * a token's claims; no small, maintained library rejects duplicates, hence this file.
 * @internal
 */

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Thrown for malformed input; carries no input excerpt (it may be a secret). */
export class StrictJsonError extends Error {
  override readonly name = 'StrictJsonError'
}

/** Maximum nesting of arrays and objects. */
const MAX_DEPTH = 32

/** Decodes UTF-8 bytes strictly and parses them. */
export function parseStrictJsonBytes(bytes: Uint8Array): unknown {
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    throw new StrictJsonError('byte-order mark')
  }
  let text: string
  try {
    text = decoder.decode(bytes)
  } catch {
    throw new StrictJsonError('invalid UTF-8')
  }
  return parseStrictJson(text)
}

/** Parses a JSON text strictly. */
export function parseStrictJson(text: string): unknown {
  const p = new Parser(text)
  p.ws()
  const value = p.value(0)
  p.ws()
  if (p.i !== text.length) throw new StrictJsonError('trailing data')
  return value
}

class Parser {
  i = 0
  constructor(readonly s: string) {}

  ws(): void {
    const s = this.s
    let c = s.charCodeAt(this.i)
    while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = s.charCodeAt(++this.i)
  }

  value(depth: number): unknown {
    const c = this.s.charCodeAt(this.i)
    if (c === 0x22) return this.string()
    if (c === 0x7b) return this.object(depth + 1)
    if (c === 0x5b) return this.array(depth + 1)
    if (c === 0x74) return this.literal('true', true)
    if (c === 0x66) return this.literal('false', false)
    if (c === 0x6e) return this.literal('null', null)
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number()
    throw new StrictJsonError('unexpected character')
  }

  literal<T>(word: string, v: T): T {
    if (!this.s.startsWith(word, this.i)) throw new StrictJsonError('invalid literal')
    this.i += word.length
    return v
  }

  number(): number {
    const s = this.s
    const start = this.i
    if (s.charCodeAt(this.i) === 0x2d) this.i++
    let c = s.charCodeAt(this.i)
    if (c === 0x30) {
      c = s.charCodeAt(++this.i)
    } else if (c >= 0x31 && c <= 0x39) {
      do c = s.charCodeAt(++this.i)
      while (c >= 0x30 && c <= 0x39)
    } else throw new StrictJsonError('invalid number')
    if (c === 0x2e) {
      c = s.charCodeAt(++this.i)
      if (!(c >= 0x30 && c <= 0x39)) throw new StrictJsonError('invalid number')
      do c = s.charCodeAt(++this.i)
      while (c >= 0x30 && c <= 0x39)
    }
    if (c === 0x65 || c === 0x45) {
      c = s.charCodeAt(++this.i)
      if (c === 0x2b || c === 0x2d) c = s.charCodeAt(++this.i)
      if (!(c >= 0x30 && c <= 0x39)) throw new StrictJsonError('invalid number')
      do c = s.charCodeAt(++this.i)
      while (c >= 0x30 && c <= 0x39)
    }
    return Number(s.slice(start, this.i))
  }

  string(): string {
    const s = this.s
    const start = ++this.i
    // Fast path: no escapes.
    for (let j = start; j < s.length; j++) {
      const c = s.charCodeAt(j)
      if (c === 0x22) {
        this.i = j + 1
        return s.slice(start, j)
      }
      if (c === 0x5c) break
      if (c < 0x20) throw new StrictJsonError('control character in string')
    }
    let out = ''
    let j = start
    for (;;) {
      if (j >= s.length) throw new StrictJsonError('unterminated string')
      const c = s.charCodeAt(j)
      if (c === 0x22) {
        this.i = j + 1
        return out
      }
      if (c < 0x20) throw new StrictJsonError('control character in string')
      if (c !== 0x5c) {
        out += s[j]
        j++
        continue
      }
      const e = s.charCodeAt(j + 1)
      j += 2
      switch (e) {
        case 0x22:
          out += '"'
          break
        case 0x5c:
          out += '\\'
          break
        case 0x2f:
          out += '/'
          break
        case 0x62:
          out += '\b'
          break
        case 0x66:
          out += '\f'
          break
        case 0x6e:
          out += '\n'
          break
        case 0x72:
          out += '\r'
          break
        case 0x74:
          out += '\t'
          break
        case 0x75: {
          const hex = s.slice(j, j + 4)
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new StrictJsonError('invalid unicode escape')
          out += String.fromCharCode(parseInt(hex, 16))
          j += 4
          break
        }
        default:
          throw new StrictJsonError('invalid escape')
      }
    }
  }

  array(depth: number): unknown[] {
    if (depth > MAX_DEPTH) throw new StrictJsonError('nesting too deep')
    this.i++
    const out: unknown[] = []
    this.ws()
    if (this.s.charCodeAt(this.i) === 0x5d) {
      this.i++
      return out
    }
    for (;;) {
      this.ws()
      out.push(this.value(depth))
      this.ws()
      const c = this.s.charCodeAt(this.i++)
      if (c === 0x5d) return out
      if (c !== 0x2c) throw new StrictJsonError('expected , or ]')
    }
  }

  object(depth: number): Record<string, unknown> {
    if (depth > MAX_DEPTH) throw new StrictJsonError('nesting too deep')
    this.i++
    // A plain object keeps V8's fast properties; `__proto__` is defined as an own data property
    // below, so it can never become the object's prototype.
    const out: Record<string, unknown> = {}
    this.ws()
    if (this.s.charCodeAt(this.i) === 0x7d) {
      this.i++
      return out
    }
    for (;;) {
      this.ws()
      if (this.s.charCodeAt(this.i) !== 0x22) throw new StrictJsonError('expected member name')
      const key = this.string()
      if (Object.hasOwn(out, key)) throw new StrictJsonError('duplicate member name')
      this.ws()
      if (this.s.charCodeAt(this.i++) !== 0x3a) throw new StrictJsonError('expected :')
      this.ws()
      const value = this.value(depth)
      if (key === '__proto__') {
        Object.defineProperty(out, key, {
          value,
          enumerable: true,
          writable: true,
          configurable: true,
        })
      } else out[key] = value
      this.ws()
      const c = this.s.charCodeAt(this.i++)
      if (c === 0x7d) return out
      if (c !== 0x2c) throw new StrictJsonError('expected , or }')
    }
  }
}

import { expect } from 'chai'
import {
  API_KEY_COLUMNS,
  API_KEY_LIST_FILTERS,
  API_KEY_PATCH_FIELDS,
  AuthError,
  RecordShapeError,
  assertApiKeyUsage,
  createStoredApiKeyCodec,
  isConfigError,
  parseJsonColumn,
  resolveApiKeyListQuery,
  type ApiKeyRecord,
  type StoredApiKeyCodec,
  type UncheckedApiKeyColumns,
} from '@portcullis/core'
import { buildKeyRecord, thrown } from '../../helpers/key-store-conformance.js'

type Row = Record<string, unknown>

/** The codec of a store whose driver already returns decoded values. */
function plainCodec(refuseNul?: boolean): StoredApiKeyCodec<Row> {
  return createStoredApiKeyCodec<Row>({
    table: 'test_api_keys',
    decodeRow: (row) => row as UncheckedApiKeyColumns,
    ...(refuseNul === undefined ? {} : { refuseNul }),
  })
}

function columnsOf(record: ApiKeyRecord): Row {
  const codec = plainCodec()
  return { ...codec.columns(codec.checkInsert(record)) }
}

function isDeeplyFrozen(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return true
  return Object.isFrozen(value) && Object.values(value).every(isDeeplyFrozen)
}

describe('stored key records (createStoredApiKeyCodec)', function () {
  describe('read', function () {
    it('builds a deeply frozen record equal to the one whose columns the row holds', function () {
      const record = buildKeyRecord({
        tags: ['ci'],
        policy: { allowedCidrs: ['10.0.0.0/8'], quota: { limit: 5, period: 'day' } },
      })
      const read = plainCodec().read(columnsOf(record))
      expect(read).to.deep.equal(record)
      expect(isDeeplyFrozen(read)).to.equal(true)
    })

    const corruptions: [string, unknown, RegExp][] = [
      ['id', 5, /id: must be a string, received 5/],
      ['scopes', ['ok', null], /scopes\[1\]: must be a string, received null/],
      ['status', 'paused', /status: must be "active" or "revoked", received "paused"/],
      ['hashes', { not: 'an array' }, /hashes: must be an array, received an object/],
      ['created_at', 1.5, /created_at: must be an integer \(epoch ms\), received 1\.5/],
      ['metadata', [], /metadata: must be an object, received an array/],
      ['policy', { allowedCidrs: 5 }, /policy\.allowedCidrs: must be an array/],
      ['policy', { colour: 'red' }, /policy\.colour: is not a usage policy field/],
      ['environment', 'prod', /environment: must be "live" or "test"/],
      ['usage_count', -1, /usage_count: must be a non-negative integer, received -1/],
    ]
    for (const [column, value, message] of corruptions) {
      it(`fails closed with ERR_KEYSTORE_UNAVAILABLE naming the key, table and column for a bad ${column} (${JSON.stringify(value)})`, function () {
        const record = buildKeyRecord()
        const error = thrown(() => plainCodec().read({ ...columnsOf(record), [column]: value }))
        expect(error).to.be.instanceOf(AuthError)
        expect(error).to.include({ code: 'ERR_KEYSTORE_UNAVAILABLE', reason: 'corrupt row' })
        expect(error.message).to.equal(
          `Corrupt row for key ${JSON.stringify(column === 'id' ? value : record.id)} in test_api_keys: ${(error.cause as Error).message}`,
        )
        expect(error.message).to.match(message)
        expect(error.cause).to.be.instanceOf(RecordShapeError)
        expect((error.cause as RecordShapeError).path.startsWith(column)).to.equal(true)
      })
    }

    it('reports what the row decoder finds (parseJsonColumn, RecordShapeError.mustBe) as a corrupt row', function () {
      const codec = createStoredApiKeyCodec<Row>({
        table: 't',
        decodeRow: (row) => {
          if (typeof row['usage_count'] !== 'number') {
            throw RecordShapeError.mustBe('usage_count', 'a bigint', row['usage_count'])
          }
          return { ...row, scopes: parseJsonColumn('scopes', row['scopes']) } as never
        },
      })
      const columns = columnsOf(buildKeyRecord())
      const badJson = thrown(() => codec.read({ ...columns, scopes: '["a", tru' }))
      expect(badJson).to.include({ code: 'ERR_KEYSTORE_UNAVAILABLE' })
      expect(badJson.message).to.match(/: scopes: is not valid JSON$/)
      const notText = thrown(() => codec.read({ ...columns, scopes: 7 }))
      expect(notText.message).to.match(/: scopes: must be JSON text, received 7$/)
      const bigint = thrown(() => codec.read({ ...columns, scopes: '[]', usage_count: 'x' }))
      expect(bigint.message).to.match(/: usage_count: must be a bigint, received "x"$/)
    })

    it('passes on a decoder failure that is not about the shape of the row', function () {
      const boom = new Error('driver bug')
      const codec = createStoredApiKeyCodec<Row>({
        table: 't',
        decodeRow: () => {
          throw boom
        },
      })
      expect(thrown(() => codec.read({}))).to.equal(boom)
    })
  })

  describe('checkInsert and checkUpdate', function () {
    it('fills absent optional fields with their defaults and shares nothing with the input', function () {
      const input = buildKeyRecord({ metadata: { nested: { a: 1 }, gone: undefined } })
      for (const field of ['tags', 'purpose', 'environment', 'policy', 'rotatedAt'] as const) {
        delete input[field]
      }
      const checked = plainCodec().checkInsert(input)
      expect(checked).to.deep.include({
        tags: [],
        purpose: null,
        environment: 'live',
        policy: {},
        rotatedAt: null,
        metadata: { nested: { a: 1 } },
      })
      expect(checked.metadata['nested']).to.not.equal(input.metadata['nested'])
      expect(isDeeplyFrozen(checked)).to.equal(true)
    })

    it('refuses a record that would not read back with a TypeError naming the field', function () {
      const cases: [Partial<Record<keyof ApiKeyRecord, unknown>>, RegExp][] = [
        [{ id: '' }, /^insert: invalid key record: id: must not be empty$/],
        [{ createdAt: 1.5 }, /^insert: invalid key record: createdAt: /],
        [{ metadata: { when: new Date(0) } }, /metadata\.when: must be JSON data, received a Date/],
        [{ metadata: { ratio: Number.NaN } }, /metadata\.ratio: must be a finite number/],
        [{ hashes: [{ hash: 'h', pepperId: 'p', notAfter: 'soon' }] }, /hashes\[0\]\.notAfter/],
        [{ policy: { quota: { limit: 1, period: 'week' } } }, /policy\.quota\.period/],
        [{ name: 'lone \ud800' }, /name: contains a lone UTF-16 surrogate$/],
      ]
      for (const [overrides, message] of cases) {
        const error = thrown(() => plainCodec().checkInsert(buildKeyRecord(overrides as never)))
        expect(error).to.be.instanceOf(TypeError)
        expect(error.message).to.match(message)
        expect(error.cause).to.be.instanceOf(RecordShapeError)
      }
    })

    it('refuses U+0000 only with refuseNul, and says so', function () {
      const record = buildKeyRecord({ name: 'a\u0000b' })
      expect(plainCodec().checkInsert(record).name).to.equal('a\u0000b')
      expect(thrown(() => plainCodec(true).checkInsert(record)).message).to.equal(
        'insert: invalid key record: name: contains U+0000 or a lone UTF-16 surrogate',
      )
    })

    it('applies only the patchable fields of a patch and checks the result', function () {
      const codec = plainCodec()
      const current = codec.checkInsert(buildKeyRecord())
      const next = codec.checkUpdate(current, {
        name: 'renamed',
        tags: ['a'],
        ...({ id: 'other', ownerId: 'someone' } as object),
      })
      expect(next).to.deep.equal({ ...current, name: 'renamed', tags: ['a'] })
      const error = thrown(() => codec.checkUpdate(current, { scopes: [3] as never }))
      expect(error).to.be.instanceOf(TypeError)
      expect(error.message).to.equal(
        'update: invalid key record: scopes[0]: must be a string, received 3',
      )
      expect(thrown(() => codec.checkUpdate(current, null as never)).message).to.equal(
        'update: invalid key record: patch: must be an object, received null',
      )
    })

    it('lists every record field but the fixed ones as patchable, and the columns in table order', function () {
      // The rest never changes after creation, or only through recordUsage.
      const fixed = [
        'id',
        'prefix',
        'ownerId',
        'createdAt',
        'environment',
        'lastUsedAt',
        'usageCount',
      ]
      expect([...API_KEY_PATCH_FIELDS, ...fixed].sort()).to.deep.equal(
        Object.keys(buildKeyRecord()).sort(),
      )
      expect(Object.keys(columnsOf(buildKeyRecord()))).to.deep.equal([...API_KEY_COLUMNS])
    })
  })

  describe('options', function () {
    it('throws ConfigError naming each bad option', function () {
      const error = thrown(() =>
        createStoredApiKeyCodec({ table: 5, decodeRow: 'no', refuseNul: 'yes' } as never),
      )
      expect(isConfigError(error)).to.equal(true)
      expect(error.message).to.include('table').and.include('decodeRow').and.include('refuseNul')
      const typo = thrown(() =>
        createStoredApiKeyCodec({ table: 't', decodeRow: () => ({}), refuseNull: true } as never),
      )
      expect(isConfigError(typo)).to.equal(true)
      expect(typo.message).to.include('did you mean "refuseNul"')
    })
  })

  describe('resolveApiKeyListQuery', function () {
    const limits = { defaultLimit: 100, maxLimit: 1000 }

    it('orders the filters set (owner, status, tag) and caps the limit', function () {
      expect(resolveApiKeyListQuery({}, limits)).to.deep.equal({
        filters: '',
        values: [],
        limit: 100,
        cursor: '',
      })
      expect(
        resolveApiKeyListQuery(
          { tag: 't', ownerId: 'u' as never, limit: 5000, cursor: 'c' },
          limits,
        ),
      ).to.deep.equal({ filters: 'ot', values: ['u', 't'], limit: 1000, cursor: 'c' })
      expect(API_KEY_LIST_FILTERS).to.include(
        resolveApiKeyListQuery({ ownerId: 'u' as never, status: 'active', tag: 't' }, limits)
          .filters,
      )
    })

    it('refuses a filter of the wrong type, an unknown status and a bad limit', function () {
      const bad: [object, typeof TypeError, RegExp][] = [
        [{ status: 'revoke' }, TypeError, /^list: status must be "active" or "revoked"/],
        [{ ownerId: 5 }, TypeError, /^list: ownerId must be a string/],
        [{ tag: [] }, TypeError, /^list: tag must be a string/],
        [{ cursor: 1 }, TypeError, /^list: cursor must be a string/],
        [{ limit: 0 }, RangeError, /^list: limit must be a positive integer/],
      ]
      for (const [query, type, message] of bad) {
        const error = thrown(() => resolveApiKeyListQuery(query, limits))
        expect(error).to.be.instanceOf(type)
        expect(error.message).to.match(message)
      }
    })
  })

  describe('assertApiKeyUsage', function () {
    it('accepts a well-formed batch and names the first malformed entry', function () {
      expect(() => assertApiKeyUsage([{ id: 'a', lastUsedAt: 1, count: 0 }])).to.not.throw()
      expect(thrown(() => assertApiKeyUsage('x')).message).to.match(/usage must be an array/)
      const error = thrown(() =>
        assertApiKeyUsage([
          { id: 'a', lastUsedAt: 1, count: 1 },
          { id: 'b', lastUsedAt: 1, count: -1 },
        ]),
      )
      expect(error).to.be.instanceOf(TypeError)
      expect(error.message).to.match(/usage\[1\]/)
    })
  })
})

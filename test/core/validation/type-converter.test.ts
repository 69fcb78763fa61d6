import { expect } from 'chai'
import {
  countRawHeader,
  DAY,
  HOUR,
  MINUTE,
  parseDurationMs,
  SECOND,
  singleHeaderValue,
  toHeaderSeconds,
  toQuotedHeaderText,
} from '@portcullis/core'

describe('TypeConverter', () => {
  it('converts durations with units', () => {
    expect(parseDurationMs('500ms')).to.equal(500)
    expect(parseDurationMs('30s')).to.equal(30 * SECOND)
    expect(parseDurationMs('15m')).to.equal(15 * MINUTE)
    expect(parseDurationMs('1h30m')).to.equal(HOUR + 30 * MINUTE)
    expect(parseDurationMs('7d')).to.equal(7 * DAY)
    expect(parseDurationMs('2w')).to.equal(14 * DAY)
    expect(parseDurationMs('1.5s')).to.equal(1500)
    expect(parseDurationMs(250)).to.equal(250)
  })

  it('refuses malformed durations', () => {
    for (const bad of [
      '',
      '15',
      'm',
      '15x',
      '-1s',
      '1h 30m',
      ' ',
      'Infinitys',
      -1,
      Number.NaN,
      Infinity,
      null,
      {},
    ]) {
      expect(parseDurationMs(bad), String(bad)).to.equal(undefined)
    }
  })

  it('reads header values as Node gives them', () => {
    expect(singleHeaderValue(undefined)).to.equal(undefined)
    expect(singleHeaderValue('a')).to.equal('a')
    expect(singleHeaderValue(['a'])).to.equal('a')
    expect(singleHeaderValue(['a', 'b'])).to.equal(undefined)
    expect(
      countRawHeader(['Authorization', 'x', 'Host', 'h', 'authorization', 'y'], 'authorization'),
    ).to.equal(2)
  })

  it('formats header seconds and quoted text safely', () => {
    expect(toHeaderSeconds(1)).to.equal('1')
    expect(toHeaderSeconds(1000)).to.equal('1')
    expect(toHeaderSeconds(1001)).to.equal('2')
    expect(toHeaderSeconds(-5)).to.equal('0')
    expect(toQuotedHeaderText('a "b" \\ c\r\n\u00e9')).to.equal('a \\"b\\" \\\\ c')
  })
})

import assert from 'node:assert/strict';
import { parseDuration, parseSize, reject, tempfail } from '../src/index.js';
import { LineEndingGuard } from '../src/internal.js';

describe('units', () => {
  it('parses sizes with binary multiples and refuses nonsense', () => {
    assert.equal(parseSize('25MB'), 26_214_400);
    assert.equal(parseSize('1.5kb'), 1536);
    assert.equal(parseSize(100), 100);
    assert.equal(parseSize('25XB'), undefined);
    assert.equal(parseSize('-1'), undefined);
  });
  it('parses durations', () => {
    assert.equal(parseDuration('30s'), 30_000);
    assert.equal(parseDuration('5m'), 300_000);
    assert.equal(parseDuration('5d'), 432_000_000);
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('soon'), undefined);
  });
});

describe('verdict helpers', () => {
  it('refuse a reply whose enhanced code does not match its class', () => {
    assert.throws(() => reject(450, '4.7.1', 'x'), /outside 500-599/);
    assert.throws(() => reject(550, '4.7.1', 'x'), /does not match/);
    assert.throws(() => tempfail(451, '5.7.1', 'x'), /does not match/);
    assert.deepEqual(reject(550, '5.7.1', 'no\r\nsecond line'), { kind: 'reject', reply: { code: 550, enhanced: '5.7.1', text: 'no second line' } });
  });
});

describe('LineEndingGuard', () => {
  const ok = (...chunks: string[]) => {
    const g = new LineEndingGuard();
    return chunks.every((c) => g.check(Buffer.from(c, 'latin1'))) && g.finish();
  };
  it('accepts CRLF split across chunks', () => assert.equal(ok('a\r', '\nb\r\n'), true));
  for (const seq of ['\n.\n', '\r.\r', '\n.\r\n', '\r\n.\n', '\r.\r\n', '\r\n.\r', '\n.\r\r\n', '\r\n.\r\r\n']) {
    it(`finds the smuggling sequence ${JSON.stringify(seq)}`, () => assert.equal(ok('Subject: x\r\n\r\nbody' + seq + 'more\r\n'), false));
  }
  it('finds a bare CR at the very end', () => assert.equal(ok('abc\r\n', 'x\r'), false));
});

describe('LineEndingGuard and NUL', () => {
  it('rejects NUL, which a NUL-stripping next hop could turn into an end of data', () => {
    const g = new LineEndingGuard();
    assert.equal(g.check(Buffer.from('a\r\n.\0\r\nb\r\n', 'latin1')), false);
  });
});

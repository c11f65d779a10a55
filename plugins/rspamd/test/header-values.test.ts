import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { checkStream, httpHeaderValue, messageHeaderValue } from '../src/index.js';
import { CaptureRspamd } from './support/capture-rspamd.js';

// smtp-server refuses control characters in HELO, addresses and AUTH names, so no SMTP client can
// send them; the values still pass through here (XCLIENT peers, future sources), and must never crash.
describe('header values', () => {
  it('percent-encodes control characters, keeps UTF-8 and cuts at a character boundary', () => {
    assert.equal(httpHeaderValue('a\u0000b\r\nc\u007fd\te', 100), 'a%00b%0D%0Ac%7Fd%09e');
    assert.equal(Buffer.from(httpHeaderValue('bücher', 100), 'latin1').toString('utf8'), 'bücher');
    assert.equal(Buffer.from(httpHeaderValue('aü', 2), 'latin1').toString('utf8'), 'a', 'a two-byte character is never split');
    assert.equal(httpHeaderValue('x\r', 2), 'x', 'an escape is never split');
    assert.equal(httpHeaderValue('😀'.repeat(1000), 1024).length, 1024);
  });

  it('reaches an HTTP server with every hostile value encoded, without Node refusing the request', async () => {
    const cap = await CaptureRspamd.start();
    try {
      const hostile = ['\u0000nul', 'cr\rlf\nlf', 'del\u007f', 'bücher☃😀', 'x'.repeat(100_000), '\u0085next-line\u2028'];
      const headers = hostile.map((v) => ['Helo', httpHeaderValue(v, 1024)] as const);
      const r = await checkStream(Readable.from([Buffer.from('Subject: x\r\n\r\nhi\r\n')]), [{ host: '127.0.0.1', port: cap.port }], headers, { connectTimeout: 1000, timeout: 2000, maxSize: 1e6 });
      assert.equal(r.kind, 'scanned');
      const got = cap.requests[0]!.headers.filter(([k]) => k === 'Helo').map(([, v]) => v.toString('utf8'));
      assert.deepEqual(got, ['%00nul', 'cr%0Dlf%0Alf', 'del%7F', 'bücher☃😀', 'x'.repeat(1024), '\u0085next-line\u2028']);
    } finally {
      await cap.close();
    }
  });

  it('keeps folding in header values for the message and turns any other CR, LF or control character into a space', () => {
    assert.equal(messageHeaderValue('a;\r\n\tb;\r\n c'), 'a;\r\n\tb;\r\n c');
    assert.equal(messageHeaderValue('a\r\nX-Evil: 1\nb\rc\u0000d'), 'a  X-Evil: 1 b c d');
  });
});

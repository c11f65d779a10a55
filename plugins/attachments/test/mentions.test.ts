import assert from 'node:assert/strict';
import { MentionScanner } from '../src/mentions.js';

/** The prefilter's old test, on the latin1 reading of everything so far. */
const byRegex = (b: Buffer) => /rfc822|filename/i.test(b.toString('latin1'));

/** A small deterministic PRNG (the same cases every run). */
function rng(seed: number): () => number {
  return () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
}

function scanAll(chunks: Buffer[]): boolean[] {
  const s = new MentionScanner();
  let found = false;
  return chunks.map((c) => (found ||= s.push(c)));
}

describe('MentionScanner (the raw pass prefilter)', () => {
  it('finds rfc822 and filename in any case, across any chunk boundary, exactly where the regular expression does', () => {
    const r = rng(22);
    const pieces = ['rfc822', 'RFC822', 'Rfc822', 'rFc822', 'filename', 'FILENAME', 'FileName', 'fiLENAme', 'rfc82', 'fc822', 'filenam', 'ilename', '822', 'rfc', 'file', 'name', 'f', 'e', '\r\n', ' ', 'x', '\u00e9', 'Content-Type: text/plain', 'r\u00c6c822', 'fil\u00c5name'];
    for (let t = 0; t < 3000; t++) {
      const whole = Buffer.from(Array.from({ length: 1 + Math.floor(r() * 12) }, () => pieces[Math.floor(r() * pieces.length)]).join(''), 'latin1');
      const chunks: Buffer[] = [];
      for (let at = 0; at < whole.length; ) {
        const n = Math.min(whole.length - at, r() < 0.3 ? 1 + Math.floor(r() * 3) : 1 + Math.floor(r() * 40));
        chunks.push(whole.subarray(at, at + n));
        at += n;
      }
      const got = scanAll(chunks);
      let so = 0;
      chunks.forEach((c, i) => {
        so += c.length;
        assert.equal(got[i], byRegex(whole.subarray(0, so)), `${JSON.stringify(whole.toString('latin1'))} chunked ${chunks.map((x) => x.length).join(',')}, at chunk ${i}`);
      });
    }
  });

  it('finds a mention at the very start and end of a large chunk, and none in ordinary text', () => {
    const body = Buffer.from('Hello Bob, the report is attached. Regards, Alice.\r\n'.repeat(2000), 'latin1');
    assert.equal(scanAll([body])[0], false);
    assert.equal(scanAll([Buffer.concat([Buffer.from('FILENAME'), body])])[0], true);
    assert.equal(scanAll([Buffer.concat([body, Buffer.from('rfC822')])])[0], true);
    assert.deepEqual(scanAll([Buffer.concat([body, Buffer.from('rf')]), Buffer.from('c822')]), [false, true]);
    assert.deepEqual(scanAll([Buffer.from('fi'), Buffer.from('le'), Buffer.from('na'), Buffer.from('me')]), [false, false, false, true]);
    assert.deepEqual(scanAll([Buffer.alloc(0), Buffer.from('filenam'), Buffer.alloc(0), Buffer.from('E')]), [false, false, false, true]);
  });
});

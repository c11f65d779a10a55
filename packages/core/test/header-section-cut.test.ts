import assert from 'node:assert/strict';
import { HeaderSectionCut, headerEnd } from '../src/api/header-section-cut.js';

// HeaderSectionCut must cut where headerEnd of the joined bytes cuts, at the first piece that
// completes the blank line, however the bytes are cut into pieces; and it must copy each byte a
// bounded number of times (a join per piece is quadratic: a hostile client's trickle).

const MESSAGES = [
  'A: 1\r\nB: 2\r\n\r\nbody\r\n',
  '\r\nbody starts at once\r\n',
  '\r\n',
  'A: 1\r\n\r\n',
  'A: 1\r\r\n\r\nbody', // a stray CR before the blank line
  'A: 1\r\n\r\r\n\r\n', // a line holding a lone CR, then the blank line
  'A: 1\r\nB: 2\r\n', // no blank line
  'A\n\r\n\r\nbody', // a bare LF first
  '',
];

/** What the cut must answer for these pieces: the piece index and the split of what was fed. */
function expected(pieces: Buffer[]): { at: number; head: string; rest: string } | undefined {
  for (let k = 0; k < pieces.length; k++) {
    const fed = Buffer.concat(pieces.slice(0, k + 1));
    const end = headerEnd(fed);
    if (end >= 0) return { at: k, head: fed.subarray(0, end).toString('latin1'), rest: fed.subarray(end).toString('latin1') };
  }
  return undefined;
}

function run(pieces: Buffer[]): { at: number; head: string; rest: string } | { pending: string } {
  const cut = new HeaderSectionCut();
  for (let k = 0; k < pieces.length; k++) {
    const parts = cut.push(pieces[k]!);
    if (parts) return { at: k, head: parts.head.toString('latin1'), rest: parts.rest.toString('latin1') };
  }
  return { pending: cut.pending().toString('latin1') };
}

function check(pieces: Buffer[], label: string): void {
  const want = expected(pieces);
  assert.deepEqual(run(pieces), want ?? { pending: Buffer.concat(pieces).toString('latin1') }, label);
}

describe('HeaderSectionCut: the end of the header section in pieces (issue 22 debt: linear for any chunking)', () => {
  for (const m of MESSAGES) {
    it(`${JSON.stringify(m)}: cut where the joined bytes are, in one piece, two, three, and a piece per byte`, () => {
      const bytes = Buffer.from(m, 'latin1');
      check([bytes], 'one piece');
      for (let i = 0; i <= bytes.length; i++) {
        check([bytes.subarray(0, i), bytes.subarray(i)], `two pieces at ${i}`);
        for (let j = i; j <= bytes.length; j++) check([bytes.subarray(0, i), bytes.subarray(i, j), bytes.subarray(j)], `three pieces at ${i}, ${j}`);
      }
      check([...bytes].map((b) => Buffer.from([b])), 'a piece per byte');
    });
  }

  it('answers once: a piece after the cut is a programming error, and later pieces are the caller\'s to pass on', () => {
    const cut = new HeaderSectionCut();
    assert.equal(cut.push(Buffer.from('A: 1\r\n')), undefined);
    assert.equal(cut.size, 6);
    const parts = cut.push(Buffer.from('\r\nbody'));
    assert.deepEqual([parts!.head.toString(), parts!.rest.toString()], ['A: 1\r\n', '\r\nbody']);
    assert.throws(() => cut.push(Buffer.from('more')), /already ended/);
  });

  it('a single piece holding the blank line is cut without a copy', () => {
    const piece = Buffer.from('A: 1\r\n\r\nbody');
    const parts = new HeaderSectionCut().push(piece)!;
    assert.equal(parts.head.buffer, piece.buffer);
    assert.equal(parts.head.byteOffset, piece.byteOffset);
    assert.equal(parts.rest.byteOffset, piece.byteOffset + 6);
  });

  it('copies each byte a bounded number of times: 256 KB of header fields one byte per piece', () => {
    const field = Buffer.from('X-Filler: 0123456789abcdef0123456789abcdef0123456789abcdef01234\r\n'); // 64 bytes
    const head = Buffer.concat(Array.from({ length: 4096 }, () => field)); // 256 KB, as limits.headerSize
    const message = Buffer.concat([head, Buffer.from('\r\nbody\r\n')]);
    const concat = Buffer.concat;
    let copied = 0;
    Buffer.concat = ((list: readonly Uint8Array[], total?: number) => {
      const out = concat(list, total);
      copied += out.length;
      return out;
    }) as typeof Buffer.concat;
    let parts;
    try {
      const cut = new HeaderSectionCut();
      for (let i = 0; i < message.length && !parts; i++) parts = cut.push(message.subarray(i, i + 1));
    } finally {
      Buffer.concat = concat;
    }
    assert.ok(parts, 'the blank line was found');
    assert.equal(parts.head.length, head.length);
    assert.deepEqual(parts.head, head);
    // The final join (the message so far) plus a few bytes of look-behind per piece; a join per
    // piece would be about 256 KB x 256 KB / 2 = 34 GB.
    assert.ok(copied <= message.length + 8 * message.length, `copied ${copied} bytes for ${message.length}`);
  });
});

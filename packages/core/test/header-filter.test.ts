import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { HeaderFilter, type HeaderField } from '../src/api/header-filter.js';

/** Pushes `message` through a HeaderFilter in chunks of `size` bytes, returns what came out. */
async function filter(message: string, size: number, drop: (f: HeaderField) => boolean): Promise<{ out: string; seen: HeaderField[] }> {
  const seen: HeaderField[] = [];
  const chunks: Buffer[] = [];
  const bytes = Buffer.from(message, 'latin1');
  for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
  const f = new HeaderFilter((field) => (seen.push(field), drop(field)));
  const out: Buffer[] = [];
  Readable.from(chunks).pipe(f);
  for await (const c of f) out.push(c as Buffer);
  return { out: Buffer.concat(out).toString('latin1'), seen };
}

const MESSAGE =
  'Received: from a\r\n\tby b; Tue, 1 Dec 2026 08:00:00 +0000\r\n' +
  'Authentication-Results: relay.test;\r\n spf=pass smtp.mailfrom=x@y.test\r\n' +
  'From: a@example.test\r\n' +
  'authentication-results: other.test; dkim=none\r\n' +
  'Subject: hi\r\n' +
  '\r\n' +
  'Authentication-Results: relay.test; in the body, untouched\r\n' +
  'body line\r\n';

describe('HeaderFilter (core: drops top-level header fields on the way to the spool)', () => {
  for (const size of [1, 3, 7, 64, 4096]) {
    it(`removes exactly the fields the predicate names, folded lines included, with ${size}-byte chunks`, async () => {
      const { out, seen } = await filter(MESSAGE, size, (f) => /^authentication-results$/i.test(f.name) && f.value.trim().startsWith('relay.test;'));
      assert.equal(
        out,
        'Received: from a\r\n\tby b; Tue, 1 Dec 2026 08:00:00 +0000\r\n' +
          'From: a@example.test\r\n' +
          'authentication-results: other.test; dkim=none\r\n' +
          'Subject: hi\r\n\r\n' +
          'Authentication-Results: relay.test; in the body, untouched\r\nbody line\r\n',
      );
      assert.deepEqual(
        seen.map((f) => f.name),
        ['Received', 'Authentication-Results', 'From', 'authentication-results', 'Subject'],
      );
      assert.equal(seen[1]!.value, ' relay.test; spf=pass smtp.mailfrom=x@y.test');
    });
  }

  it('passes every byte through unchanged when nothing is dropped', async () => {
    const { out } = await filter(MESSAGE, 5, () => false);
    assert.equal(out, MESSAGE);
  });

  it('judges the last field of a message that has no body and no empty line', async () => {
    const { out } = await filter('From: a@b.test\r\nX-Drop: yes\r\n', 4, (f) => f.name === 'X-Drop');
    assert.equal(out, 'From: a@b.test\r\n');
  });

  it('keeps a field whose predicate throws (the intake turns the throw into a 451)', async () => {
    const { out } = await filter(MESSAGE, 16, () => {
      throw new Error('bug');
    });
    assert.equal(out, MESSAGE);
  });
});

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { applyContentEdits, editInMemory, type HeaderEdit } from '../src/intake/edits/content-edits.js';
import { headerEnd } from '../src/api/header-section-cut.js';

// A small message's header edits are made in memory (editInMemory) and a large one's by a streamed
// copy of its spooled file (applyContentEdits): both must give the same bytes, whatever the edits
// and wherever the header section ends.

const MESSAGES: Record<string, string> = {
  'fields, a folded one, a body that looks like a header': 'From: a@remote.test\r\nX-All: 1\r\nSubject: old,\r\n folded\r\nTo: bob@example.com\r\nX-Dup: one\r\nX-All: 2\r\nX-Dup: two\r\nX-Dup: three\r\n\r\nSubject: body line\r\n',
  'no header section (starts with the blank line)': '\r\nbody only\r\n',
  'no blank line (all header section)': 'From: a@remote.test\r\nSubject: s\r\n',
  'empty body': 'From: a@remote.test\r\n\r\n',
  'a body with blank lines of its own': 'Subject: s\r\n\r\nline\r\n\r\n\r\nlast\r\n',
};

const EDITS: Record<string, HeaderEdit[]> = {
  'append, insert first, insert past the end': [
    { op: 'appendHeader', name: 'X-Appended', value: 'last' },
    { op: 'insertHeader', index: 0, name: 'X-First', value: 'top' },
    { op: 'insertHeader', index: 99, name: 'X-Far', value: 'end' },
  ],
  'change the second of three, delete one, change one that is absent': [
    { op: 'changeHeader', name: 'X-Dup', occurrence: 2, value: 'changed' },
    { op: 'changeHeader', name: 'subject', occurrence: 1, value: undefined },
    { op: 'changeHeader', name: 'X-Missing', occurrence: 1, value: 'added because absent' },
  ],
  'remove every field of a name, then add a folded value': [
    { op: 'removeHeader', name: 'x-all' },
    { op: 'appendHeader', name: 'X-Note', value: 'one\r\n two' },
  ],
};

describe('header edits in memory and through the files (issue 22: small edited messages stay in memory)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-content-edits-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const [m, message] of Object.entries(MESSAGES)) {
    for (const [e, edits] of Object.entries(EDITS)) {
      it(`${m}; ${e}: the same bytes both ways`, async () => {
        const src = path.join(dir, 'src.msg');
        const dest = path.join(dir, 'dest.msg');
        writeFileSync(src, message);
        await applyContentEdits(src, dest, { headers: edits });
        const streamed = readFileSync(dest).toString('latin1');
        const bytes = Buffer.from(message, 'latin1');
        assert.equal(Buffer.concat(editInMemory([bytes], edits)).toString('latin1'), streamed, 'one chunk');
        // The chunks a message arrived in may cut it anywhere, the blank line included.
        for (let cut = 0; cut <= bytes.length; cut++) {
          const chunks = [bytes.subarray(0, cut), bytes.subarray(cut)];
          assert.equal(Buffer.concat(editInMemory(chunks, edits)).toString('latin1'), streamed, `two chunks cut at ${cut}`);
        }
        const bytewise = [...bytes].map((b) => Buffer.from([b]));
        assert.equal(Buffer.concat(editInMemory(bytewise, edits)).toString('latin1'), streamed, 'a chunk per byte');
      });
    }
  }

  it('joins only the chunks up to the end of the header section: the body chunks are passed on, not copied', () => {
    const head = Buffer.from('Subject: s\r\nTo: b@example.com\r');
    const rest = [Buffer.from('\n\r\nfirst body chunk\r\n'), Buffer.from('second\r\n'), Buffer.from('third\r\n')];
    const out = editInMemory([head, ...rest], [{ op: 'appendHeader', name: 'X-Tag', value: 'yes' }]);
    assert.equal(Buffer.concat(out).toString('latin1'), 'Subject: s\r\nTo: b@example.com\r\nX-Tag: yes\r\n\r\nfirst body chunk\r\nsecond\r\nthird\r\n');
    assert.equal(out.length, 4, 'the edited header section, the rest of the chunk it ended in, then the two later chunks');
    assert.equal(out[2], rest[1], 'the same Buffer, not a copy');
    assert.equal(out[3], rest[2], 'the same Buffer, not a copy');
    assert.deepEqual(editInMemory([], [{ op: 'appendHeader', name: 'X-Tag', value: 'yes' }]).map(String), ['X-Tag: yes\r\n'], 'an empty message is an empty header section');
  });

  it('finds where the header section ends: at the blank line, at 0 without fields, -1 without a blank line', () => {
    assert.equal(headerEnd(Buffer.from('A: 1\r\nB: 2\r\n\r\nbody')), 12);
    assert.equal(headerEnd(Buffer.from('\r\nbody')), 0);
    assert.equal(headerEnd(Buffer.from('A: 1\r\n')), -1);
    assert.equal(headerEnd(Buffer.alloc(0)), -1);
  });

  it('edits one field and leaves every other byte as it was (no re-encoding of 8-bit header bytes)', () => {
    const message = Buffer.concat([Buffer.from('Subject: caf'), Buffer.from([0xe9]), Buffer.from('\r\nTo: b@example.com\r\n\r\nbody\r\n')]);
    const out = Buffer.concat(editInMemory([message], [{ op: 'changeHeader', name: 'To', occurrence: 1, value: 'c@example.com' }]));
    assert.deepEqual(out, Buffer.concat([Buffer.from('Subject: caf'), Buffer.from([0xe9]), Buffer.from('\r\nTo: c@example.com\r\n\r\nbody\r\n')]));
  });
});

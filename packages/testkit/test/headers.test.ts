import assert from 'node:assert/strict';
import { definePlugin, accept, parseHeaderSection, reject, type MessageHeaders } from '@portcullis/core';
import { buildMessage, inject } from '../src/index.js';

describe('decoded headers for screeners', () => {
  const raw = [
    'From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <jm@example.org>',
    'To: Team: a@example.com, "B, Person" <b@example.com>;, =?ISO-8859-1?Q?Ren=E9?= <r@example.com>',
    'Subject: =?UTF-8?B?V2luIGEg?=',
    ' =?UTF-8?B?ZnJlZSBpUGhvbmU=?=',
    'Content-Type: multipart/mixed; boundary="b1"',
    'Content-Disposition: attachment; filename*0*=utf-8\'\'%C3%84rger; filename*1=".pdf"',
    'X-Plain: folded',
    '\tvalue',
    '',
    'body',
  ].join('\r\n');

  it('decodes RFC 2047 words (also across folded lines), keeps the raw value beside', () => {
    const h = parseHeaderSection(raw);
    assert.equal(h.get('subject'), 'Win a free iPhone');
    assert.deepEqual(h.getRaw('Subject'), ['=?UTF-8?B?V2luIGEg?= =?UTF-8?B?ZnJlZSBpUGhvbmU=?=']);
    assert.equal(h.fields.find((f) => f.key === 'subject')!.raw, 'Subject: =?UTF-8?B?V2luIGEg?=\r\n =?UTF-8?B?ZnJlZSBpUGhvbmU=?=');
    assert.equal(h.get('x-plain'), 'folded\tvalue');
    assert.equal(h.raw.split('\r\n').length, 8);
  });

  it('parses address lists: groups, quoted names with commas, encoded names', () => {
    const h = parseHeaderSection(raw);
    assert.deepEqual(h.addresses('from'), [{ name: 'Jürgen Müller', address: 'jm@example.org' }]);
    assert.deepEqual(h.addresses('to'), [
      { name: '', address: 'a@example.com', group: 'Team' },
      { name: 'B, Person', address: 'b@example.com', group: 'Team' },
      { name: 'René', address: 'r@example.com' },
    ]);
  });

  it('decodes RFC 2231 parameters (continuations and charset)', () => {
    const h = parseHeaderSection(raw);
    assert.deepEqual(h.structured('content-disposition'), { value: 'attachment', params: { filename: 'Ärger.pdf' } });
    assert.deepEqual(h.structured('Content-Type'), { value: 'multipart/mixed', params: { boundary: 'b1' } });
    assert.equal(h.structured('x-missing'), undefined);
  });

  it('hands the message hook the decoded header section, as txn.headers and info.headers', async () => {
    let seen: MessageHeaders | undefined;
    let same = false;
    const look = definePlugin({
      name: 'look',
      setup: () => ({
        rcpt: () => accept(),
        message: (txn, info) => {
          seen = info.headers;
          same = txn.headers === info.headers;
          return info.headers.get('subject') === 'Grüße aus Köln' ? reject(550, '5.7.1', 'matched the decoded Subject') : undefined;
        },
      }),
    });
    const message = await buildMessage({ subject: 'Grüße aus Köln', from: '"Émile" <e@example.org>' });
    assert.match(message.toString(), /Subject: =\?UTF-8\?/); // the wire form is encoded
    const r = await inject({ plugins: [look], mail: { from: 'e@example.org', to: 'x@y.test', message } });
    assert.equal(r.replies.find((x) => x.command === '<message>')!.text, 'matched the decoded Subject');
    assert.ok(same);
    assert.deepEqual(seen!.addresses('from'), [{ name: 'Émile', address: 'e@example.org' }]);
    assert.match(seen!.raw, /^From: /);
  });
});

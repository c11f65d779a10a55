import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { definePlugin, type Transaction } from '@portcullis/core';
import { hostedRelay, memoryLogger, sendMail, type CaptureServer, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';

/*
 * The core's `txn.edits` (MessageEdits): what plugins ask for while the message streams (in a raw
 * reader's promise) or in the `message` hook is applied when the message is committed, and the
 * next hop receives the edited message and envelope, byte for byte.
 */
type Script = (txn: Transaction, stage: 'raw' | 'message') => void | Promise<void>;

describe('txn.edits: plugins edit the message and its envelope at end of data', () => {
  let sink: CaptureServer;
  let relay: HostedRelay;
  let script: Script = () => undefined;
  let lastTxn: Transaction | undefined;
  const { logger, entries } = memoryLogger('info');
  const editor = definePlugin({
    name: 'editor',
    setup: () => ({
      data: (txn) => ({
        raw: async (stream) => {
          for await (const _ of stream) {
            /* read to the end, as a milter's body stage does */
          }
          await script(txn, 'raw');
        },
      }),
      message: async (txn) => {
        lastTxn = txn;
        await script(txn, 'message');
        return undefined;
      },
    }),
  });
  // Replaces any part named bad.exe (a part screener), to check edits apply after part replacement.
  const replacer = definePlugin({
    name: 'replacer',
    setup: () => ({
      data: () => ({ part: (part) => (part.filename === 'bad.exe' ? { done: () => ({ action: 'replace' as const, notice: 'bad.exe was removed' }) } : undefined) }),
    }),
  });
  const second = definePlugin({
    name: 'second-editor',
    setup: () => ({
      message: (txn) => {
        if (txn.mailFrom.address === 'two@remote.test') txn.edits.appendHeader('X-Second', 'after the first');
        return undefined;
      },
    }),
  });

  before(async () => {
    relay = await hostedRelay({ logger, builtins: { 'relay-policy': relayPolicy, editor, 'second-editor': second, replacer }, domain: 'example.com', plugins: [{ use: 'editor' }, { use: 'second-editor' }, { use: 'replacer' }] });
    sink = relay.sink;
  });
  after(() => relay?.close());
  beforeEach(() => {
    script = () => undefined;
  });

  /** What reached the next hop after our Received line. */
  const afterReceived = (raw: Buffer) => {
    const s = raw.toString('utf8');
    const m = /^Received: [^\r]*\r\n(?:\t[^\r]*\r\n)*/.exec(s);
    assert.ok(m, `no Received line in ${JSON.stringify(s.slice(0, 200))}`);
    return s.slice(m[0].length);
  };
  const send = (raw: string, from = 'a@remote.test', to: string | string[] = 'bob@example.com') => sendMail({ port: relay.port, from, to, raw });

  it('applies header edits in call order, each on the header section the edits before it left, and leaves the body byte for byte', async () => {
    script = (txn, stage) => {
      if (stage !== 'message') return;
      txn.edits.appendHeader('X-Appended', 'last');
      txn.edits.insertHeader(0, 'X-First', 'top');
      // Counted in the header section as the edits before it left it: X-First, From, X-All, here.
      txn.edits.insertHeader(3, 'X-Inserted', 'before Subject');
      txn.edits.changeHeader('subject', 1, 'changed');
      txn.edits.changeHeader('X-Dup', 2, undefined);
      txn.edits.removeHeader('x-all');
      txn.edits.changeHeader('X-Missing', 1, 'added because absent');
    };
    const raw = 'From: a@remote.test\r\nX-All: 1\r\nSubject: old,\r\n folded\r\nTo: bob@example.com\r\nX-Dup: one\r\nX-All: 2\r\nX-Dup: two\r\nX-Dup: three\r\n\r\nSubject: body line\r\n';
    const r = await send(raw);
    assert.equal(r.code, 250, r.response);
    await sink.waitFor(1);
    assert.equal(
      afterReceived(sink.messages.at(-1)!.raw),
      'X-First: top\r\nFrom: a@remote.test\r\nX-Inserted: before Subject\r\nSubject: changed\r\nTo: bob@example.com\r\nX-Dup: one\r\nX-Dup: three\r\nX-Appended: last\r\nX-Missing: added because absent\r\n\r\nSubject: body line\r\n',
    );
  });

  it('commits a small message with header edits only to a spool segment, in memory, like one without edits (no file of its own)', async () => {
    const before = sink.messages.length;
    script = (txn, stage) => {
      if (stage === 'message') txn.edits.insertHeader(0, 'X-Signed', 'in memory');
    };
    const spool = relay.relay.spool;
    const batches = spool.segmentBatches;
    const r = await send('From: a@remote.test\r\nSubject: s\r\n\r\nbody\r\n');
    assert.equal(r.code, 250, r.response);
    assert.equal(spool.segmentBatches, batches + 1, 'one segment batch for this message (the file path writes none)');
    await sink.waitFor(before + 1);
    assert.equal(afterReceived(sink.messages.at(-1)!.raw), 'X-Signed: in memory\r\nFrom: a@remote.test\r\nSubject: s\r\n\r\nbody\r\n');
    assert.deepEqual(readdirSync(path.join(relay.spoolDir, 'tmp')), [], 'no temp file left');
  });

  it('folds a value with line breaks so it cannot start a field of its own, and refuses a bad name with 451 4.3.0', async () => {
    script = (txn, stage) => {
      if (stage === 'message') txn.edits.appendHeader('X-Note', 'one\r\nBcc: evil@example.org\n\n\tindented\r');
    };
    const first = sink.messages.length;
    let r = await send('From: a@remote.test\r\n\r\nbody\r\n');
    assert.equal(r.code, 250, r.response);
    await sink.waitFor(first + 1);
    assert.equal(afterReceived(sink.messages.at(-1)!.raw), 'From: a@remote.test\r\nX-Note: one\r\n Bcc: evil@example.org\r\n\tindented\r\n\r\nbody\r\n');
    const before = sink.messages.length;
    script = (txn, stage) => {
      if (stage === 'message') txn.edits.appendHeader('X Bad', 'v');
    };
    r = await send('From: a@remote.test\r\n\r\nbody\r\n');
    assert.equal(r.response, '451 4.3.0 Temporary local problem, try again later');
    await new Promise((res) => setTimeout(res, 200));
    assert.equal(sink.messages.length, before);
  });

  it('delivers to the edited envelope: a recipient added, one removed, the sender changed', async () => {
    const before = sink.messages.length;
    script = (txn, stage) => {
      if (stage !== 'raw') return;
      txn.edits.addRecipient('carol@example.com', { NOTIFY: 'NEVER' });
      txn.edits.removeRecipient('<BOB@example.com>');
      txn.edits.setSender('bounces@remote.test');
    };
    const r = await send('From: a@remote.test\r\n\r\nbody\r\n', 'a@remote.test', ['bob@example.com', 'dave@example.com']);
    assert.equal(r.code, 250, r.response);
    await sink.waitFor(before + 1);
    const m = sink.messages.at(-1)!;
    assert.equal(m.from, 'bounces@remote.test');
    assert.deepEqual([...m.to].sort(), ['carol@example.com', 'dave@example.com']);
    const line = entries.filter((e) => e.msg === 'transaction').at(-1)!;
    assert.deepEqual(line['edits'], [{ plugin: 'editor', edits: ['addRecipient <carol@example.com>', 'removeRecipient <BOB@example.com>', 'setSender <bounces@remote.test>'] }]);
  });

  it('replaces the body from a stream (bare LF made CRLF, last line ended) after the header edits', async () => {
    const before = sink.messages.length;
    script = async (txn, stage) => {
      if (stage !== 'raw') return;
      txn.edits.appendHeader('X-Replaced', 'yes');
      await txn.edits.replaceBody(Readable.from([Buffer.from('new body\nline two\r\n'), Buffer.from('last line')]));
    };
    const r = await send('From: a@remote.test\r\nSubject: s\r\n\r\nold body\r\n');
    assert.equal(r.code, 250, r.response);
    await sink.waitFor(before + 1);
    assert.equal(afterReceived(sink.messages.at(-1)!.raw), 'From: a@remote.test\r\nSubject: s\r\nX-Replaced: yes\r\n\r\nnew body\r\nline two\r\nlast line\r\n');
    const tmp = readdirSync(path.join(relay.spoolDir, 'tmp'));
    assert.deepEqual(tmp, [], 'the replacement body temp file is removed');
  });

  it('edits a message larger than the in-memory spool limit through the files, body intact', async () => {
    const before = sink.messages.length;
    script = (txn, stage) => {
      if (stage === 'message') txn.edits.changeHeader('Subject', 1, 'big one');
    };
    const line = 'x'.repeat(76) + '\r\n';
    const body = line.repeat(Math.ceil((1024 * 1024) / line.length));
    const r = await send(`From: a@remote.test\r\nSubject: s\r\n\r\n${body}`);
    assert.equal(r.code, 250, r.response);
    await sink.waitFor(before + 1);
    assert.equal(afterReceived(sink.messages.at(-1)!.raw), `From: a@remote.test\r\nSubject: big one\r\n\r\n${body}`);
  });

  it('applies the edits after a part replacement: both reach the next hop', async () => {
    const before = sink.messages.length;
    script = (txn, stage) => {
      if (stage === 'message') txn.edits.changeHeader('Subject', 1, 'edited after the rewrite');
    };
    const raw = [
      'From: a@remote.test',
      'Subject: with attachment',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="b1"',
      '',
      '--b1',
      'Content-Type: text/plain',
      '',
      'the text part',
      '--b1',
      'Content-Type: application/octet-stream; name="bad.exe"',
      'Content-Disposition: attachment; filename="bad.exe"',
      'Content-Transfer-Encoding: base64',
      '',
      'TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
      '--b1--',
      '',
    ].join('\r\n');
    const r = await send(raw);
    assert.equal(r.code, 250, r.response);
    await sink.waitFor(before + 1);
    const got = afterReceived(sink.messages.at(-1)!.raw);
    assert.ok(got.startsWith('From: a@remote.test\r\nSubject: edited after the rewrite\r\nMIME-Version: 1.0\r\n'), got.slice(0, 200));
    assert.match(got, /bad\.exe was removed/);
    assert.doesNotMatch(got, /TVqQAAMAAAAE/);
    assert.match(got, /\r\n\r\nthe text part\r\n--b1\r\n/);
  });

  it('lists the edits of each plugin in the transaction log line, in order', async () => {
    const before = sink.messages.length;
    script = (txn, stage) => {
      if (stage === 'message') txn.edits.removeHeader('X-Gone');
    };
    const r = await send('From: a@remote.test\r\nX-Gone: 1\r\n\r\nbody\r\n', 'two@remote.test');
    assert.equal(r.code, 250, r.response);
    await sink.waitFor(before + 1);
    assert.equal(afterReceived(sink.messages.at(-1)!.raw), 'From: a@remote.test\r\nX-Second: after the first\r\n\r\nbody\r\n');
    const line = entries.filter((e) => e.msg === 'transaction').at(-1)!;
    assert.deepEqual(line['edits'], [
      { plugin: 'editor', edits: ['removeHeader X-Gone'] },
      { plugin: 'second-editor', edits: ['appendHeader X-Second'] },
    ]);
  });

  it('commits a held message when a plugin asks for quarantine: nothing delivered until released', async () => {
    const before = sink.messages.length;
    script = (txn, stage) => {
      if (stage === 'message') txn.edits.hold('looks like phishing');
    };
    const r = await send('From: a@remote.test\r\n\r\nheld body\r\n');
    assert.equal(r.code, 250, r.response);
    const id = /queued as (\S+)/.exec(r.response)![1]!;
    await new Promise((res) => setTimeout(res, 700));
    assert.equal(sink.messages.length, before);
    const listed = relay.relay.queue.list().find((m) => m.id === id);
    assert.equal(listed?.hold, true);
    const shown = await relay.relay.queue.show(id);
    assert.equal(shown?.meta.held, 'looks like phishing');
    assert.equal(await relay.relay.queue.release(id), true);
    await sink.waitFor(before + 1);
    assert.equal(afterReceived(sink.messages.at(-1)!.raw), 'From: a@remote.test\r\n\r\nheld body\r\n');
  });

  it('accepts and drops a message whose every recipient was removed', async () => {
    const before = sink.messages.length;
    script = (txn, stage) => {
      if (stage === 'message') for (const rc of txn.recipients) txn.edits.removeRecipient(rc.address);
    };
    const r = await send('From: a@remote.test\r\n\r\nbody\r\n');
    assert.equal(r.code, 250, r.response);
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(sink.messages.length, before);
    assert.ok(entries.some((e) => e.msg === 'every recipient removed by txn.edits: message accepted and dropped'));
  });

  it('refuses edits once the message hook has returned', async () => {
    const r = await send('From: a@remote.test\r\n\r\nbody\r\n');
    assert.equal(r.code, 250, r.response);
    assert.throws(() => lastTxn!.edits.appendHeader('X-Late', '1'), /too late/);
  });

  it('refuses invalid addresses and header names at the call', async () => {
    const errors: string[] = [];
    script = (txn, stage) => {
      if (stage !== 'message') return;
      for (const f of [
        () => txn.edits.addRecipient('no-at-sign'),
        () => txn.edits.addRecipient('a b@example.com'),
        () => txn.edits.setSender('x@exa mple.com'),
        () => txn.edits.addRecipient('ok@example.com', { 'NOTIFY': 'a b' }),
        () => txn.edits.changeHeader('Subject', 0, 'x'),
        () => txn.edits.insertHeader(-1, 'X', 'y'),
        () => txn.edits.appendHeader('X:Y', 'z'),
      ]) {
        try {
          f();
          errors.push('accepted');
        } catch (err) {
          errors.push((err as Error).name);
        }
      }
    };
    const r = await send('From: a@remote.test\r\n\r\nbody\r\n');
    assert.equal(r.code, 250, r.response);
    assert.deepEqual(errors, Array(7).fill('TypeError'));
  });
});

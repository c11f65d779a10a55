import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { CaptureServer, memoryLogger, selfSignedFiles, sendMail, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy, { userLine } from '@portcullis/relay-policy';
import milter from '../src/index.js';
import { Daemon } from './support/daemon.js';

/*
 * The milter client against a real milter: a modification milter written for these tests on
 * Debian's python3-milter (pymilter over Sendmail's libmilter), started on loopback. What it does
 * at end of message is chosen by the Subject (test/support/mod-milter.py).
 */
describe('milter: a pymilter modification milter on loopback', function () {
  this.timeout(60_000);
  let sink: CaptureServer;
  let relay: TestRelay;
  let py: Daemon;
  let py2: Daemon;
  const { logger, entries } = memoryLogger('info');

  before(async () => {
    [py, py2] = await Promise.all([Daemon.pyMilter(), Daemon.pyMilter()]);
    sink = await CaptureServer.start();
    relay = await startTestRelay({
      logger,
      builtins: { 'relay-policy': relayPolicy, milter },
      config: {
        listen: [{ host: '127.0.0.1', port: 0, greetingDelay: 0, name: 'inbound' }],
        plugins: [
          { use: 'milter', with: { milters: [{ address: py.address, name: 'mod', eomTimeout: '5s' }] } },
          { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } } } },
        ],
      },
    });
  });
  after(async () => {
    await relay?.stop();
    await sink?.close();
    if (process.env.MILTER_DEBUG) console.error(py?.output);
    await py?.stop();
    await py2?.stop();
  });

  const afterReceived = (raw: Buffer) => {
    const s = raw.toString('utf8');
    const m = /^Received: [^\r]*\r\n(?:\t[^\r]*\r\n)*/.exec(s);
    assert.ok(m, 'a Received line on top');
    return s.slice(m[0].length);
  };
  const send = (subject: string, extra = '', body = 'body line\r\n', to: string | string[] = 'bob@example.com', port = relay.port) =>
    sendMail({ port, from: 'alice@remote.test', to, raw: `From: alice@remote.test\r\nTo: bob@example.com\r\nSubject: ${subject}\r\n${extra}\r\n${body}` });
  const delivered = async (before: number) => {
    await sink.waitFor(before + 1);
    return sink.messages[before]!;
  };

  it('applies added, inserted, changed and deleted headers: the next hop gets them byte for byte', async () => {
    const before = sink.messages.length;
    const r = await send('headers', 'X-Remove: one\r\nX-Remove: two\r\nX-Remove: three\r\n');
    assert.equal(r.code, 250, r.response);
    const m = await delivered(before);
    assert.equal(
      afterReceived(m.raw),
      'X-Inserted: at the top\r\nFrom: alice@remote.test\r\nTo: bob@example.com\r\nSubject: changed subject\r\nX-Remove: one\r\nX-Remove: three\r\nX-Added: added value\r\nX-Folded: first line\r\n\tsecond line\r\n\r\nbody line\r\n',
    );
    const line = entries.filter((e) => e.msg === 'transaction').at(-1)!;
    assert.deepEqual(line['edits'], [{ plugin: 'milter/mod', edits: ['appendHeader X-Added', 'insertHeader 0 X-Inserted', 'changeHeader Subject[1]', 'deleteHeader X-Remove[2]', 'appendHeader X-Folded'] }]);
  });

  it('adds and deletes recipients and changes the sender: delivery uses the edited envelope', async () => {
    const before = sink.messages.length;
    const r = await send('envelope', '', 'body line\r\n', ['bob@example.com', 'carol@example.com']);
    assert.equal(r.code, 250, r.response);
    const m = await delivered(before);
    assert.equal(m.from, 'new-sender@remote.test');
    assert.deepEqual([...m.to].sort(), ['added@example.com', 'carol@example.com']);
    assert.equal(afterReceived(m.raw), 'From: alice@remote.test\r\nTo: bob@example.com\r\nSubject: envelope\r\n\r\nbody line\r\n');
  });

  it('replaces the body: the next hop gets the milter\'s body byte for byte under the original header', async () => {
    const before = sink.messages.length;
    const r = await send('body', '', 'old body\r\nold line 2\r\n');
    assert.equal(r.code, 250, r.response);
    const m = await delivered(before);
    assert.equal(afterReceived(m.raw), 'From: alice@remote.test\r\nTo: bob@example.com\r\nSubject: body\r\n\r\nreplaced body\r\nsecond line\r\n');
  });

  it('replaces the body with one sent in many SMFIR_REPLBODY packets (2.9 MB), in order', async () => {
    const before = sink.messages.length;
    const r = await send('bigbody');
    assert.equal(r.code, 250, r.response);
    const m = await delivered(before);
    let expected = '';
    for (let i = 0; i < 40; i++) expected += (String(i).padStart(4, '0') + 'y'.repeat(70) + '\r\n').repeat(1000);
    const got = afterReceived(m.raw);
    assert.equal(got.length, 'From: alice@remote.test\r\nTo: bob@example.com\r\nSubject: bigbody\r\n\r\n'.length + expected.length);
    assert.ok(got.endsWith(expected));
  });

  it('holds a message the milter quarantines: queued held with its reason, not delivered', async () => {
    const before = sink.messages.length;
    const r = await send('quarantine');
    assert.equal(r.code, 250, r.response);
    const id = /queued as (\S+)/.exec(r.response)![1]!;
    await new Promise((res) => setTimeout(res, 700));
    assert.equal(sink.messages.length, before);
    const q = relay.relay.queue.list().find((e) => e.id === id);
    assert.equal(q?.hold, true);
    assert.equal((await relay.relay.queue.show(id))?.meta.held, 'milter mod: test quarantine reason');
  });

  it('answers with the milter\'s own reply code at end of message (SMFIR_REPLYCODE)', async () => {
    const before = sink.messages.length;
    const r = await send('reject');
    assert.equal(r.response, '550 5.7.0 Custom rejection by the test milter');
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(sink.messages.length, before);
  });

  it('answers Postfix\'s replies for a plain reject (550 5.7.1) and a tempfail (451 4.7.1)', async () => {
    assert.equal((await send('plain-reject')).response, '550 5.7.1 Message content rejected');
    assert.equal((await send('tempfail')).response, '451 4.7.1 Service unavailable - try again later');
  });

  it('accepts and drops a discarded message, and logs which milter discarded it', async () => {
    const before = sink.messages.length;
    const r = await send('discard');
    assert.equal(r.code, 250, r.response);
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(sink.messages.length, before);
    assert.ok(entries.some((e) => e.msg === 'milter mod discarded the message: accepted and dropped'));
  });

  it('drops the whole message when the milter discards at RCPT, answering 250 to every command', async () => {
    const before = sink.messages.length;
    const r = await sendMail({ port: relay.port, from: 'alice@remote.test', to: ['bob@example.com', 'trash@example.com'], raw: 'From: alice@remote.test\r\nSubject: x\r\n\r\nbody\r\n' });
    assert.equal(r.code, 250, r.response);
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(sink.messages.length, before);
    const id = /queued as (\S+)/.exec(r.response)![1]!;
    assert.ok(entries.some((e) => e.msg === 'milter mod discarded the message: accepted and dropped' && e['txn'] === id));
  });

  it('refuses one recipient with the milter\'s RCPT reply and delivers to the others', async () => {
    const before = sink.messages.length;
    const r = await sendMail({ port: relay.port, from: 'alice@remote.test', to: ['blocked@example.com', 'bob@example.com'], raw: 'From: alice@remote.test\r\nSubject: x\r\n\r\nbody\r\n' });
    assert.equal(r.code, 250, r.response);
    const m = await delivered(before);
    assert.deepEqual(m.to, ['bob@example.com']);
    const rej = await sendMail({ port: relay.port, from: 'alice@remote.test', to: 'blocked@example.com', raw: 'From: alice@remote.test\r\nSubject: x\r\n\r\nbody\r\n' });
    assert.equal(rej.response, '550 5.1.1 No such user here (test milter)');
    const busy = await sendMail({ port: relay.port, from: 'alice@remote.test', to: 'busy@example.com', raw: 'From: alice@remote.test\r\nSubject: x\r\n\r\nbody\r\n' });
    assert.equal(busy.response, '451 4.7.1 Service unavailable - try again later');
  });

  it('stops at a header the milter rejects, with its reply', async () => {
    const r = await send('x', 'X-Reject-At-Header: yes\r\n');
    assert.equal(r.response, '554 5.7.1 Header refused (test milter)');
  });

  it('sends the standard macros and the message as received: headers byte for byte (8-bit, folded), body bytes and their hash', async () => {
    const before = sink.messages.length;
    const body = 'line one\r\nline two\r\n'.repeat(5000);
    const head = Buffer.concat([Buffer.from('From: alice@remote.test\r\nTo: bob@example.com\r\nSubject: report\r\nX-Latin: caf'), Buffer.from([0xe9]), Buffer.from('\r\nX-Folded: one\r\n\ttwo\r\n\r\n')]);
    const r = await sendMail({ port: relay.port, from: 'alice@remote.test', to: 'bob@example.com', raw: Buffer.concat([head, Buffer.from(body)]) });
    assert.equal(r.code, 250, r.response);
    const m = await delivered(before);
    const id = /queued as (\S+)/.exec(r.response)![1]!;
    const text = afterReceived(m.raw);
    const macros = /^X-Macros: (.*)$/m.exec(text)![1]!;
    assert.equal(macros, `j=relay.test {daemon_name}=inbound i=${id} {client_addr}=127.0.0.1 {client_name}=unknown {auth_authen}=None {mail_addr}=alice@remote.test {rcpt_addr}=bob@example.com v=Portcullis`);
    assert.match(/^X-Client: (.*)$/m.exec(text)![1]!, /^connect=unknown \('127\.0\.0\.1', \d+\) helo=\S+$/);
    // Each field as name, value without the space after the colon, folds as LF: what libmilter hands over.
    const fields = Buffer.concat([Buffer.from('From:alice@remote.test\nTo:bob@example.com\nSubject:report\nX-Latin:caf'), Buffer.from([0xe9]), Buffer.from('\nX-Folded:one\n\ttwo\n')]);
    const hsha = createHash('sha256').update(fields).digest('hex');
    const sha = createHash('sha256').update(body).digest('hex');
    assert.equal(/^X-Seen: (.*)$/m.exec(text)![1], `headers=5 hsha256=${hsha} body=${Buffer.byteLength(body)} sha256=${sha} rcpts=<bob@example.com> args=`);
  });

  it('sends the TLS and AUTH macros of a STARTTLS, AUTH PLAIN session', async () => {
    const tls = await selfSignedFiles('relay.test');
    const users = path.join(tls.dir, 'users.passwd');
    writeFileSync(users, (await userLine('alice', 'secret-pass')) + '\n');
    const secured = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy, milter },
      config: {
        tls: { key: tls.key, cert: tls.cert },
        listen: [{ host: '127.0.0.1', port: 0, tls: 'starttls', auth: 'optional', greetingDelay: 0 }],
        plugins: [
          { use: 'milter', with: { milters: [{ address: py.address }] } },
          { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } }, users } },
        ],
      },
    });
    try {
      const before = sink.messages.length;
      const r = await sendMail({ port: secured.port, from: 'alice@remote.test', to: 'bob@example.com', auth: { user: 'alice', pass: 'secret-pass' }, raw: 'From: alice@remote.test\r\nSubject: report\r\n\r\nbody\r\n' });
      assert.equal(r.code, 250, r.response);
      const m = await delivered(before);
      assert.match(m.raw.toString(), /\r\nX-Session-Macros: \{tls_version\}=TLSv1\.3 \{cipher\}=TLS_AES_256_GCM_SHA384 \{cipher_bits\}=256 \{auth_type\}=PLAIN \{auth_authen\}=alice\r\n/);
    } finally {
      await secured.stop();
    }
  });

  it('runs several milters in sequence on one message, applying their modifications in order', async () => {
    const two = await startTestRelay({
      logger,
      builtins: { 'relay-policy': relayPolicy, milter },
      config: {
        plugins: [
          { use: 'milter', with: { milters: [{ address: py.address, name: 'first' }, { address: py2.address, name: 'second' }] } },
          { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } } } },
        ],
      },
    });
    try {
      const before = sink.messages.length;
      const r = await send('headers', 'X-Remove: a\r\nX-Remove: b\r\n', 'body line\r\n', 'bob@example.com', two.port);
      assert.equal(r.code, 250, r.response);
      const m = await delivered(before);
      // Both inserted at the top (the second before the first's), both appended in order; the
      // second's delete of X-Remove[2] finds no second one left and does nothing.
      assert.equal(
        afterReceived(m.raw),
        'X-Inserted: at the top\r\nX-Inserted: at the top\r\nFrom: alice@remote.test\r\nTo: bob@example.com\r\nSubject: changed subject\r\nX-Remove: a\r\nX-Added: added value\r\nX-Folded: first line\r\n\tsecond line\r\nX-Added: added value\r\nX-Folded: first line\r\n\tsecond line\r\n\r\nbody line\r\n',
      );
      const line = entries.filter((e) => e.msg === 'transaction').at(-1)!;
      const edits = ['appendHeader X-Added', 'insertHeader 0 X-Inserted', 'changeHeader Subject[1]', 'deleteHeader X-Remove[2]', 'appendHeader X-Folded'];
      assert.deepEqual(line['edits'], [
        { plugin: 'milter/first', edits },
        { plugin: 'milter/second', edits },
      ]);
    } finally {
      await two.stop();
    }
  });
});

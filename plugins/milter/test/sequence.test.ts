import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import os from 'node:os';
import { hostedRelay, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import milter from '../src/index.js';
import { Daemon } from './support/daemon.js';

/*
 * Two milters in a row: the pymilter modification milter, then the same milter in its reporter
 * role (it adds X-Reporter saying which Subject, how many header fields, which header bytes and
 * how many body bytes it was sent). By default both get the message as received, in one pass;
 * with `sequential` the second gets it after the first one's changes, as Postfix sends it.
 */
describe('milter: several milters in sequence', function () {
  this.timeout(60_000);
  let mod: Daemon;
  let reporter: Daemon;
  const relays: HostedRelay[] = [];

  before(async () => {
    [mod, reporter] = await Promise.all([Daemon.pyMilter(), Daemon.pyMilter({ reporter: true })]);
  });
  after(async () => {
    for (const r of relays) await r.close();
    await mod?.stop();
    await reporter?.stop();
  });
  const relayWith = async (sequential: boolean) => {
    const r = await hostedRelay({
      builtins: { 'relay-policy': relayPolicy, milter },
      pluginsBefore: [{ use: 'milter', with: { sequential, milters: [{ address: mod.address, name: 'mod' }, { address: reporter.address, name: 'reporter' }] } }],
    });
    relays.push(r);
    return r;
  };
  const deliver = async (relay: HostedRelay, subject: string, body: string) => {
    const before = relay.captured.length;
    const raw = `From: alice@remote.test\r\nTo: bob@example.com\r\nSubject: ${subject}\r\nX-Remove: one\r\nX-Remove: two\r\nX-Remove: three\r\n\r\n${body}`;
    const r = await relay.send({ raw });
    assert.equal(r.code, 250, r.response);
    await relay.waitFor(before + 1);
    return relay.captured[before]!.raw.toString();
  };
  const sha = (s: string) => createHash('sha256').update(s).digest('hex');
  const tempFiles = () => readdirSync(os.tmpdir()).filter((f) => f.startsWith('portcullis-milter-'));

  it('by default gives every milter the message as received, in the same pass', async () => {
    const r = await relayWith(false);
    const text = await deliver(r, 'headers', 'body line\r\n');
    const fields = 'From:alice@remote.test\nTo:bob@example.com\nSubject:headers\nX-Remove:one\nX-Remove:two\nX-Remove:three\n';
    assert.match(text, new RegExp(`\\r\\nX-Reporter: subject=headers headers=6 hsha256=${sha(fields)} body=11\\r\\n`));
    assert.match(text, /\r\nSubject: changed subject\r\n/);
  });

  it('with sequential, gives the second milter the message with the first one\'s header and body changes applied', async () => {
    const r = await relayWith(true);
    const before = tempFiles().length;
    let text = await deliver(r, 'headers', 'body line\r\n');
    const fields = 'X-Inserted:at the top\nFrom:alice@remote.test\nTo:bob@example.com\nSubject:changed subject\nX-Remove:one\nX-Remove:three\nX-Added:added value\nX-Folded:first line\n\tsecond line\n';
    assert.match(text, new RegExp(`\\r\\nX-Reporter: subject=changed subject headers=8 hsha256=${sha(fields)} body=11\\r\\n`));
    text = await deliver(r, 'body', 'old body\r\n');
    assert.match(text, /\r\nX-Reporter: subject=body headers=6 hsha256=[0-9a-f]{64} body=28\r\n/);
    assert.ok(text.endsWith('\r\n\r\nreplaced body\r\nsecond line\r\n'));
    assert.equal(tempFiles().length, before, 'the copies are removed');
  });

  it('with sequential, a message without a blank line whose body the first milter replaces reaches the second with the blank line before the new body', async () => {
    const r = await relayWith(true);
    const before = r.captured.length;
    // All header section: the new body needs a blank line before it, in the copy the second milter
    // reads as in the message delivered (both written as applyContentEdits writes them).
    const sent = await r.send({ raw: 'From: alice@remote.test\r\nTo: bob@example.com\r\nSubject: body\r\n' });
    assert.equal(sent.code, 250, sent.response);
    await r.waitFor(before + 1);
    const text = r.captured[before]!.raw.toString();
    const fields = 'From:alice@remote.test\nTo:bob@example.com\nSubject:body\n';
    assert.match(text, new RegExp(`\\r\\nX-Reporter: subject=body headers=3 hsha256=${sha(fields)} body=28\\r\\n`));
    assert.ok(text.endsWith('\r\n\r\nreplaced body\r\nsecond line\r\n'), text);
  });
});

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hostedRelay, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import milter from '../src/index.js';
import { Daemon } from './support/daemon.js';

/*
 * What a milter negotiates, with the pymilter test milter: a unix socket address, "no reply" for
 * headers and body (SMFIP_NR_HDR / NR_EOH / NR_BODY), SMFIR_SKIP in the body, and progress
 * answers (SMFIR_PROGRESS) that keep a slow end of message alive.
 */
describe('milter: negotiated options with pymilter (unix socket, no-reply, skip, progress)', function () {
  this.timeout(60_000);
  let dir: string;
  let unixMilter: Daemon;
  let noReply: Daemon;
  const relays: HostedRelay[] = [];

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-milter-sock-'));
    [unixMilter, noReply] = await Promise.all([Daemon.pyMilter({ socket: path.join(dir, 'milter.sock') }), Daemon.pyMilter({ noreply: true })]);
  });
  after(async () => {
    for (const r of relays) await r.close();
    await unixMilter?.stop();
    await noReply?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const relayWith = async (milters: unknown[]) => {
    const r = await hostedRelay({ builtins: { 'relay-policy': relayPolicy, milter }, pluginsBefore: [{ use: 'milter', with: { milters } }] });
    relays.push(r);
    return r;
  };
  const deliver = async (relay: HostedRelay, subject: string, body: string) => {
    const before = relay.captured.length;
    const r = await relay.send({ raw: `From: alice@remote.test\r\nSubject: ${subject}\r\n\r\n${body}` });
    assert.equal(r.code, 250, r.response);
    await relay.waitFor(before + 1);
    return relay.captured[before]!.raw.toString();
  };

  it('talks to a milter on a unix socket (unix:/path)', async () => {
    const r = await relayWith([{ address: unixMilter.address }]);
    assert.match(await deliver(r, 'count', 'twelve bytes'), /\r\nX-Body-Bytes: 14\r\n/);
  });

  it('sends headers and body without waiting for answers the milter negotiated away, and it still sees every byte', async () => {
    const r = await relayWith([{ address: noReply.address }]);
    const body = 'x'.repeat(78) + '\r\n';
    assert.match(await deliver(r, 'count', body.repeat(3000)), new RegExp(`\\r\\nX-Body-Bytes: ${80 * 3000}\\r\\n`));
  });

  it('stops sending the body when the milter answers SMFIR_SKIP, and still ends the message', async () => {
    const r = await relayWith([{ address: unixMilter.address }]);
    const body = ('z'.repeat(78) + '\r\n').repeat(3000);
    const text = await deliver(r, 'skip', body);
    // The milter saw the first body packet only (64 KB at most), and the whole body was delivered.
    const seen = Number(/\r\nX-Body-Bytes: (\d+)\r\n/.exec(text)![1]);
    assert.ok(seen > 0 && seen <= 65535, `the milter saw ${seen} body bytes`);
    assert.ok(text.endsWith(`\r\n\r\n${body}`));
  });

  it('keeps waiting at end of message while the milter sends progress, past eomTimeout', async () => {
    const r = await relayWith([{ address: unixMilter.address, eomTimeout: '2s' }]);
    const t0 = Date.now();
    assert.match(await deliver(r, 'progress', 'body\r\n'), /\r\nX-Progress: three times\r\n/);
    assert.ok(Date.now() - t0 > 3000, 'the milter took longer than eomTimeout in all');
  });
});

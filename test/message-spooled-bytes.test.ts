import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { definePlugin, tempfail, type SpooledBytes } from '@portcullis/core';
import { hostedRelay, sendMail, type CaptureServer, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';

/*
 * The `message` hook's `info.spooled`: the bytes in the spool before the 250, with their length up
 * front (what spamd needs), read from memory for a small message and from the tmp file for one
 * past spool.inlineMax, without the plugin keeping a copy.
 */
describe('message hook: info.spooled gives the spooled bytes and their length before the 250', () => {
  let sink: CaptureServer;
  let relay: HostedRelay;
  const seen: Array<{ size: number; first: string; second: string; length: number }> = [];
  const read = async (s: SpooledBytes) => {
    const h = createHash('sha256');
    let n = 0;
    for await (const c of s.open()) {
      h.update(c as Buffer);
      n += (c as Buffer).length;
    }
    return { hash: h.digest('hex'), n };
  };
  const reader = definePlugin({
    name: 'spooled-reader',
    setup: () => ({
      data: () => ({ dropHeader: (f) => f.name.toLowerCase() === 'x-drop' }),
      async message(txn, info) {
        const a = await read(info.spooled);
        const b = await read(info.spooled); // a second open starts again from the first byte
        seen.push({ size: info.spooled.size, first: a.hash, second: b.hash, length: a.n });
        return txn.headers?.get('subject') === 'refuse' ? tempfail(451, '4.7.0', 'refused after reading') : undefined;
      },
    }),
  });
  before(async () => {
    relay = await hostedRelay({ builtins: { 'relay-policy': relayPolicy, reader }, domain: 'example.com', plugins: [{ use: 'reader' }], config: { spool: { inlineMax: '64KB' } } });
    sink = relay.sink;
  });
  after(() => relay?.close());

  const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
  for (const [what, bodySize] of [['a small message held in memory', 1_000], ['a message spilled to the tmp file', 300_000]] as const) {
    it(`streams ${what} exactly as delivered after the Received line, dropped fields left out`, async () => {
      const body = 'x'.repeat(76) + '\r\n';
      const raw = `X-Drop: gone\r\nFrom: a@remote.test\r\nSubject: keep\r\n\r\n${body.repeat(Math.ceil(bodySize / body.length))}`;
      const before = sink.messages.length;
      const r = await sendMail({ port: relay.port, from: 'a@remote.test', to: 'bob@example.com', raw });
      assert.equal(r.code, 250, r.response);
      const expected = raw.slice('X-Drop: gone\r\n'.length);
      const s = seen.at(-1)!;
      assert.equal(s.size, Buffer.byteLength(expected));
      assert.equal(s.length, s.size);
      assert.equal(s.first, sha(expected));
      assert.equal(s.second, s.first);
      const got = (await sink.waitFor(before + 1))[before]!.raw;
      assert.ok(got.toString().endsWith(expected));
    });
  }

  it('lets the hook refuse after reading: nothing is queued', async () => {
    const before = sink.messages.length;
    const r = await sendMail({ port: relay.port, from: 'a@remote.test', to: 'bob@example.com', raw: 'Subject: refuse\r\n\r\n' + 'y'.repeat(200_000) + '\r\n' });
    assert.equal(r.response, '451 4.7.0 refused after reading');
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(sink.messages.length, before);
  });
});

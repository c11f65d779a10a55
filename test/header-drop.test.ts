import assert from 'node:assert/strict';
import { accept, definePlugin } from '@portcullis/core';
import { hostedRelay, sendMail, type CaptureServer, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';

/*
 * The core's `dropHeader` data handler: a plugin names top-level header fields to leave out of the
 * spooled message (what the mailauth plugin uses for forged Authentication-Results).
 */
describe('dropHeader: plugins remove header fields from the stored message', () => {
  let sink: CaptureServer;
  let relay: HostedRelay;
  const rawSeen: string[] = [];
  const dropper = definePlugin({
    name: 'dropper',
    setup: () => ({
      data: () => ({
        dropHeader: (f) => {
          if (f.name.toLowerCase() === 'x-explode') throw new Error('predicate bug');
          return f.name.toLowerCase() === 'x-forged';
        },
        raw: async (stream) => {
          const chunks: Buffer[] = [];
          for await (const c of stream) chunks.push(c as Buffer);
          rawSeen.push(Buffer.concat(chunks).toString());
        },
      }),
    }),
  });
  before(async () => {
    relay = await hostedRelay({ builtins: { 'relay-policy': relayPolicy, dropper }, domain: 'example.com', plugins: [{ use: 'dropper' }] });
    sink = relay.sink;
  });
  after(() => relay?.close());

  it('delivers the message without the dropped fields, byte for byte otherwise, while raw readers saw them', async () => {
    const raw = 'X-Forged: one\r\nFrom: a@remote.test\r\nX-Forged: two,\r\n folded\r\nSubject: keep\r\n\r\nX-Forged: body line stays\r\n';
    const r = await sendMail({ port: relay.port, from: 'a@remote.test', to: 'bob@example.com', raw });
    assert.equal(r.code, 250, r.response);
    await sink.waitFor(1);
    const got = sink.messages[0]!.raw.toString();
    const original = got.slice(got.indexOf('From: a@remote.test'));
    assert.equal(original, 'From: a@remote.test\r\nSubject: keep\r\n\r\nX-Forged: body line stays\r\n');
    assert.equal(rawSeen.at(-1), raw);
  });

  it('answers 451 4.3.0 and queues nothing when a dropHeader predicate throws', async () => {
    const before = sink.messages.length;
    const r = await sendMail({ port: relay.port, from: 'a@remote.test', to: 'bob@example.com', raw: 'X-Explode: 1\r\nFrom: a@remote.test\r\n\r\nbody\r\n' });
    assert.equal(r.response, '451 4.3.0 Temporary local problem, try again later');
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(sink.messages.length, before);
  });
});

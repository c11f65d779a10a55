import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { hostedRelay, RawSmtp, sendMail, type CaptureServer, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import recipients from '../src/index.js';

const builtins = { recipients, 'relay-policy': relayPolicy };
const DELAY = 200;
const MAX_DELAY = 1000;
const FREE = 3;
const PER_SESSION = 10;
const PER_CLIENT = 25;
const HARVEST_CLOSE = '421 4.7.0 Too many unknown recipients, closing connection';

describe('recipients: directory-harvest defence', function () {
  this.timeout(180_000);
  let sink: CaptureServer;
  let t: HostedRelay;
  before(async () => {
    t = await hostedRelay({
      builtins,
      domain: 'hosted.example',
      pluginsBefore: [
        {
          use: 'recipients',
          with: {
            sources: { users: { list: { addresses: ['alice@hosted.example', 'bob@hosted.example'] } } },
            domains: { 'hosted.example': ['users'] },
            harvest: { freeUnknown: FREE, delay: `${DELAY}ms`, maxDelay: `${MAX_DELAY}ms`, maxUnknownPerSession: PER_SESSION, maxUnknownPerClient: PER_CLIENT, window: '1h' },
          },
        },
      ],
    });
    sink = t.sink;
  });
  after(async () => {
    await t?.close();
  });

  it('does not slow known recipients in a session that has given unknown ones', async () => {
    const c = await RawSmtp.connect(t.port, '127.0.0.1', '127.0.0.7');
    try {
      await c.read();
      await c.cmd('EHLO client.test');
      await c.cmd('MAIL FROM:<a@outside.test>');
      for (let i = 0; i < FREE + 2; i++) assert.match(await c.cmd(`RCPT TO:<nobody${i}@hosted.example>`), /^550 5\.1\.1 /);
      const t0 = performance.now();
      assert.match(await c.cmd('RCPT TO:<alice@hosted.example>'), /^250 /);
      const knownMs = performance.now() - t0;
      const t1 = performance.now();
      assert.match(await c.cmd('RCPT TO:<nobody-x@hosted.example>'), /^550 5\.1\.1 /);
      const unknownMs = performance.now() - t1;
      assert.ok(knownMs < DELAY, `known recipient answered in ${knownMs.toFixed(0)} ms`);
      assert.ok(unknownMs >= 3 * DELAY - 20, `the next unknown one waited ${unknownMs.toFixed(0)} ms`);
    } finally {
      c.close();
    }
  });

  it('ends a harvest of 1,000 random recipients with 421 4.7.0 at the configured counts: nothing queued, no DSN, and another client is served at normal speed meanwhile', async () => {
    const harvester = '127.0.0.5';
    const sessions: Array<Array<{ code: string; ms: number }>> = [];
    let asked = 0;
    let legitDone = false;
    const legitTimes: number[] = [];
    const legit = (async () => {
      // A legitimate client from another address, sending real mail throughout the harvest.
      for (let i = 0; i < 10; i++) {
        const t0 = performance.now();
        const r = await sendMail({ port: t.port, localAddress: '127.0.0.6', from: `friend${i}@outside.test`, to: i % 2 ? 'alice@hosted.example' : 'bob@hosted.example', text: `message ${i}` });
        legitTimes.push(performance.now() - t0);
        assert.equal(r.ok, true, r.response);
        await new Promise((res) => setTimeout(res, 300));
      }
      legitDone = true;
    })();
    while (asked < 1000) {
      const c = await RawSmtp.connect(t.port, '127.0.0.1', harvester);
      const replies: Array<{ code: string; ms: number }> = [];
      try {
        assert.match(await c.read(), /^220 /);
        await c.cmd('EHLO harvester.test');
        assert.match(await c.cmd('MAIL FROM:<spam@outside.test>'), /^250 /);
        while (asked < 1000) {
          const t0 = performance.now();
          const reply = await c.cmd(`RCPT TO:<${randomBytes(5).toString('hex')}@hosted.example>`);
          asked++;
          replies.push({ code: reply.slice(0, 9), ms: performance.now() - t0 });
          if (reply.startsWith('421 ')) {
            assert.equal(reply, HARVEST_CLOSE);
            await c.waitClosed();
            break;
          }
          assert.equal(reply.slice(0, 9), '550 5.1.1');
        }
      } finally {
        c.close();
      }
      sessions.push(replies);
    }
    await legit;
    assert.ok(legitDone);

    // Session 1: 421 at the PER_SESSION-th unknown recipient; delays grow after FREE.
    const first = sessions[0]!;
    assert.equal(first.length, PER_SESSION);
    assert.equal(first[PER_SESSION - 1]!.code, '421 4.7.0');
    first.slice(0, PER_SESSION - 1).forEach((r, i) => {
      const expected = Math.min(Math.max(0, i + 1 - FREE) * DELAY, MAX_DELAY);
      assert.ok(r.ms >= expected - 20 && r.ms < expected + 700, `unknown recipient ${i + 1}: ${r.ms.toFixed(0)} ms, expected about ${expected}`);
    });
    // Across sessions: past PER_CLIENT unknowns from the address, every session ends at its first one.
    const total = (n: number) => sessions.slice(0, n).reduce((a, s) => a + s.length, 0);
    const blockedFrom = sessions.findIndex((s) => s.length === 1 && s[0]!.code === '421 4.7.0');
    assert.ok(blockedFrom > 0, 'sessions end at their first RCPT once the address is over its count');
    assert.ok(total(blockedFrom) <= PER_CLIENT + 1, `the address was cut off after ${total(blockedFrom)} recipients (configured ${PER_CLIENT})`);
    for (const s of sessions.slice(blockedFrom)) assert.deepEqual(s.map((r) => r.code), ['421 4.7.0']);
    assert.equal(asked, 1000);

    // Nothing queued, no DSN: only the legitimate client's 10 messages ever reached the next hop.
    await sink.waitFor(10);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(sink.messages.length, 10);
    assert.ok(sink.messages.every((m) => m.from.startsWith('friend')), 'no bounce (null sender) left the relay');
    assert.equal(((await t.relay.status()) as { queue: { messages: number } }).queue.messages, 0);

    const sorted = [...legitTimes].sort((a, b) => a - b);
    const delays = first.map((r) => Math.round(r.ms));
    console.log(`      harvest: ${sessions.length} sessions, ${asked} recipients; session 1 RCPT times (ms): ${delays.join(', ')}; cut off after ${total(blockedFrom)} unknown; legitimate client: median ${sorted[5]!.toFixed(0)} ms, max ${sorted[9]!.toFixed(0)} ms per message`);
    assert.ok(sorted[9]! < 1000, `legitimate messages took at most ${sorted[9]!.toFixed(0)} ms`);
  });
});

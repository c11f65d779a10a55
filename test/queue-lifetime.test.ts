import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { CaptureServer, freePort, sendMail, startTestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';

describe('queue lifetime and storage', function () {
  this.timeout(30_000);

  it('bounces a recipient still deferred after maxQueueTime, saying how often it tried', async () => {
    const senderMx = await CaptureServer.start();
    const downPort = await freePort();
    const relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy },
      config: {
        delivery: { retrySchedule: ['300ms'], maxQueueTime: '2s', delayWarning: 0 },
        plugins: [{ use: 'relay-policy', with: { domains: { 'example.com': { nexthop: `127.0.0.1:${downPort}`, tls: 'none' }, 'sender.test': { nexthop: senderMx.address, tls: 'none' } } } }],
      },
    });
    try {
      assert.equal((await sendMail({ port: relay.port, from: 'alice@sender.test', to: 'bob@example.com', subject: 'never arrives' })).ok, true);
      const [dsn] = await senderMx.waitFor(1, 15_000);
      const raw = dsn!.raw.toString();
      assert.match(raw, /Final-Recipient: rfc822; bob@example\.com\r\nAction: failed\r\nStatus: 5\.0\.0\r\n/);
      assert.match(raw, /ECONNREFUSED.*\(gave up after \d+ attempts\)/);
      assert.equal(senderMx.messages.length, 1, 'no delay warning when delayWarning is 0');
      for (let i = 0; i < 50 && relay.relay.queue.list().length; i++) await new Promise((res) => setTimeout(res, 100));
      assert.equal(relay.relay.queue.list().length, 0, 'the expired message left the queue');
    } finally {
      await relay.stop();
      await senderMx.close();
    }
  });

  it('stores the body once for a message with many recipients', async () => {
    const downPort = await freePort();
    const relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy },
      config: { delivery: { retrySchedule: ['1h'] }, plugins: [{ use: 'relay-policy', with: { domains: { 'example.com': { nexthop: `127.0.0.1:${downPort}`, tls: 'none' } } } }] },
    });
    try {
      const to = Array.from({ length: 50 }, (_, i) => `user${i}@example.com`);
      const r = await sendMail({ port: relay.port, from: 'a@client.test', to, subject: 'fifty', text: 'x'.repeat(20_000) });
      assert.equal(r.ok, true);
      await new Promise((res) => setTimeout(res, 500));
      // A small message is one record in a segment (seg/*.seg): the body is in it once.
      assert.deepEqual(readdirSync(path.join(relay.spoolDir, 'queue')).filter((f) => f.endsWith('.msg')), []);
      const segDir = path.join(relay.spoolDir, 'seg');
      const stored = readdirSync(segDir).filter((f) => f.endsWith('.seg')).reduce((n, f) => n + statSync(path.join(segDir, f)).size, 0);
      assert.ok(stored > 20_000 && stored < 2 * 20_000, `${stored} bytes stored for a 20 KB body`);
      assert.equal(relay.relay.queue.list()[0]!.pending.length, 50);
    } finally {
      await relay.stop();
    }
  });
});

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CaptureServer, messageIds, sendLoad, sendMail, sinkRelayConfig, startTestRelay, freePort, RelayProcess } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';

describe('crash safety under load (issue 4)', function () {
  this.timeout(240_000);

  it('loses nothing that got a 250 when the relay is SIGKILLed three times during 2,000 messages', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-fault-'));
    const sink = await CaptureServer.start();
    const port = await freePort();
    const config = RelayProcess.write(dir, sinkRelayConfig({ port, spoolDir: path.join(dir, 'spool'), nexthop: sink.address }));
    const relay = new RelayProcess(config, port, { logFile: path.join(dir, 'relay.log') });
    await relay.start();
    const total = 2000;
    const concurrency = 20;
    const killAt = [400, 900, 1400];
    let restarting: Promise<void> | undefined;
    // A message whose attempt died with the relay is sent again, as a real client would.
    const load = sendLoad(port, {
      prefix: 'fault',
      total,
      concurrency,
      greetingMs: 5000,
      replyMs: 10_000,
      deadlineMs: 180_000,
      beforeAttempt: () => restarting,
      onAck: (n) => {
        if (killAt.length && n >= killAt[0]!) {
          killAt.shift();
          restarting ??= (async () => {
            await relay.kill();
            await relay.start();
          })().finally(() => (restarting = undefined));
        }
      },
    });
    try {
      const { acked, attempts } = await load;
      assert.equal(killAt.length, 0, 'the relay was killed three times');
      assert.equal(acked.size, total, `${acked.size} of ${total} messages got a 250`);
      // Everything acknowledged must arrive; the queue left by the kills is delivered after restart.
      const arrived = new Map<string, number>();
      const count = () => {
        arrived.clear();
        for (const id of messageIds(sink)) arrived.set(id, (arrived.get(id) ?? 0) + 1);
      };
      for (let i = 0; i < 600; i++) {
        count();
        if ([...acked].every((id) => arrived.has(id))) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const missing = [...acked].filter((id) => !arrived.has(id));
      const duplicates = [...arrived.values()].filter((n) => n > 1).length;
      console.log(`      fault test: ${total} acknowledged, ${attempts} attempts, ${sink.messages.length} deliveries, ${missing.length} missing, ${duplicates} duplicated`);
      assert.deepEqual(missing, []);
      assert.ok(duplicates <= 3 * concurrency * 2, `${duplicates} duplicates: more than the messages in flight at three crashes`);
    } finally {
      await relay.stop();
      await sink.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('defers while the next hop is down for 30 s and delivers everything once it is back', async () => {
    const nexthopPort = await freePort();
    const relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy },
      config: {
        delivery: { retrySchedule: ['3s'] },
        plugins: [{ use: 'relay-policy', with: { domains: { 'example.com': { nexthop: `127.0.0.1:${nexthopPort}`, tls: 'none' } } } }],
      },
    });
    let sink: CaptureServer | undefined;
    try {
      const sent = await Promise.all(Array.from({ length: 20 }, (_, i) => sendMail({ port: relay.port, from: 'a@client.test', to: `u${i}@example.com`, messageId: `<down-${i}@client.test>` })));
      assert.ok(sent.every((r) => r.ok));
      await new Promise((r) => setTimeout(r, 30_000));
      const queued = relay.relay.queue.list();
      assert.equal(queued.length, 20, 'all 20 are still queued after 30 s');
      assert.ok(queued.every((q) => q.attempts >= 2), 'each was tried more than once');
      assert.match(queued[0]!.lastError ?? '', /ECONNREFUSED/);
      sink = await CaptureServer.start({ port: nexthopPort });
      await sink.waitFor(20, 15_000);
      const ids = new Set(sink.messages.map((m) => /Message-ID: <([^>]+)>/i.exec(m.raw.toString())?.[1]));
      assert.equal(ids.size, 20);
    } finally {
      await relay.stop();
      await sink?.close();
    }
  });
});

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CaptureServer, messageIds, sendNumbered, sinkRelayConfig, freePort, RelayProcess } from '@portcullis/testkit';

/**
 * The segment spool's commit, stopped by SIGKILL at each of its steps (PORTCULLIS_CRASH_AT): after
 * the batch's write and before its fdatasync, and after the fdatasync and before any 250. Ten
 * clients send at once so batches hold several commits. After a restart every acknowledged message
 * must arrive; the batch that died before its fdatasync was never acknowledged.
 */
describe('spool crash points (segment group commit)', function () {
  this.timeout(120_000);

  for (const point of ['segment-written', 'segment-synced']) {
    it(`loses no acknowledged message when the relay dies at ${point} in its 5th batch`, async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-crashpt-'));
      const sink = await CaptureServer.start();
      const port = await freePort();
      const config = RelayProcess.write(dir, sinkRelayConfig({ port, spoolDir: path.join(dir, 'spool'), nexthop: sink.address, connectionsPerIp: 100 }));
      const relay = new RelayProcess(config, port, { logFile: path.join(dir, 'relay.log'), env: { PORTCULLIS_CRASH_AT: `${point}:5` } });
      await relay.start();
      const outcome = new Map<string, string>();
      let n = 0;
      let dead = false;
      void relay.exited().then(() => (dead = true));
      try {
        await Promise.all(
          Array.from({ length: 10 }, async () => {
            while (!dead && n < 400) {
              const id = `crash-${point}-${n++}@client.test`;
              outcome.set(id, await sendNumbered(port, id, { lines: 60, greetingMs: 5000, replyMs: 10_000 }));
            }
          }),
        );
        assert.ok(dead, 'the relay killed itself at the crash point');
        const acked = [...outcome].filter(([, o]) => o === 'acked').map(([id]) => id);
        const lost = [...outcome].filter(([, o]) => o === 'lost').map(([id]) => id);
        assert.ok(acked.length >= 4, `${acked.length} acknowledged before the crash`);
        assert.ok(lost.length >= 1, 'the batch in flight got no reply');

        relay.env = {};
        await relay.start();
        const deadline = Date.now() + 30_000;
        while (Date.now() < deadline && !acked.every((id) => messageIds(sink).includes(id))) await new Promise((r) => setTimeout(r, 100));
        const arrived = messageIds(sink);
        assert.deepEqual(acked.filter((id) => !arrived.includes(id)), [], 'every acknowledged message arrived');
        if (point === 'segment-written') {
          // Killed before the fdatasync: with the page cache intact the records may well be on disk
          // and be delivered (at least once), but none of them was acknowledged.
          assert.ok(lost.every((id) => outcome.get(id) !== 'acked'));
        } else {
          // Killed after the fdatasync, before the 250: the batch is durable and gets delivered
          // although its clients never heard 250 (they will send again: a duplicate, never a loss).
          await new Promise((r) => setTimeout(r, 500));
          assert.ok(lost.some((id) => messageIds(sink).includes(id)), 'the synced but unanswered batch was delivered after the restart');
        }
      } finally {
        await relay.stop();
        await sink.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

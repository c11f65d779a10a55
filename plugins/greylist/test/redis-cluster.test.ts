import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { CaptureServer, freePort, sendMail, waitUntil, RedisServer, RelayProcess } from '@portcullis/testkit';

/** The built plugin, by path: the CLI finds stock plugins by name, this one is given as a file. */
const GREYLIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));
const DELAY = 2_000;

describe('two relay processes greylisting on one real redis-server', function () {
  this.timeout(120_000);
  let redis: RedisServer;
  let sink: CaptureServer;
  const nodes: Array<{ relay: RelayProcess; admin: number }> = [];
  let net = 60;
  before(async () => {
    sink = await CaptureServer.start();
    redis = await RedisServer.start(await freePort());
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      const admin = await freePort();
      const relay = await RelayProcess.start(
        {
          hostname: `node${i + 1}.test`,
          listen: [{ host: '127.0.0.1', port, greetingDelay: 0 }],
          admin: { enabled: true, host: '127.0.0.1', port: admin },
          sharedState: { redis: { url: redis.url, keyPrefix: 'greylist-cluster:', timeout: '300ms' } },
          log: { level: 'info' },
          plugins: [
            { use: GREYLIST, with: { delay: `${DELAY}ms` } },
            { use: 'relay-policy', with: { domains: { 'example.test': { nexthop: sink.address, tls: 'none' } } } },
          ],
        },
        port,
      );
      nodes.push({ relay, admin });
    }
    await waitUntil(() => nodes.every((n) => n.relay.output.includes('Redis connected')), 'both nodes connected to Redis', 10_000);
  });
  after(async () => {
    for (const n of nodes) await n.relay.stop();
    await redis?.stop();
    await sink?.close();
  });

  const send = (i: number, ip: string, from: string) => sendMail({ port: nodes[i]!.relay.port, localAddress: ip, from, to: 'u@example.test' }).then((r) => r.response);
  /** One sample of the node's /metrics. */
  const metric = async (i: number, line: RegExp) => {
    const text = await (await fetch(`http://127.0.0.1:${nodes[i]!.admin}/metrics`)).text();
    const m = line.exec(text);
    return m ? Number(m[1]) : undefined;
  };

  it('greylists on one node and passes the retry on the other once the delay is over', async () => {
    const ip = `127.0.${++net}.1`;
    assert.equal(await send(0, ip, 'a@sender.test'), `451 4.7.1 Greylisted, try again in ${DELAY / 1000} seconds`);
    assert.match(await send(1, ip, 'a@sender.test'), /^451 4\.7\.1 Greylisted, try again in [12] seconds?$/, 'node 2 knows the triplet node 1 saw');
    await new Promise((r) => setTimeout(r, DELAY + 200));
    assert.match(await send(1, ip, 'a@sender.test'), /^250 /);
    assert.match(await send(0, ip, 'a@sender.test'), /^250 /, 'the pass on node 2 is known on node 1');
    assert.equal(await metric(0, /^portcullis_greylist_results_total\{result="known"\} (\d+)$/m), 1);
    assert.equal(await metric(1, /^portcullis_greylist_results_total\{result="passed"\} (\d+)$/m), 1);
  });

  it('accepts new triplets on both nodes while Redis is stopped, and counts each fallback in /metrics', async () => {
    await redis.stop();
    for (const [i] of nodes.entries()) {
      for (let k = 0; k < 3; k++) assert.match(await send(i, `127.0.${++net}.1`, `outage${k}@sender.test`), /^250 /, `node ${i + 1}, message ${k + 1}`);
      assert.equal(await metric(i, /^portcullis_greylist_fallbacks_total (\d+)$/m), 3);
    }
    for (const n of nodes) {
      const lines = n.relay.lines().filter((l) => String(l['msg']).startsWith('greylist: shared store unreachable'));
      assert.equal(lines.length, 1, 'one warning per minute, however many recipients fell back');
    }
  });
});

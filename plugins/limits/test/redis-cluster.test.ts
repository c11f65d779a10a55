import assert from 'node:assert/strict';
import { CaptureServer, freePort, sendMail, waitUntil, RedisServer, RelayProcess } from '@portcullis/testkit';

const N = 4;

describe('two relay processes sharing limits on a real redis-server', function () {
  this.timeout(120_000);
  let redis: RedisServer;
  let sink: CaptureServer;
  const nodes: RelayProcess[] = [];
  let seq = 0;
  before(async () => {
    sink = await CaptureServer.start();
    redis = await RedisServer.start(await freePort());
    nodes.push(
      ...(await RelayProcess.sharingRedis({
        count: 2,
        url: redis.url,
        keyPrefix: 'cluster-test:',
        ports: freePort,
        plugins: [
          { use: 'limits', with: { perIp: { messageRate: { limit: N, window: '10m' }, connectionRate: false } } },
          { use: 'relay-policy', with: { domains: { 'example.test': { nexthop: sink.address, tls: 'none' } } } },
        ],
      })),
    );
  });
  after(async () => {
    for (const n of nodes) await n.stop();
    await redis?.stop();
    await sink?.close();
  });

  const send = (node: RelayProcess) => sendMail({ port: node.port, localAddress: '127.0.0.9', from: `s${++seq}@outside.test`, to: 'u@example.test' }).then((r) => r.response);
  const REFUSED = '451 4.7.1 Too many messages (address rate limit), try again later';

  it(`refuses message ${N + 1} from one address through either node`, async () => {
    for (let i = 0; i < N; i++) assert.match(await send(nodes[i % 2]!), /^250 /, `message ${i + 1}`);
    assert.equal(await send(nodes[0]!), REFUSED);
    assert.equal(await send(nodes[1]!), REFUSED);
  });

  it('keeps both nodes accepting within their own local limits while Redis is down', async () => {
    await redis.stop();
    for (const node of nodes) {
      // Each node alone allows N, then refuses: never "no limits", never "refuse everything".
      for (let i = 0; i < N; i++) assert.match(await send(node), /^250 /, `local message ${i + 1} on ${node.port}`);
      assert.equal(await send(node), REFUSED);
    }
    for (const node of nodes) {
      const down = node.lines().filter((l) => String(l['msg']).startsWith('Redis unreachable'));
      assert.equal(down.length, 1, 'one log line per outage, however many operations fell back');
    }
  });

  it('shares counting again once Redis is back', async () => {
    await redis.restart();
    await waitUntil(() => nodes.every((n) => n.output.includes('Redis reachable again')), 'both nodes back on Redis', 15_000);
    // The restarted Redis is empty: a fresh shared window of N for the address, across both nodes.
    for (let i = 0; i < N; i++) assert.match(await send(nodes[(i + 1) % 2]!), /^250 /, `message ${i + 1}`);
    assert.equal(await send(nodes[0]!), REFUSED);
    assert.equal(await send(nodes[1]!), REFUSED);
  });
});

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RawSmtp, RedisServer, freePort, pollUntil, RelayProcess } from '@portcullis/testkit';
import { adminGet, key, parseMetrics } from './support/admin.js';

/**
 * The per-address connection limits of `portcullis start` with `workers: 2`: the primary holds the
 * slots for both workers, so a limit of N is N across them, not 2 × N; with and without Redis.
 */
const N = 3;

const logHas = (file: string, msg: string) => readFileSync(file, 'utf8').split('\n').some((l) => l.includes(`"msg":"${msg}"`));

for (const store of ['memory', 'redis'] as const) {
  describe(`workers: 2 and a per-address limit of ${N} (${store === 'redis' ? 'Redis configured' : 'no Redis'})`, function () {
    this.timeout(120_000);
    let dir: string;
    let relay: RelayProcess;
    let redis: RedisServer | undefined;
    let port: number;
    let admin: number;
    before(async () => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-wlimits-'));
      if (store === 'redis') redis = await RedisServer.start(await freePort());
      port = await freePort();
      admin = await freePort();
      const file = RelayProcess.write(dir, {
        hostname: 'relay.test',
        workers: 2,
        listen: [{ host: '127.0.0.1', port, greetingDelay: 0 }],
        spool: { dir: path.join(dir, 'spool') },
        limits: { connectionsPerIp: N },
        admin: { enabled: true, port: admin },
        log: { level: 'info' },
        ...(redis ? { sharedState: { redis: { url: redis.url, keyPrefix: 'wl:' } } } : {}),
        plugins: [{ use: 'limits', with: { exempt: { networks: ['127.0.0.5/32'] }, perIp: { connections: N - 1, connectionRate: false } } }],
      });
      relay = new RelayProcess(file, port, { logFile: path.join(dir, 'relay.log') });
      await relay.start();
      assert.ok(await pollUntil(() => logHas(relay.logFile, 'ready: every worker is listening'), 30_000), 'both workers ready');
    });
    after(async () => {
      await relay?.stop();
      await redis?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    const count = (replies: string[], re: RegExp) => replies.filter((r) => re.test(r)).length;

    it(`refuses exactly one of ${N + 1} simultaneous connections from one address with 421 4.7.0 while both workers hold some (limits.connectionsPerIp)`, async () => {
      const { clients, replies } = await RawSmtp.openMany(port, '127.0.0.5', N + 1);
      try {
        assert.equal(count(replies, /^220 /), N, replies.join(' | '));
        assert.deepEqual(replies.slice(N), ['421 4.7.0 Too many connections from your address, try again later'], 'the one past the limit');
        const m = parseMetrics((await adminGet(admin, '/metrics')).body);
        const open = [1, 2].map((w) => m.get(key('portcullis_worker_connections_open', { worker: String(w) })) ?? 0);
        assert.ok(open[0]! >= 1 && open[1]! >= 1, `connections on both workers: ${open}`);
        assert.equal(m.get(key('portcullis_connections_refused_total', { listener: String(port), reason: 'connectionsPerIp' })), 1);
      } finally {
        for (const c of clients) c.close();
      }
      // Closed connections give their slots back: the address gets all N again.
      assert.ok(
        await pollUntil(async () => {
          const again = await RawSmtp.openMany(port, '127.0.0.5', N);
          for (const c of again.clients) c.close();
          return count(again.replies, /^220 /) === N;
        }, 10_000),
        'the full limit again once the connections closed',
      );
    });

    it(`refuses exactly one of ${N} simultaneous connections from one address with 421 4.7.0 (@portcullis/limits perIp.connections: ${N - 1})`, async () => {
      const { clients, replies } = await RawSmtp.openMany(port, '127.0.0.6', N);
      for (const c of clients) c.close();
      assert.equal(count(replies, /^220 /), N - 1, replies.join(' | '));
      assert.equal(count(replies, /^421 4\.7\.0 Too many connections from your address/), 1, replies.join(' | '));
    });
  });
}

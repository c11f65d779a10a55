import assert from 'node:assert/strict';
import { ClusterMetrics, clusterReadiness } from '@portcullis/core/internal';
import { freePort, RawSmtp, rawSend, RedisServer } from '@portcullis/testkit';
import { ClusterHarness } from './support/cluster-harness.js';
import { key, parseMetrics } from './support/admin.js';

/**
 * Two real worker processes forked with node:cluster share one listening port; their shared state
 * (counters, concurrency slots) is held by the primary (this test process) over the IPC channel.
 * The relay's limits must give the same answers as one process.
 */
const CORE_LIMIT = 3; // limits.connectionsPerIp (the core's check)
const PLUGIN_LIMIT = 2; // @portcullis/limits perIp.connections
const RATE = 5; // @portcullis/limits perIp.connectionRate per minute

function config(port: number, redisUrl?: string): Record<string, unknown> {
  return {
    hostname: 'relay.test',
    listen: [{ host: '127.0.0.1', port, greetingDelay: 0 }],
    limits: { connectionsPerIp: CORE_LIMIT },
    admin: { enabled: true, host: '127.0.0.1', port: 0 },
    ...(redisUrl ? { sharedState: { redis: { url: redisUrl, keyPrefix: `cw${port}:` } } } : {}),
    plugins: [
      {
        use: 'limits',
        with: {
          // 127.0.0.5 and .9 are exempt from the plugin: they meet only the core's limit.
          exempt: { networks: ['127.0.0.5/32', '127.0.0.9/32'] },
          perIp: { connections: PLUGIN_LIMIT, connectionRate: { limit: RATE, window: '1m' }, messageRate: false, recipientRate: false, nullSenderRate: false },
          perSender: { messageRate: false, recipientRate: false },
        },
      },
      { use: 'accept-all' },
    ],
  };
}

/** Polls an asynchronous condition (testkit's waitUntil takes a synchronous one). */
async function until(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const count = (replies: string[], re: RegExp) => replies.filter((r) => re.test(r)).length;

async function perWorkerOpen(h: ClusterHarness): Promise<number[]> {
  const m = parseMetrics(await new ClusterMetrics({ workers: () => h.links() }).metrics());
  return h.links().map((w) => m.get(key('portcullis_worker_connections_open', { worker: String(w.id) })) ?? -1);
}

for (const store of ['memory', 'redis'] as const) {
  describe(`two worker processes sharing limits through the primary (${store === 'redis' ? 'Redis configured' : 'no Redis'})`, function () {
    this.timeout(90_000);
    let h: ClusterHarness;
    let redis: RedisServer | undefined;
    let port: number;
    before(async () => {
      if (store === 'redis') redis = await RedisServer.start(await freePort());
      port = await freePort();
      h = await ClusterHarness.start(config(port, redis?.url), 2);
    });
    after(async () => {
      await h?.stop();
      await redis?.stop();
    });

    it(`refuses exactly one of ${CORE_LIMIT + 1} simultaneous connections from one address with 421 (the core's connectionsPerIp), though they land on both workers`, async () => {
      const { clients, replies } = await RawSmtp.openMany(port, '127.0.0.5', CORE_LIMIT + 1);
      try {
        assert.equal(count(replies, /^220 /), CORE_LIMIT, replies.join(' | '));
        assert.equal(count(replies, /^421 4\.7\.0 /), 1, replies.join(' | '));
        const open = await perWorkerOpen(h);
        assert.ok(open.every((n) => n >= 1), `connections spread over both workers: ${open}`);
      } finally {
        for (const c of clients) c.close();
      }
      await until(async () => (await perWorkerOpen(h)).every((n) => n === 0), 'the workers saw every connection close');
      // Each worker gave its slots back as its connections closed (one notice per event-loop turn).
      await until(async () => h.host.state.slots('core:connectionsPerIp', CORE_LIMIT).held('127.0.0.5') === 0, 'the primary got every release', 5000);
      assert.deepEqual(h.links().map((w) => h.host.heldBy(w.id)), [0, 0]);
      // Every slot was given back: the address gets its full limit again.
      const again = await RawSmtp.openMany(port, '127.0.0.5', CORE_LIMIT);
      assert.equal(count(again.replies, /^220 /), CORE_LIMIT, again.replies.join(' | '));
      for (const c of again.clients) c.close();
    });

    it(`refuses exactly one of ${PLUGIN_LIMIT + 1} simultaneous connections from one address with 421 4.7.0 (@portcullis/limits perIp.connections)`, async () => {
      const { clients, replies } = await RawSmtp.openMany(port, '127.0.0.6', PLUGIN_LIMIT + 1);
      try {
        assert.equal(count(replies, /^220 /), PLUGIN_LIMIT, replies.join(' | '));
        assert.equal(count(replies, /^421 4\.7\.0 Too many connections from your address/), 1, replies.join(' | '));
      } finally {
        for (const c of clients) c.close();
      }
    });

    it(`counts a connection rate of ${RATE} per minute once across both workers: connection ${RATE + 1} is refused`, async () => {
      const replies: string[] = [];
      for (let i = 0; i < RATE + 1; i++) {
        const c = await RawSmtp.connect(port, '127.0.0.1', '127.0.0.7');
        // The connect hook answers in place of the greeting.
        replies.push(await c.read());
        c.close();
      }
      assert.equal(count(replies, /^220 /), RATE, replies.join(' | '));
      assert.match(replies[RATE]!, /^421 4\.7\.0 Too many connections from your address in a short time/);
    });

    it('reports /metrics totals equal to the sum of what each worker counted, and to the messages sent', async () => {
      const sent = 12;
      for (let i = 0; i < sent; i++) {
        const { reply, client } = await rawSend(port, `Subject: m${i}\r\n\r\nbody ${i}\r\n`, { localAddress: '127.0.0.5' } /* exempt from the plugin's rates */);
        client.close();
        assert.match(reply, /^250 2\.0\.0 /);
      }
      const agg = new ClusterMetrics({ workers: () => h.links() });
      const total = parseMetrics(await agg.metrics());
      const each = (await agg.collect()).map((a) => a.metrics!);
      const accepted = key('portcullis_transactions_total', { outcome: 'accepted' });
      const perWorker = each.map((ms) => ms.find((m) => m.name === 'portcullis_transactions_total')?.values.find((v) => v.labels['outcome'] === 'accepted')?.value ?? 0);
      assert.ok(perWorker.every((n) => n > 0), `messages on both workers: ${perWorker}`);
      assert.equal(total.get(accepted), sent);
      assert.equal(perWorker.reduce((a, b) => a + b, 0), sent);
      // Histograms merge bucket by bucket.
      assert.equal(total.get('portcullis_message_size_bytes_count'), sent);
      assert.equal(total.get(key('portcullis_message_size_bytes_bucket', { le: '+Inf' })), sent);
      for (const w of h.links()) assert.equal(total.get(key('portcullis_worker_up', { worker: String(w.id) })), 1);
      // Every worker counts in the store this variant means (min across workers: 0 if any fell back).
      assert.equal(total.get(key('portcullis_shared_state_connected', { store: store === 'redis' ? 'redis' : 'cluster' })), 1);
      assert.equal(total.get('portcullis_shared_state_fallbacks_total'), 0);
      assert.equal(total.get('portcullis_build_info') ?? [...total].find(([k]) => k.startsWith('portcullis_build_info'))?.[1], 1);
    });

    it('is ready only when every worker is, naming the worker and check that is not', async () => {
      const workers = () => h.links();
      const ok = await clusterReadiness({ workers, expected: () => 2 });
      assert.equal(ok.ready, true, JSON.stringify(ok));
      const [a] = h.links();
      await a!.channel.request('test.fail-readiness', true);
      const bad = await clusterReadiness({ workers, expected: () => 2 });
      assert.equal(bad.ready, false);
      assert.deepEqual(bad.checks.filter((c) => !c.ready).map((c) => [c.name, c.detail]), [[`worker ${a!.id}: test`, 'made to fail by the test']]);
      await a!.channel.request('test.fail-readiness', false);
    });

    it("frees a killed worker's slots at once: the address gets its full limit back", async () => {
      const { clients, replies } = await RawSmtp.openMany(port, '127.0.0.9', CORE_LIMIT);
      assert.equal(count(replies, /^220 /), CORE_LIMIT, replies.join(' | '));
      const holders = h.links().filter((w) => h.host.heldBy(w.id) > 0);
      assert.ok(holders.length === 2, 'both workers hold slots');
      const victim = holders[0]!;
      const survivor = holders[1]!;
      const survivorHeld = (await perWorkerOpen(h))[h.links().indexOf(survivor)]!;
      await h.kill(victim.id);
      assert.ok(h.freedOnExit.get(victim.id)! >= 1, `the primary freed the victim's slots: ${h.freedOnExit.get(victim.id)}`);
      // The survivor's connections still count: the address gets exactly what the victim held.
      const more = await RawSmtp.openMany(port, '127.0.0.9', CORE_LIMIT - survivorHeld + 1);
      assert.equal(count(more.replies, /^220 /), CORE_LIMIT - survivorHeld, more.replies.join(' | '));
      assert.equal(count(more.replies, /^421 /), 1, more.replies.join(' | '));
      const down = await clusterReadiness({ workers: () => h.links(), expected: () => 2 });
      assert.equal(down.ready, false);
      assert.equal(down.checks.find((c) => c.name === 'workers')?.detail, '1 of 2 workers running');
      for (const c of [...clients, ...more.clients]) c.close();
      await h.fork(); // the replacement, as the primary's restart would
    });
  });
}

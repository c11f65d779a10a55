import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort, RawSmtp, selfSignedFiles, startTestRelay, waitUntil, type TestRelay, RedisServer } from '@portcullis/testkit';
import relayPolicy, { userLine } from '@portcullis/relay-policy';
import dnsbl from '@portcullis/dnsbl';
import limits from '@portcullis/limits';
import { Dnsmasq } from '../plugins/mx-router/test/support/dnsmasq.js';
import { adminGet, parseMetrics } from './support/admin.js';

/**
 * Two relays on one real redis-server share relay-policy's AUTH failure throttle and the DNSBL
 * cache (the rate limits' sharing is tested with two relay processes in plugins/limits).
 */
describe('state shared by two relays through Redis', function () {
  this.timeout(60_000);
  let redis: RedisServer;
  let dns: Dnsmasq;
  const nodes: TestRelay[] = [];
  before(async () => {
    redis = await RedisServer.start(await freePort());
    dns = await Dnsmasq.start({ lines: ['host-record=9.0.0.127.bl.test,127.0.0.2', 'host-record=2.0.0.127.bl.test,127.0.0.2'] });
    const tls = await selfSignedFiles('relay.test');
    const users = path.join(tls.dir, 'users.passwd');
    writeFileSync(users, (await Promise.all(['alice', 'bob', 'carol'].map((u) => userLine(`${u}@hosted.test`, 'right password')))).join('\n') + '\n');
    for (let i = 0; i < 2; i++) {
      nodes.push(
        await startTestRelay({
          builtins: { 'relay-policy': relayPolicy, dnsbl, limits },
          config: {
            tls: { key: tls.key, cert: tls.cert },
            listen: [{ host: '127.0.0.1', port: 0, tls: 'starttls', auth: 'optional', greetingDelay: 0 }],
            dns: { servers: [dns.server] },
            sharedState: { redis: { url: redis.url, keyPrefix: 'shared-test:' } },
            admin: { enabled: true, port: 0 },
            plugins: [
              { use: 'limits', with: { exempt: { users: ['Bob@hosted.test'] }, perUser: { messageRate: { limit: 2, window: '10m' } }, perIp: { connectionRate: false } } },
              { use: 'dnsbl', with: { zones: [{ zone: 'bl.test', weight: 1 }] } },
              { use: 'relay-policy', with: { domains: { 'hosted.test': { nexthop: '127.0.0.1:9', tls: 'none' } }, users, authThrottle: { delay: '10ms', maxFailuresPerConnection: 10, maxFailuresPerIp: 4, window: '1m' } } },
            ],
          },
        }),
      );
    }
    await waitUntil(() => nodes.every((n) => n.relay.sharedState.status().connected), 'both relays on Redis', 10_000);
  });
  after(async () => {
    for (const n of nodes) await n.stop();
    await redis?.stop();
    await dns?.stop();
  });

  async function tlsSession(node: TestRelay, ip: string): Promise<RawSmtp> {
    const c = await RawSmtp.connect(node.port, '127.0.0.1', ip);
    await c.read();
    await c.cmd('EHLO client.test');
    assert.match(await c.cmd('STARTTLS'), /^220 /);
    await c.startTls();
    await c.cmd('EHLO client.test');
    return c;
  }
  const plain = (pass: string) => Buffer.from(`\0alice@hosted.test\0${pass}`).toString('base64');

  it('blocks logins from an address on both relays once its failures, spread over both, reach the limit', async () => {
    const ip = '127.0.0.33';
    for (let i = 0; i < 4; i++) {
      const c = await tlsSession(nodes[i % 2]!, ip);
      // The 4th failure (on the second relay, which itself saw only 2) reaches the shared limit.
      assert.equal(await c.cmd(`AUTH PLAIN ${plain(`wrong${i}`)}`), i < 3 ? '535 5.7.8 Authentication credentials invalid' : '421 4.7.0 Too many failed authentication attempts');
      c.close();
    }
    for (const node of nodes) {
      const c = await tlsSession(node, ip);
      assert.equal(await c.cmd(`AUTH PLAIN ${plain('right password')}`), '421 4.7.0 Too many failed logins from your address, try again later');
      c.close();
    }
    const other = await tlsSession(nodes[0]!, '127.0.0.34');
    assert.match(await other.cmd(`AUTH PLAIN ${plain('right password')}`), /^235 /);
    other.close();
  });

  /** Logs in as `user` from `ip` on `node` and returns the MAIL FROM reply. */
  async function mailAs(node: TestRelay, ip: string, user: string): Promise<string> {
    const c = await tlsSession(node, ip);
    try {
      assert.match(await c.cmd(`AUTH PLAIN ${Buffer.from(`\0${user}@hosted.test\0right password`).toString('base64')}`), /^235 /);
      const r = await c.cmd(`MAIL FROM:<${user}@hosted.test>`);
      await c.cmd('RSET');
      return r;
    } finally {
      c.close();
    }
  }

  it('counts an authenticated user as itself across both relays, and never limits an exempt user', async () => {
    assert.match(await mailAs(nodes[0]!, '127.0.0.40', 'alice'), /^250 /);
    assert.match(await mailAs(nodes[1]!, '127.0.0.41', 'alice'), /^250 /);
    assert.equal(await mailAs(nodes[0]!, '127.0.0.42', 'alice'), '451 4.7.1 Too many messages (user rate limit), try again later');
    for (let i = 0; i < 4; i++) assert.match(await mailAs(nodes[i % 2]!, '127.0.0.43', 'bob'), /^250 /);
  });

  it('does not refuse an authenticated client on a listed address', async () => {
    assert.match(await mailAs(nodes[1]!, '127.0.0.9', 'carol'), /^250 /);
  });

  it('answers the second relay from the DNSBL cache the first one filled: one DNS query for both', async () => {
    const queries = () => dns.log.split('\n').filter((l) => l.includes('query[A] 9.0.0.127.bl.test ')).length;
    for (const node of nodes) {
      const c = await RawSmtp.connect(node.port, '127.0.0.1', '127.0.0.9');
      await c.read();
      await c.cmd('EHLO client.test');
      assert.equal(await c.cmd('MAIL FROM:<a@outside.test>'), '554 5.7.1 Service unavailable; client [127.0.0.9] blocked using bl.test');
      c.close();
    }
    assert.equal(queries(), 1);
  });

  it('shows on /metrics whether Redis answers and how many operations fell back to local state', async () => {
    const metrics = async () => parseMetrics((await adminGet(nodes[0]!.relay.adminAddress()!.port, '/metrics')).body);
    let m = await metrics();
    assert.equal(m.get('portcullis_shared_state_connected{store="redis"}'), 1);
    const before = m.get('portcullis_shared_state_fallbacks_total') ?? 0;
    await redis.stop();
    await waitUntil(() => !nodes[0]!.relay.sharedState.status().connected, 'node 1 sees Redis gone', 10_000);
    const c = await RawSmtp.connect(nodes[0]!.port, '127.0.0.1', '127.0.0.50');
    await c.read();
    await c.cmd('EHLO client.test');
    assert.match(await c.cmd('MAIL FROM:<a@outside.test>'), /^250 /, 'mail is still accepted');
    c.close();
    m = await metrics();
    assert.equal(m.get('portcullis_shared_state_connected{store="redis"}'), 0);
    assert.ok((m.get('portcullis_shared_state_fallbacks_total') ?? 0) > before);
    const ready = await adminGet(nodes[0]!.relay.adminAddress()!.port, '/readyz');
    assert.equal(ready.status, 200, 'a Redis outage does not take the node out of service');
  });
});

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { CaptureServer, freePort, RedisServer, RelayProcess } from '@portcullis/testkit';
import { Slapd } from './support/slapd.js';
import { rcptReply } from './support/smtp.js';

describe('recipients: two relay processes sharing answers on a real redis-server', function () {
  this.timeout(120_000);
  let redis: RedisServer;
  let slapd: Slapd;
  let sink: CaptureServer;
  const nodes: RelayProcess[] = [];
  before(async () => {
    sink = await CaptureServer.start();
    redis = await RedisServer.start(await freePort());
    slapd = await Slapd.start(await freePort(), [
      { uid: 'alice', mail: 'alice@hosted.example' },
      { uid: 'bob', mail: 'bob@hosted.example' },
    ]);
    nodes.push(
      ...(await RelayProcess.sharingRedis({
        count: 2,
        url: redis.url,
        keyPrefix: 'recipients-test:',
        ports: freePort,
        plugins: [
          {
            use: 'recipients',
            with: {
              sources: { directory: { ldap: { urls: [slapd.url], base: slapd.suffix, bindDn: slapd.bindDn, passwordFile: slapd.passwordFile } } },
              domains: { 'hosted.example': ['directory'] },
            },
          },
          { use: 'relay-policy', with: { domains: { 'hosted.example': { nexthop: sink.address, tls: 'none' } } } },
        ],
      })),
    );
  });
  after(async () => {
    for (const n of nodes) await n.stop();
    await slapd?.remove();
    await redis?.stop();
    await sink?.close();
  });

  it('answers on node B from what node A learnt, with no new LDAP search (known and unknown)', async () => {
    const [a, b] = [nodes[0]!, nodes[1]!];
    assert.match(await rcptReply(a.port, 'alice@hosted.example'), /^250 /);
    assert.equal(await rcptReply(a.port, 'nobody@hosted.example'), '550 5.1.1 <nobody@hosted.example>: Recipient address rejected: User unknown');
    await new Promise((r) => setTimeout(r, 300));
    const searches = slapd.searches();
    assert.ok(searches >= 2);
    assert.match(await rcptReply(b.port, 'alice@hosted.example'), /^250 /);
    assert.equal(await rcptReply(b.port, 'nobody@hosted.example'), '550 5.1.1 <nobody@hosted.example>: Recipient address rejected: User unknown');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(slapd.searches(), searches, 'node B asked slapd nothing');
    // An address only B has seen is searched once, by B.
    assert.match(await rcptReply(b.port, 'bob@hosted.example'), /^250 /);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(slapd.searches(), searches + 1);
  });

  it('gives every key it writes to Redis a TTL', () => {
    const cli = (...args: string[]) => execFileSync('redis-cli', ['-p', String(redis.port), ...args], { encoding: 'utf8' }).trim();
    const keys = cli('--scan', '--pattern', 'recipients-test:*').split('\n').filter(Boolean);
    assert.ok(keys.filter((k) => k.includes('recipients:')).length >= 4, `answers, last-known-good and harvest keys: ${keys.join(', ')}`);
    for (const k of keys) assert.ok(Number(cli('PTTL', k)) > 0, `${k} has a TTL`);
  });
});

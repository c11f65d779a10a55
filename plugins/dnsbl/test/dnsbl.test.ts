import assert from 'node:assert/strict';
import { CaptureServer, freePort, RawSmtp, sendMail, waitUntil } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import { Dnsmasq } from '../../mx-router/test/support/dnsmasq.js';
import { ServfailUpstream } from '../../mx-router/test/support/servfail-upstream.js';
import dnsbl, { answerKind, parseAnswerPattern, queryName } from '../src/index.js';
import { startLoggedRelay } from './support/log-relay.js';

const builtins = { dnsbl, 'relay-policy': relayPolicy };
const V6_LOOPBACK = queryName('::1', 'bl.test')!;

/** Zone lines: bl.test lists 127.0.0.9 (and the RFC 5782 test entry), low.test weighs 0.5, allow.test is an allow list. */
const ZONES = [
  'host-record=2.0.0.127.bl.test,127.0.0.2',
  'host-record=9.0.0.127.bl.test,127.0.0.2',
  'host-record=11.0.0.127.bl.test,127.0.0.3',
  'host-record=14.0.0.127.bl.test,127.0.0.100',
  `host-record=${V6_LOOPBACK},127.0.0.4`,
  'host-record=10.0.0.127.low.test,127.0.0.2',
  'host-record=11.0.0.127.allow.test,127.0.0.2',
];

/** Connects from `from`, says EHLO and MAIL FROM, returns the MAIL reply. */
async function mailReply(port: number, from: string, host = '127.0.0.1'): Promise<string> {
  const c = await RawSmtp.connect(port, host, from);
  try {
    assert.match(await c.read(), /^220 /);
    await c.cmd('EHLO client.test');
    return await c.cmd('MAIL FROM:<someone@outside.test>');
  } finally {
    c.close();
  }
}

const queriesFor = (dns: Dnsmasq, name: string) => dns.log.split('\n').filter((l) => l.includes(`query[A] ${name} `)).length;

describe('answer filters and query names', () => {
  it('reads Postfix-style answer patterns', () => {
    const f = parseAnswerPattern('127.0.0.[2..11]');
    assert.equal(f('127.0.0.2'), true);
    assert.equal(f('127.0.0.11'), true);
    assert.equal(f('127.0.0.12'), false);
    assert.equal(parseAnswerPattern('127.0.[0;1].[2;4..5]')('127.0.1.5'), true);
    assert.throws(() => parseAnswerPattern('127.0.0'), /four octets/);
    assert.throws(() => parseAnswerPattern('127.0.0.[9..2]'), /empty range/);
  });
  it('takes 127.255.255.0/24 and anything outside 127.0.0.0/8 for a failing zone, never a listing', () => {
    assert.equal(answerKind('127.0.0.2'), 'ok');
    assert.equal(answerKind('127.255.255.254'), 'error');
    assert.equal(answerKind('127.255.255.252'), 'error');
    assert.equal(answerKind('192.0.2.1'), 'error');
  });
  it('builds RFC 5782 query names for IPv4, IPv6 and IPv4-mapped clients', () => {
    assert.equal(queryName('192.0.2.99', 'bl.test'), '99.2.0.192.bl.test');
    assert.equal(queryName('::ffff:192.0.2.99', 'bl.test'), '99.2.0.192.bl.test');
    assert.equal(queryName('2001:db8::1', 'bl.test'), '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test');
  });
});

describe('dnsbl over SMTP with a real DNS server (dnsmasq)', () => {
  let dns: Dnsmasq;
  let relay: Awaited<ReturnType<typeof startLoggedRelay>>;
  before(async () => {
    dns = await Dnsmasq.start({ lines: ZONES });
    relay = await startLoggedRelay(
      {
        listen: [{ host: '127.0.0.1', port: 0, greetingDelay: 0 }, { host: '::1', port: 0, greetingDelay: 0 }, { name: 'behind-proxy', host: '127.0.0.1', port: 0, greetingDelay: 0, xclient: ['127.0.0.5/32'] }],
        dns: { servers: [dns.server] },
        plugins: [
          {
            use: 'dnsbl',
            with: {
              zones: [
                { zone: 'bl.test', weight: 2, answers: ['127.0.0.[2..11]'], name: 'Test Block List' },
                { zone: 'low.test', weight: 0.5 },
                { zone: 'allow.test', weight: -5 },
              ],
              threshold: 1,
              skip: { networks: ['127.0.0.2/32'] },
            },
          },
          { use: 'relay-policy', with: { domains: { 'example.test': { nexthop: '127.0.0.1:9', tls: 'none' } }, trustedNetworks: ['127.0.0.3/32'] } },
        ],
      },
      builtins,
    );
  });
  after(async () => {
    await relay?.stop();
    await dns?.stop();
  });

  it('refuses a listed client at MAIL FROM with 554 5.7.1 naming the public name of the list', async () => {
    assert.equal(await mailReply(relay.port(), '127.0.0.9'), '554 5.7.1 Service unavailable; client [127.0.0.9] blocked using Test Block List');
  });
  it('asks the DNS server once: a second connection from the same client is answered from the cache', async () => {
    const before = queriesFor(dns, '9.0.0.127.bl.test');
    assert.equal(before, 1);
    assert.match(await mailReply(relay.port(), '127.0.0.9'), /^554 5\.7\.1 /);
    assert.equal(queriesFor(dns, '9.0.0.127.bl.test'), 1);
  });
  it('lets a client below the threshold through', async () => {
    assert.match(await mailReply(relay.port(), '127.0.0.10'), /^250 /);
  });
  it('lets an allow-listed client through although a block list lists it, and asks nothing on its next connection', async () => {
    assert.match(await mailReply(relay.port(), '127.0.0.11'), /^250 /);
    const asked = queriesFor(dns, '11.0.0.127.bl.test') + queriesFor(dns, '11.0.0.127.allow.test');
    assert.match(await mailReply(relay.port(), '127.0.0.11'), /^250 /);
    assert.equal(queriesFor(dns, '11.0.0.127.bl.test') + queriesFor(dns, '11.0.0.127.allow.test'), asked);
  });
  it('does not count answers outside the zone filter', async () => {
    assert.match(await mailReply(relay.port(), '127.0.0.14'), /^250 /);
  });
  it('never looks up a skipped network, nor relay-policy\'s trusted networks', async () => {
    assert.match(await mailReply(relay.port(), '127.0.0.2'), /^250 /);
    assert.equal(queriesFor(dns, '2.0.0.127.low.test'), 0);
    assert.match(await mailReply(relay.port(), '127.0.0.3'), /^250 /);
    assert.equal(queriesFor(dns, '3.0.0.127.bl.test'), 0);
  });
  it('judges the client an XCLIENT proxy names, not the proxy', async () => {
    const c = await RawSmtp.connect(relay.port(2), '127.0.0.1', '127.0.0.5');
    try {
      assert.match(await c.read(), /^220 /);
      assert.match(await c.cmd('EHLO proxy.test'), /^250/);
      assert.match(await c.cmd('XCLIENT ADDR=127.0.0.9 NAME=[UNAVAILABLE]'), /^220 /);
      await c.cmd('EHLO client.test');
      assert.equal(await c.cmd('MAIL FROM:<a@outside.test>'), '554 5.7.1 Service unavailable; client [127.0.0.9] blocked using Test Block List');
    } finally {
      c.close();
    }
    assert.equal(queriesFor(dns, '5.0.0.127.bl.test'), 0, 'the proxy itself is not looked up');
  });

  it('looks up IPv6 clients by their reversed nibbles', async () => {
    assert.equal(await mailReply(relay.port(1), '::1', '::1'), '554 5.7.1 Service unavailable; client [::1] blocked using Test Block List');
    assert.equal(queriesFor(dns, V6_LOOPBACK), 1);
  });
});

describe('dnsbl with broken zones (action: tempfail)', () => {
  let dns: Dnsmasq;
  let relay: Awaited<ReturnType<typeof startLoggedRelay>>;
  let silentPort: number;
  let servfail: ServfailUpstream;
  before(async () => {
    silentPort = await freePort(); // nothing answers there: dnsmasq stays silent, the client times out
    servfail = await ServfailUpstream.start();
    dns = await Dnsmasq.start({ lines: ['address=/typo.test/127.255.255.254', `server=/slow.test/127.0.0.1#${silentPort}`, `server=/sf.test/${servfail.target}`, ...ZONES] });
    relay = await startLoggedRelay(
      {
        listen: [{ host: '127.0.0.1', port: 0, greetingDelay: 0 }],
        dns: { servers: [dns.server] },
        plugins: [
          { use: 'dnsbl', with: { zones: [{ zone: 'typo.test', weight: 5 }, { zone: 'slow.test', weight: 5 }, { zone: 'sf.test', weight: 5 }, { zone: 'bl.test', weight: 1 }], timeout: '300ms', failing: { retryAfter: '500ms', errorsInARow: 2 }, action: 'tempfail' } },
          { use: 'relay-policy', with: { domains: { 'example.test': { nexthop: '127.0.0.1:9', tls: 'none' } } } },
        ],
      },
      builtins,
    );
  });
  after(async () => {
    await relay?.stop();
    await dns?.stop();
    await servfail?.close();
  });

  it('refuses nobody because of a zone answering 127.255.255.254, timing out or answering SERVFAIL, and reports those zones failing', async () => {
    const t0 = Date.now();
    assert.match(await mailReply(relay.port(), '127.0.0.20'), /^250 /);
    assert.ok(Date.now() - t0 < 2000, 'lookups are bounded by the timeout');
    assert.match(await mailReply(relay.port(), '127.0.0.21'), /^250 /);
    const failing = relay.lines.filter((l) => l['level'] === 50 && String(l['msg']).startsWith('DNSBL zone failing'));
    assert.deepEqual(failing.map((l) => l['zone']).sort(), ['sf.test', 'slow.test', 'typo.test']);
    // Readiness (/readyz, portcullis status) names the failing zones; the metrics count them.
    const ready = (await relay.relay.readiness()).checks.find((c) => c.name === 'plugin:dnsbl')!;
    assert.equal(ready.ready, false);
    assert.match(ready.detail!, /^DNS list zone\(s\) failing: .*sf\.test/);
    const metric = (name: string) => relay.relay.metrics.registry.getSingleMetric(name)!.get();
    assert.equal((await metric('portcullis_dnsbl_zones_failing')).values[0]!.value, 3);
    const errors = (await metric('portcullis_dnsbl_lookups_total')).values.filter((v) => v.labels['result'] === 'error' && v.labels['zone'] === 'sf.test');
    assert.ok(errors[0]!.value >= 1, 'the SERVFAIL answers are counted');
    assert.ok(servfail.queries >= 2, 'the SERVFAIL zone was asked');
    // The working zone still counts: this relay's action is tempfail.
    assert.equal(await mailReply(relay.port(), '127.0.0.9'), '450 4.7.1 Service unavailable; client [127.0.0.9] listed by bl.test, try again later');
  });

  it('re-checks a failing zone with its RFC 5782 test entries and counts it again once it is healthy', async () => {
    await dns.restart({ lines: ['host-record=2.0.0.127.typo.test,127.0.0.2', 'host-record=30.0.0.127.typo.test,127.0.0.2', `server=/slow.test/127.0.0.1#${silentPort}`, ...ZONES] });
    await new Promise((r) => setTimeout(r, 600));
    // This connection triggers the re-check (in the background: it is not held up by it).
    assert.match(await mailReply(relay.port(), '127.0.0.22'), /^250 /);
    await waitUntil(() => relay.lines.some((l) => l['zone'] === 'typo.test' && String(l['msg']).startsWith('DNSBL zone healthy again')), 'typo.test healthy', 5000);
    assert.equal(await mailReply(relay.port(), '127.0.0.30'), '450 4.7.1 Service unavailable; client [127.0.0.30] listed by typo.test, try again later');
  });
});

describe('dnsbl in tag mode', () => {
  let dns: Dnsmasq;
  let sink: CaptureServer;
  let relay: Awaited<ReturnType<typeof startLoggedRelay>>;
  before(async () => {
    dns = await Dnsmasq.start({ lines: ZONES });
    sink = await CaptureServer.start();
    relay = await startLoggedRelay(
      {
        listen: [{ host: '127.0.0.1', port: 0, greetingDelay: 0 }],
        dns: { servers: [dns.server] },
        plugins: [
          { use: 'dnsbl', with: { zones: [{ zone: 'bl.test', weight: 2, name: 'Test Block List' }, { zone: 'low.test', weight: 0.5 }], action: 'tag' } },
          { use: 'relay-policy', with: { domains: { 'example.test': { nexthop: sink.address, tls: 'none' } } } },
        ],
      },
      builtins,
    );
  });
  after(async () => {
    await relay?.stop();
    await sink?.close();
    await dns?.stop();
  });

  it('accepts a listed client and marks its message with the score and the lists for later filters', async () => {
    const r = await sendMail({ port: relay.port(), localAddress: '127.0.0.9', from: 'a@outside.test', to: 'u@example.test' });
    assert.equal(r.ok, true, r.response);
    const [msg] = await sink.waitFor(1);
    assert.match(msg!.raw.toString(), /^X-Portcullis-DNSBL: score=2; listed=Test Block List \(127\.0\.0\.2\)\r\n/m);
    const clean = await sendMail({ port: relay.port(), localAddress: '127.0.0.12', from: 'a@outside.test', to: 'u@example.test' });
    assert.equal(clean.ok, true);
    const msgs = await sink.waitFor(2);
    assert.doesNotMatch(msgs[1]!.raw.toString(), /X-Portcullis-DNSBL/);
  });
});

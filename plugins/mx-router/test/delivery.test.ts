import assert from 'node:assert/strict';
import { CaptureServer, sendMail, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import mxRouter from '../src/index.js';
import { Dnsmasq } from './support/dnsmasq.js';
import { parseDsn } from './support/dsn.js';
import { recordingObserver, waitUntil, type ObservedEvent } from './support/observer.js';
import { ServfailUpstream } from './support/servfail-upstream.js';
import { startCapturesOnSharedPort } from './support/shared-port.js';

/*
 * The relay listens on 127.0.0.1:P; MX hosts are CaptureServers on 127.0.0.21-26, all on port P
 * (the plugin's `port` option); 127.0.0.29:P has nothing listening. dnsmasq serves the test zone.
 *
 *   example.test    MX 10 mx1 (.21), MX 20 mx2 (.22)
 *   refused.test    MX 10 .29 (connection refused), MX 20 mx2 (.22)
 *   tempfail.test   MX 10 .23 (answers 451 to RCPT), MX 20 mx2 (.22)
 *   implicit.test   no MX, A .24
 *   sender.test     MX 10 .25: the sender's own MX, where bounces arrive
 *   nullmx.test     null MX;  nx.test: NXDOMAIN;  loop.test: MX → 127.0.0.1 (ourselves)
 *   servfail.test   SERVFAIL (upstream), later MX 10 .26 after dnsmasq restarts
 */
describe('mx-router end to end: relay → DNS (dnsmasq) → MX hosts on loopback', function () {
  this.timeout(30_000);
  const HOSTS = ['127.0.0.21', '127.0.0.22', '127.0.0.23', '127.0.0.24', '127.0.0.25', '127.0.0.26'];
  let port: number;
  let mx: Map<string, CaptureServer>;
  const rcptSeenBy23: string[] = [];
  let servfail: ServfailUpstream;
  let dns: Dnsmasq;
  let relay: TestRelay;
  const events: ObservedEvent[] = [];

  const records = (servfailAnswers: boolean) => [
    'mx-host=example.test,mx1.example.test,10',
    'mx-host=example.test,mx2.example.test,20',
    'host-record=mx1.example.test,127.0.0.21',
    'host-record=mx2.example.test,127.0.0.22',
    'mx-host=refused.test,down.refused.test,10',
    'mx-host=refused.test,mx2.example.test,20',
    'host-record=down.refused.test,127.0.0.29',
    'mx-host=tempfail.test,busy.tempfail.test,10',
    'mx-host=tempfail.test,mx2.example.test,20',
    'host-record=busy.tempfail.test,127.0.0.23',
    'host-record=implicit.test,127.0.0.24',
    'mx-host=sender.test,mx.sender.test,10',
    'host-record=mx.sender.test,127.0.0.25',
    'mx-host=nullmx.test,.,0',
    'address=/nx.test/',
    'mx-host=loop.test,mx.loop.test,10',
    'host-record=mx.loop.test,127.0.0.1',
    ...(servfailAnswers
      ? ['mx-host=servfail.test,mx.servfail.test,10', 'host-record=mx.servfail.test,127.0.0.26']
      : [`server=/servfail.test/${servfail.target}`]),
  ];

  before(async () => {
    ({ port, servers: mx } = await startCapturesOnSharedPort(
      HOSTS,
      (host) => (host === '127.0.0.23' ? { onRcpt: (r) => (rcptSeenBy23.push(r), [451, '4.3.0 Busy, try again later']) } : {}),
      ['127.0.0.1'],
    ));
    servfail = await ServfailUpstream.start();
    dns = await Dnsmasq.start({ lines: records(false) });
    relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy, 'mx-router': mxRouter, 'test-observer': recordingObserver(events) },
      config: {
        listen: [{ host: '127.0.0.1', port, greetingDelay: 0 }],
        dns: { servers: [dns.server], timeout: '1s' },
        delivery: { retrySchedule: ['1s'], connectTimeout: '2s' },
        plugins: [
          { use: 'relay-policy', with: { trustedNetworks: ['127.0.0.0/8'] } },
          { use: 'mx-router', with: { port, tls: 'none' } },
          { use: 'test-observer' },
        ],
      },
    });
  });
  after(async () => {
    await relay?.stop();
    await dns?.stop();
    await servfail?.close();
    await Promise.all([...(mx?.values() ?? [])].map((s) => s.close()));
  });

  const send = (to: string, subject = 'test') =>
    sendMail({ port, host: '127.0.0.1', localAddress: '127.0.0.5', from: 'alice@sender.test', to, subject, text: 'hello' });
  const received = (host: string, rcpt: string) => mx.get(host)!.messages.filter((m) => m.to.includes(rcpt));
  const waitReceived = (host: string, rcpt: string) => waitUntil(`${rcpt} at ${host}`, () => received(host, rcpt)[0]);
  const dsnFor = (rcpt: string) =>
    waitUntil(`a bounce for ${rcpt} at the sender's MX`, () => mx.get('127.0.0.25')!.messages.find((m) => m.raw.toString().includes(`Final-Recipient: rfc822; ${rcpt}`)));
  const accepted = (r: { ok: boolean; response: string }) => assert.match(r.response, /^250 2\.0\.0 Ok: queued as /, r.response);

  it('delivers to the most preferred MX host', async () => {
    accepted(await send('bob@example.test'));
    const msg = await waitReceived('127.0.0.21', 'bob@example.test');
    assert.equal(msg.from, 'alice@sender.test');
    const delivered = await waitUntil('the delivered event', () => events.find((e) => e.kind === 'delivered' && e.recipient === 'bob@example.test'));
    assert.equal(delivered.host, `127.0.0.21:${port}`);
    assert.equal(received('127.0.0.22', 'bob@example.test').length, 0);
  });

  it('falls back to the next MX host when the first refuses the connection', async () => {
    accepted(await send('carol@refused.test'));
    await waitReceived('127.0.0.22', 'carol@refused.test');
    const delivered = await waitUntil('the delivered event', () => events.find((e) => e.kind === 'delivered' && e.recipient === 'carol@refused.test'));
    assert.equal(delivered.host, `127.0.0.22:${port}`);
    assert.equal(events.some((e) => e.recipient === 'carol@refused.test' && e.kind !== 'delivered'), false, 'delivered in the first attempt');
  });

  it('falls back to the next MX host when the first answers 4xx', async () => {
    accepted(await send('dave@tempfail.test'));
    await waitReceived('127.0.0.22', 'dave@tempfail.test');
    assert.deepEqual(rcptSeenBy23, ['dave@tempfail.test'], 'the preferred MX was asked first and said 451');
    assert.equal(mx.get('127.0.0.23')!.messages.length, 0);
    assert.equal(events.some((e) => e.recipient === 'dave@tempfail.test' && e.kind !== 'delivered'), false, 'delivered in the first attempt');
  });

  it('delivers to the domain\'s own address when it has no MX (implicit MX)', async () => {
    accepted(await send('erin@implicit.test'));
    await waitReceived('127.0.0.24', 'erin@implicit.test');
  });

  it('bounces a recipient behind a null MX with 5.1.10, in a DSN that reaches the sender\'s own MX', async () => {
    accepted(await send('frank@nullmx.test', 'to a null MX'));
    const bounce = await dsnFor('frank@nullmx.test');
    assert.equal(bounce.from, '', 'a DSN comes from the null sender');
    assert.deepEqual(bounce.to, ['alice@sender.test']);
    const dsn = await parseDsn(bounce.raw);
    assert.equal(dsn.contentType, 'multipart/report');
    assert.equal(dsn.reportType, 'delivery-status');
    assert.equal(dsn.perMessage['reporting-mta'], 'dns; relay.test');
    assert.equal(dsn.recipients.length, 1);
    assert.deepEqual(dsn.recipients[0], {
      'final-recipient': 'rfc822; frank@nullmx.test',
      action: 'failed',
      status: '5.1.10',
      'diagnostic-code': 'smtp; 556 5.1.10 Domain nullmx.test accepts no mail (null MX, RFC 7505)',
    });
    assert.match(dsn.originalHeaders, /^Subject: to a null MX$/m);
    assert.match(dsn.humanText, /<frank@nullmx\.test>: 556 5\.1\.10/);
    assert.equal(events.filter((e) => e.recipient === 'frank@nullmx.test').map((e) => e.kind).join(), 'bounced', 'bounced at once, never deferred');
  });

  it('bounces a recipient whose domain does not exist (NXDOMAIN) with 5.1.2', async () => {
    accepted(await send('gina@nx.test', 'to nowhere'));
    const dsn = await parseDsn((await dsnFor('gina@nx.test')).raw);
    assert.deepEqual(dsn.recipients[0], {
      'final-recipient': 'rfc822; gina@nx.test',
      action: 'failed',
      status: '5.1.2',
      'diagnostic-code': 'smtp; 550 5.1.2 Domain nx.test does not exist (DNS: NXDOMAIN)',
    });
    assert.match(dsn.originalHeaders, /^Subject: to nowhere$/m);
  });

  it('never delivers to its own listening address: an MX pointing at us bounces with 5.4.6', async () => {
    accepted(await send('hank@loop.test'));
    const dsn = await parseDsn((await dsnFor('hank@loop.test')).raw);
    assert.equal(dsn.recipients[0]!['status'], '5.4.6');
    assert.equal(dsn.recipients[0]!['diagnostic-code'], 'smtp; 554 5.4.6 Mail for loop.test loops back to myself (all remaining next hops are my own addresses)');
  });

  it('defers on SERVFAIL, then delivers once DNS answers', async () => {
    accepted(await send('ivy@servfail.test'));
    const deferred = await waitUntil('a deferral', () => events.find((e) => e.kind === 'deferred' && e.recipient === 'ivy@servfail.test'));
    assert.equal(deferred.response, '451 4.4.3 MX lookup for servfail.test failed (DNS: SERVFAIL), will retry');
    assert.ok(servfail.queries > 0);
    // Still failing on the next retry (1 s later): deferred again, never bounced.
    await waitUntil('a second deferral', () => events.filter((e) => e.kind === 'deferred' && e.recipient === 'ivy@servfail.test').length >= 2);
    assert.equal(received('127.0.0.26', 'ivy@servfail.test').length, 0);
    await dns.restart({ lines: records(true) });
    await waitReceived('127.0.0.26', 'ivy@servfail.test');
    assert.equal(events.some((e) => e.kind === 'bounced' && e.recipient === 'ivy@servfail.test'), false);
    assert.equal(mx.get('127.0.0.25')!.messages.some((m) => m.raw.toString().includes('ivy@servfail.test')), false, 'no bounce to the sender');
  });
});

import assert from 'node:assert/strict';
import https from 'node:https';
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { createLogger, parseConfig, Relay } from '@portcullis/core';
import { CaptureServer, sendMail } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import mxRouter, { mxAllowed, MtaStsToken, type MtaSts } from '../src/index.js';
import { Dnsmasq } from './support/dnsmasq.js';
import { recordingObserver, waitUntil, type ObservedEvent } from './support/observer.js';
import { startCapturesOnSharedPort } from './support/shared-port.js';
import { TestCa } from './support/test-ca.js';

/*
 * MTA-STS over loopback. Policies are served over HTTPS by 127.0.0.40 (one certificate from the
 * test's own CA for every mta-sts.<domain> name); the relay trusts that CA through `mtaSts.ca`.
 * MX hosts share one SMTP port (mx-router's `port`):
 *
 *   enforce.test   policy enforce, mx: mx1.enforce.test
 *                  MX 5 rogue.enforce.test (.42, valid cert, NOT in the policy), MX 10 mx1 (.41, valid cert)
 *   badtls.test    policy enforce, MX mx.badtls.test (.43): self-signed certificate
 *   notls.test     policy enforce, MX mx.notls.test (.44): no STARTTLS at all
 *   wrongname.test policy enforce, MX mx.wrongname.test (.46): CA certificate for another name
 *   nomatch.test   policy enforce, mx: mx.elsewhere.test; MX mx.nomatch.test (.41)
 *   testing.test   policy testing, mx: allowed.testing.test; MX mx.testing.test (.45, no STARTTLS)
 */
describe('MTA-STS (RFC 8461) in mx-router: policy over HTTPS, enforce and testing modes', function () {
  this.timeout(60_000);
  const HOSTS = ['127.0.0.41', '127.0.0.42', '127.0.0.43', '127.0.0.44', '127.0.0.45', '127.0.0.46'];
  const ca = new TestCa();
  let mx: Map<string, CaptureServer>;
  let smtpPort: number;
  let policyServer: https.Server;
  const policyRequests: string[] = [];
  let dns: Dnsmasq;
  let relay: Relay;
  const events: ObservedEvent[] = [];
  const logLines: Array<Record<string, unknown>> = [];
  let policyId = '20261201';

  const policies: Record<string, string> = {
    'enforce.test': 'version: STSv1\r\nmode: enforce\r\nmx: mx1.enforce.test\r\nmax_age: 86400\r\n',
    'badtls.test': 'version: STSv1\nmode: enforce\nmx: mx.badtls.test\nmax_age: 86400\n',
    'notls.test': 'version: STSv1\nmode: enforce\nmx: mx.notls.test\nmax_age: 86400\n',
    'wrongname.test': 'version: STSv1\nmode: enforce\nmx: mx.wrongname.test\nmax_age: 86400\n',
    'nomatch.test': 'version: STSv1\nmode: enforce\nmx: mx.elsewhere.test\nmax_age: 86400\n',
    'testing.test': 'version: STSv1\nmode: testing\nmx: allowed.testing.test\nmax_age: 86400\n',
  };
  const records = () => [
    'mx-host=enforce.test,rogue.enforce.test,5',
    'mx-host=enforce.test,mx1.enforce.test,10',
    'host-record=rogue.enforce.test,127.0.0.42',
    'host-record=mx1.enforce.test,127.0.0.41',
    'mx-host=badtls.test,mx.badtls.test,10',
    'host-record=mx.badtls.test,127.0.0.43',
    'mx-host=notls.test,mx.notls.test,10',
    'host-record=mx.notls.test,127.0.0.44',
    'mx-host=wrongname.test,mx.wrongname.test,10',
    'host-record=mx.wrongname.test,127.0.0.46',
    'mx-host=nomatch.test,mx.nomatch.test,10',
    'host-record=mx.nomatch.test,127.0.0.41',
    'mx-host=testing.test,mx.testing.test,10',
    'host-record=mx.testing.test,127.0.0.45',
    ...Object.keys(policies).flatMap((d) => [`txt-record=_mta-sts.${d},"v=STSv1; id=${d === 'enforce.test' ? policyId : '1'}"`, `host-record=mta-sts.${d},127.0.0.40`]),
  ];

  before(async () => {
    const good = ca.issue(['mx1.enforce.test', 'rogue.enforce.test']);
    const wrong = ca.issue(['someone-else.test']);
    const self = ca.selfSigned('mx.badtls.test');
    const tlsFor = (host: string) =>
      host === '127.0.0.41' || host === '127.0.0.42' ? good : host === '127.0.0.43' ? self : host === '127.0.0.46' ? wrong : undefined;
    ({ port: smtpPort, servers: mx } = await startCapturesOnSharedPort(HOSTS, (host) => {
      const t = tlsFor(host);
      return t ? { server: { key: t.key, cert: t.cert, disabledCommands: ['AUTH'] } } : {};
    }));
    const web = ca.issue(Object.keys(policies).map((d) => `mta-sts.${d}`));
    policyServer = https.createServer({ key: web.key, cert: web.cert }, (req, res) => {
      const host = String(req.headers.host ?? '').replace(/^mta-sts\./, '');
      policyRequests.push(host);
      const body = policies[host];
      if (req.url !== '/.well-known/mta-sts.txt' || !body) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(body);
    });
    await new Promise<void>((resolve) => policyServer.listen(0, '127.0.0.40', () => resolve()));
    dns = await Dnsmasq.start({ lines: records() });
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        for (const line of chunk.toString().split('\n')) if (line.trim()) logLines.push(JSON.parse(line) as Record<string, unknown>);
        cb();
      },
    });
    relay = await Relay.create({
      builtins: { 'relay-policy': relayPolicy, 'mx-router': mxRouter, 'test-observer': recordingObserver(events) },
      logger: createLogger('info', sink),
      config: parseConfig({
        hostname: 'relay.test',
        listen: [{ host: '127.0.0.1', port: 0, greetingDelay: 0 }],
        spool: { dir: ca.dir + '/spool' },
        dns: { servers: [dns.server], timeout: '1s' },
        delivery: { retrySchedule: ['30s'], connectTimeout: '2s' },
        plugins: [
          { use: 'relay-policy', with: { trustedNetworks: ['127.0.0.0/8'] } },
          { use: 'mx-router', with: { port: smtpPort, tls: 'opportunistic', mtaSts: { ca: ca.caFile, port: (policyServer.address() as AddressInfo).port, cacheFile: path.join(ca.dir, 'sts-cache.json') } } },
          { use: 'test-observer' },
        ],
      }),
    });
    await relay.start();
  });
  after(async () => {
    await relay?.stop();
    await Promise.all([...(mx?.values() ?? [])].map((s) => s.close()));
    await new Promise((r) => policyServer?.close(r));
    await dns?.stop();
    ca.cleanup();
  });

  const send = async (to: string) => {
    const r = await sendMail({ port: relay.addresses()[0]!.port, from: 'alice@sender.test', to, subject: `to ${to}` });
    assert.equal(r.code, 250, r.response);
  };
  const eventFor = (rcpt: string) => waitUntil(`a delivery event for ${rcpt}`, () => events.find((e) => e.recipient === rcpt));
  const sts = () => relay.container.resolve<MtaSts>(MtaStsToken);

  it('enforce: delivers only to the MX host named in the policy, over verified TLS, skipping a more preferred MX outside it', async () => {
    await send('bob@enforce.test');
    const e = await eventFor('bob@enforce.test');
    assert.equal(e.kind, 'delivered', e.response);
    assert.equal(e.host, `127.0.0.41:${smtpPort}`);
    assert.equal(mx.get('127.0.0.41')!.messages.length, 1);
    assert.equal(mx.get('127.0.0.42')!.messages.length, 0, 'the MX outside the policy got nothing');
    assert.equal(policyRequests.filter((h) => h === 'enforce.test').length, 1);
    assert.equal(sts().cached('enforce.test')?.mode, 'enforce');
  });

  it('enforce: defers (never clear text) when the MX certificate is self-signed', async () => {
    await send('bob@badtls.test');
    const e = await eventFor('bob@badtls.test');
    assert.equal(e.kind, 'deferred');
    assert.match(e.response, /self[- ]signed|certificate/i);
    assert.equal(mx.get('127.0.0.43')!.messages.length, 0);
  });

  it('enforce: defers when the MX does not offer STARTTLS, and sends nothing in clear', async () => {
    await send('bob@notls.test');
    const e = await eventFor('bob@notls.test');
    assert.equal(e.kind, 'deferred');
    assert.match(e.response, /STARTTLS|TLS/i);
    assert.equal(mx.get('127.0.0.44')!.messages.length, 0);
  });

  it('enforce: defers when the MX certificate is from the trusted CA but for another name', async () => {
    await send('bob@wrongname.test');
    const e = await eventFor('bob@wrongname.test');
    assert.equal(e.kind, 'deferred');
    assert.match(e.response, /altnames|does not match|mx\.wrongname\.test/i);
    assert.equal(mx.get('127.0.0.46')!.messages.length, 0);
  });

  it('enforce: defers with 451 4.7.5 when no MX host matches the policy, without connecting to any', async () => {
    const before = mx.get('127.0.0.41')!.messages.length;
    await send('bob@nomatch.test');
    const e = await eventFor('bob@nomatch.test');
    assert.equal(e.kind, 'deferred');
    assert.equal(e.response, '451 4.7.5 MTA-STS policy of nomatch.test allows none of its MX hosts (mx.nomatch.test), will retry');
    assert.equal(mx.get('127.0.0.41')!.messages.length, before);
  });

  it('testing: delivers to an MX outside the policy without TLS, and reports it in the log and counters', async () => {
    await send('bob@testing.test');
    const e = await eventFor('bob@testing.test');
    assert.equal(e.kind, 'delivered', e.response);
    assert.equal(mx.get('127.0.0.45')!.messages.length, 1);
    const line = logLines.find((l) => String(l['msg']).startsWith('MTA-STS testing: MX hosts outside the policy'));
    assert.ok(line, 'a warning names the MX hosts enforce would refuse');
    assert.deepEqual(line['mx'], ['mx.testing.test']);
    const report = sts().report();
    assert.equal(report['testing.test']?.failures['validation-failure'], 1);
    assert.equal(report['testing.test']?.success, 1);
  });

  it('counts TLS-RPT style results per policy domain', () => {
    const report = sts().report();
    assert.equal(report['enforce.test']?.success, 1);
    assert.equal(report['badtls.test']?.failures['certificate-not-trusted'], 1);
    assert.equal(report['notls.test']?.failures['starttls-not-supported'], 1);
    assert.equal(report['wrongname.test']?.failures['certificate-host-mismatch'], 1);
    assert.equal(report['nomatch.test']?.failures['validation-failure'], 1);
  });

  it('exposes the same results as the portcullis_mx_router_mta_sts_results_total metric', async () => {
    const metric = await relay.metrics.registry.getSingleMetric('portcullis_mx_router_mta_sts_results_total')!.get();
    const by = (result: string) => metric.values.find((v) => v.labels['result'] === result)?.value ?? 0;
    const report = sts().report();
    const total = (type: string) => Object.values(report).reduce((n, r) => n + (type === 'success' ? r.success : (r.failures[type] ?? 0)), 0);
    for (const type of ['success', 'validation-failure', 'certificate-not-trusted', 'certificate-host-mismatch', 'starttls-not-supported']) {
      assert.equal(by(type), total(type), type);
      assert.ok(by(type) >= 1, type);
    }
  });

  it('uses the cached policy while the DNS id is unchanged, and fetches again when it changes', async () => {
    await send('carol@enforce.test');
    assert.equal((await eventFor('carol@enforce.test')).kind, 'delivered');
    assert.equal(policyRequests.filter((h) => h === 'enforce.test').length, 1, 'same id: no new fetch');
    policyId = '20261202';
    await dns.restart({ lines: records() });
    await send('dave@enforce.test');
    assert.equal((await eventFor('dave@enforce.test')).kind, 'delivered');
    assert.equal(policyRequests.filter((h) => h === 'enforce.test').length, 2, 'new id: fetched again');
    assert.equal(sts().cached('enforce.test')?.id, '20261202');
  });

  it('refreshes cached policies in the background (the refresh timer) and keeps them in the cache file', async () => {
    const before = policyRequests.length;
    await sts().refreshAll();
    assert.equal(policyRequests.length - before, Object.keys(policies).length, "every cached policy fetched again");
    const file = path.join(ca.dir, 'sts-cache.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const saved = JSON.parse(readFileSync(file, 'utf8')) as Record<string, { id: string; mode: string; mx: string[] }>;
    assert.deepEqual({ id: saved['enforce.test']!.id, mode: saved['enforce.test']!.mode, mx: saved['enforce.test']!.mx }, { id: '20261202', mode: 'enforce', mx: ['mx1.enforce.test'] });
    assert.equal(saved['testing.test']!.mode, 'testing');
  });

  it('matches policy MX patterns exactly or with a one-label wildcard', () => {
    const p = { id: '1', mode: 'enforce' as const, mx: ['mx1.example.test', '*.backup.example.test'], maxAge: 1, fetchedAt: 0, expiresAt: 1 };
    assert.equal(mxAllowed('MX1.example.test.', p), true);
    assert.equal(mxAllowed('a.backup.example.test', p), true);
    assert.equal(mxAllowed('a.b.backup.example.test', p), false);
    assert.equal(mxAllowed('backup.example.test', p), false);
    assert.equal(mxAllowed('mx2.example.test', p), false);
  });
});

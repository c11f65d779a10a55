import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CaptureServer, freePort, sendMail, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import milter from '../src/index.js';
import { Daemon } from './support/daemon.js';
// The DNS server and the independent DKIM tools of the mx-router and mailauth tests.
import { Dnsmasq } from '../../mx-router/test/support/dnsmasq.js';
import { dkimsign, dkimverify } from '../../mailauth/test/support/dkim-tools.js';

/*
 * Debian's OpenDKIM as a milter behind the relay, on loopback. Outbound (client 127.0.0.1, one of
 * OpenDKIM's InternalHosts): OpenDKIM signs for example.com, and python3-dkim's dkimverify checks
 * the delivered message against the test's dnsmasq. Inbound (client 127.0.0.9): a message signed
 * by python3-dkim's dkimsign for remote.test is verified by OpenDKIM, whose Authentication-Results
 * reaches the next hop. OpenDKIM's resolver cannot be pointed at a port other than 53, so its keys
 * come from its own test data set (TestDNSData) holding the same TXT records dnsmasq serves.
 */
describe('milter: Debian\'s OpenDKIM signs outbound and verifies inbound mail', function () {
  this.timeout(90_000);
  let dir: string;
  let dns: Dnsmasq;
  let dkim: Daemon;
  let sink: CaptureServer;
  let relay: TestRelay;

  /** The TXT text of opendkim-genkey's BIND snippet. */
  const txtOf = (file: string) => [...readFileSync(file, 'utf8').matchAll(/"([^"]*)"/g)].map((m) => m[1]).join('');
  const dnsmasqLine = (name: string, text: string) => {
    const parts: string[] = [];
    for (let i = 0; i < text.length; i += 255) parts.push(`"${text.slice(i, i + 255)}"`);
    return `txt-record=${name},${parts.join(',')}`;
  };

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-opendkim-'));
    execFileSync('/usr/sbin/opendkim-genkey', ['-D', dir, '-d', 'example.com', '-s', 'out']);
    execFileSync('/usr/sbin/opendkim-genkey', ['-D', dir, '-d', 'remote.test', '-s', 'in']);
    const outTxt = txtOf(path.join(dir, 'out.txt'));
    const inTxt = txtOf(path.join(dir, 'in.txt'));
    dns = await Dnsmasq.start({ lines: [dnsmasqLine('out._domainkey.example.com', outTxt), dnsmasqLine('in._domainkey.remote.test', inTxt)], localZones: ['test', 'example.com'] });
    writeFileSync(path.join(dir, 'dns.data'), `out._domainkey.example.com ${outTxt}\nin._domainkey.remote.test ${inTxt}\n`);
    const port = await freePort();
    const conf = path.join(dir, 'opendkim.conf');
    writeFileSync(
      conf,
      [
        'Syslog no',
        'Background no',
        `Socket inet:${port}@127.0.0.1`,
        `PidFile ${path.join(dir, 'pid')}`,
        'Mode sv',
        'Domain example.com',
        'Selector out',
        `KeyFile ${path.join(dir, 'out.private')}`,
        'RequireSafeKeys no',
        'InternalHosts 127.0.0.1',
        'Canonicalization relaxed/simple',
        'AuthservID relay.test',
        `TestDNSData file:${path.join(dir, 'dns.data')}`,
      ].join('\n') + '\n',
    );
    dkim = await Daemon.start('/usr/sbin/opendkim', () => ['-f', '-x', conf], { port });
    sink = await CaptureServer.start();
    relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy, milter },
      config: {
        plugins: [
          { use: 'milter', with: { milters: [{ address: dkim.address, name: 'opendkim' }] } },
          { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } } } },
        ],
      },
    });
  });
  after(async () => {
    await relay?.stop();
    await sink?.close();
    await dkim?.stop();
    await dns?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('signs mail from an internal client, and the signature verifies with dkimverify against dnsmasq', async () => {
    const before = sink.messages.length;
    const raw = 'From: alice@example.com\r\nTo: bob@example.com\r\nSubject: signed by OpenDKIM\r\nDate: Sun, 06 Dec 2026 16:00:00 +0000\r\nMessage-ID: <out-1@example.com>\r\n\r\nHello from the inside.\r\n';
    const r = await sendMail({ port: relay.port, from: 'alice@example.com', to: 'bob@example.com', raw });
    assert.equal(r.code, 250, r.response);
    await sink.waitFor(before + 1);
    const got = sink.messages[before]!.raw;
    const text = got.toString();
    // OpenDKIM inserts its signature at the top of the header section, under our Received line.
    assert.match(text, /^Received: [^\r]*\r\n(?:\t[^\r]*\r\n)*DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/simple; d=example\.com; s=out;\r\n\t/);
    const v = await dkimverify(got, dns.port, 0);
    assert.ok(v.ok, v.out);
    // The body after the signature is the message's, unchanged.
    assert.ok(text.endsWith('\r\n\r\nHello from the inside.\r\n'));
    const tampered = Buffer.from(text.replace('Hello from the inside.', 'Hello from the outside'));
    assert.equal((await dkimverify(tampered, dns.port, 0)).ok, false);
  });

  it('verifies a signed inbound message: OpenDKIM\'s Authentication-Results says dkim=pass for remote.test', async () => {
    const before = sink.messages.length;
    const unsigned = 'From: carol@remote.test\r\nTo: bob@example.com\r\nSubject: signed at remote.test\r\nDate: Sun, 06 Dec 2026 16:00:00 +0000\r\nMessage-ID: <in-1@remote.test>\r\n\r\nHello from outside.\r\n';
    const signed = await dkimsign(unsigned.replace(/\r\n/g, '\n'), 'in', 'remote.test', path.join(dir, 'in.private'));
    const r = await sendMail({ port: relay.port, localAddress: '127.0.0.9', from: 'carol@remote.test', to: 'bob@example.com', raw: signed.replace(/\r?\n/g, '\r\n') });
    assert.equal(r.code, 250, r.response);
    await sink.waitFor(before + 1);
    const text = sink.messages[before]!.raw.toString();
    const b = /\r\n b=([A-Za-z0-9+/]{8})/.exec(text)![1];
    assert.match(text, new RegExp(`\\r\\nAuthentication-Results: relay\\.test;\\r\\n\\tdkim=pass \\(2048-bit key\\) header\\.d=remote\\.test header\\.i=@remote\\.test header\\.a=rsa-sha256 header\\.s=in header\\.b=${b!.replace(/[+/]/g, '\\$&')};\\r\\n\\tdkim-atps=neutral\\r\\nDKIM-Signature: `));
    assert.doesNotMatch(text, /\r\nDKIM-Signature:[^\r]*d=example\.com/, 'inbound mail is not signed');
  });

  it('reports a broken inbound signature as dkim=fail', async () => {
    const before = sink.messages.length;
    const unsigned = 'From: carol@remote.test\r\nTo: bob@example.com\r\nSubject: tampered\r\nDate: Sun, 06 Dec 2026 16:00:00 +0000\r\nMessage-ID: <in-2@remote.test>\r\n\r\nOriginal body.\r\n';
    const signed = (await dkimsign(unsigned.replace(/\r\n/g, '\n'), 'in', 'remote.test', path.join(dir, 'in.private'))).replace('Original body.', 'Altered body.');
    const r = await sendMail({ port: relay.port, localAddress: '127.0.0.9', from: 'carol@remote.test', to: 'bob@example.com', raw: signed.replace(/\r?\n/g, '\r\n') });
    assert.equal(r.code, 250, r.response);
    await sink.waitFor(before + 1);
    assert.match(sink.messages[before]!.raw.toString(), /\r\nAuthentication-Results: relay\.test;\r\n\tdkim=fail reason="signature verification failed" \(2048-bit key\) header\.d=remote\.test /);
  });
});

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { CaptureServer, selfSignedFiles, sendMail, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy, { userLine } from '@portcullis/relay-policy';
import mailauth, { generateSigningKey, MailauthCounters, type Counters } from '../src/index.js';
import { Dnsmasq } from '../../mx-router/test/support/dnsmasq.js';
import { dkimTxtLine, dkimverify } from './support/dkim-tools.js';

/*
 * Outbound signing, checked by an independent verifier: Debian's python3-dkim (dkimverify) reads
 * the public keys from a real dnsmasq on loopback. The trusted client is 127.0.0.1; 127.0.0.9 is
 * an anonymous Internet client (its mail is checked, never signed).
 */
describe('DKIM signing of outbound mail, verified by python3-dkim against dnsmasq', function () {
  this.timeout(60_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mailauth-sign-'));
  const key = (domain: string, selector: string, type: 'rsa' | 'ed25519') =>
    generateSigningKey({ domain, selector, type, out: path.join(dir, `${domain}.${selector}.key`) });
  let sink: CaptureServer;
  let dns: Dnsmasq;
  let relay: TestRelay;
  let strictRelay: TestRelay;

  let tlsFiles: { key: string; cert: string };
  const usersFile = path.join(dir, 'users.passwd');
  const config = (withFallback: boolean) => ({
    dns: { servers: [dns.server], timeout: '1s' },
    tls: { key: tlsFiles.key, cert: tlsFiles.cert },
    listen: [{ host: '127.0.0.1', port: 0, greetingDelay: 0, tls: 'starttls' as const, auth: 'optional' as const }],
    plugins: [
      { use: 'relay-policy', with: { domains: { 'dest.test': { nexthop: sink.address, tls: 'none' } }, trustedNetworks: ['127.0.0.1/32'], users: usersFile } },
      {
        use: 'mailauth',
        with: {
          trustedNetworks: ['127.0.0.1/32'],
          sign: {
            domains: {
              'example.test': [
                { selector: 'rsa2026', key: path.join(dir, 'example.test.rsa2026.key') },
                { selector: 'ed2026', key: path.join(dir, 'example.test.ed2026.key') },
              ],
              'fallback.test': [{ selector: 'fb', key: path.join(dir, 'fallback.test.fb.key') }],
            },
            ...(withFallback ? { fallbackDomain: 'fallback.test' } : {}),
          },
        },
      },
    ],
  });

  before(async () => {
    const made = [key('example.test', 'rsa2026', 'rsa'), key('example.test', 'ed2026', 'ed25519'), key('fallback.test', 'fb', 'rsa')];
    sink = await CaptureServer.start();
    tlsFiles = await selfSignedFiles();
    writeFileSync(usersFile, (await userLine('alice@example.test', 'correct horse')) + '\n', { mode: 0o600 });
    dns = await Dnsmasq.start({
      lines: made.map((m) => dkimTxtLine(m.name.split('._domainkey.')[1]!, m.name.split('._domainkey.')[0]!, readFileSync(m.file, 'utf8'))),
    });
    relay = await startTestRelay({ builtins: { 'relay-policy': relayPolicy, mailauth }, config: config(true) });
    strictRelay = await startTestRelay({ builtins: { 'relay-policy': relayPolicy, mailauth }, config: config(false) });
  });
  after(async () => {
    await relay?.stop();
    await strictRelay?.stop();
    await sink?.close();
    await dns?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const message = (from: string, subject = 'Quarterly figures') =>
    `From: Alice <${from}>\r\nTo: bob@dest.test\r\nSubject: ${subject}\r\nDate: Tue, 01 Dec 2026 09:00:00 +0000\r\nMessage-ID: <${Math.random().toString(36).slice(2)}@example.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello Bob,\r\n\r\nthe figures are attached in spirit.\r\n \r\n\r\n`;

  async function deliver(r: TestRelay, raw: string, localAddress = '127.0.0.1', auth?: { user: string; pass: string }): Promise<Buffer> {
    const before = sink.messages.length;
    const res = await sendMail({ port: r.port, localAddress, from: 'alice@example.test', to: 'bob@dest.test', raw, auth });
    assert.equal(res.code, 250, res.response);
    await sink.waitFor(before + 1);
    return sink.messages[before]!.raw;
  }
  const signatures = (msg: Buffer) => [...msg.toString('latin1').matchAll(/^DKIM-Signature:((?:.*)(?:\r\n[ \t].*)*)/gim)].map((m) => m[1]!.replace(/\s+/g, ''));

  it('signs with both selectors (RSA-2048 and Ed25519), and dkimverify accepts each signature', async () => {
    const got = await deliver(relay, message('alice@example.test'));
    const sigs = signatures(got);
    assert.equal(sigs.length, 2, got.toString());
    assert.ok(sigs.some((s) => s.includes('a=rsa-sha256') && s.includes('s=rsa2026') && s.includes('d=example.test')), sigs.join('\n'));
    assert.ok(sigs.some((s) => s.includes('a=ed25519-sha256') && s.includes('s=ed2026') && s.includes('d=example.test')), sigs.join('\n'));
    for (const index of [0, 1]) {
      const v = await dkimverify(got, dns.port, index);
      assert.ok(v.ok, `signature ${index}: ${v.out}`);
    }
  });

  it('signs a message that is all header section (no blank line, no body), and dkimverify accepts both signatures', async () => {
    const got = await deliver(relay, `From: Alice <alice@example.test>\r\nTo: bob@dest.test\r\nSubject: header only\r\nMessage-ID: <${Math.random().toString(36).slice(2)}@example.test>\r\n`);
    assert.equal(signatures(got).length, 2, got.toString());
    for (const index of [0, 1]) {
      const v = await dkimverify(got, dns.port, index);
      assert.ok(v.ok, `signature ${index}: ${v.out}\n${got.toString()}`);
    }
  });

  it('fails verification of both signatures once a signed header is changed after signing', async () => {
    const got = (await deliver(relay, message('alice@example.test'))).toString('latin1');
    const tampered = got.replace('Subject: Quarterly figures', 'Subject: Quarterly figures (revised)');
    assert.notEqual(tampered, got);
    for (const index of [0, 1]) {
      const v = await dkimverify(tampered, dns.port, index);
      assert.equal(v.ok, false, `signature ${index} still verified: ${v.out}`);
      assert.match(v.out, /signature verification failed/);
    }
    const bodyChanged = got.replace('attached in spirit', 'attached in letter');
    assert.equal((await dkimverify(bodyChanged, dns.port, 0)).ok, false);
  });

  it('signs mail from a subdomain without its own key with the parent domain (relaxed alignment), which verifies', async () => {
    const got = await deliver(relay, message('news@news.example.test'));
    const sigs = signatures(got);
    assert.equal(sigs.length, 2);
    assert.ok(sigs.every((sig) => sig.includes('d=example.test;')), sigs.join('\n'));
    assert.ok((await dkimverify(got, dns.port, 0)).ok);
  });

  it('signs mail whose From: domain has no key with the fallback domain, which verifies', async () => {
    const got = await deliver(relay, message('carol@nokey.test'));
    const sigs = signatures(got);
    assert.equal(sigs.length, 1);
    assert.match(sigs[0]!, /d=fallback\.test;/);
    assert.ok((await dkimverify(got, dns.port, 0)).ok);
  });

  it('leaves mail unsigned when its From: domain has no key and no fallback is set, and counts it', async () => {
    const counters = strictRelay.relay.container.resolve<Counters>(MailauthCounters);
    const before = counters.get('dkim.sign.unsigned');
    const got = await deliver(strictRelay, message('carol@nokey.test'));
    assert.equal(signatures(got).length, 0);
    assert.equal(counters.get('dkim.sign.unsigned'), before + 1);
    const metric = await strictRelay.relay.metrics.registry.getSingleMetric('portcullis_mailauth_events_total')!.get();
    assert.equal(metric.values.find((v) => v.labels['event'] === 'dkim.sign.unsigned')?.value, counters.get('dkim.sign.unsigned'));
  });

  it('does not sign mail from an anonymous Internet client (it is checked instead)', async () => {
    const got = await deliver(relay, message('alice@example.test'), '127.0.0.9');
    assert.equal(signatures(got).length, 0);
    assert.match(got.toString('latin1'), /^Authentication-Results: relay\.test;/m);
  });

  it('signs mail of an authenticated user on an Internet address, and runs no inbound checks on it', async () => {
    const got = await deliver(relay, message('alice@example.test'), '127.0.0.9', { user: 'alice@example.test', pass: 'correct horse' });
    assert.equal(signatures(got).length, 2);
    assert.ok((await dkimverify(got, dns.port, 0)).ok);
    assert.doesNotMatch(got.toString('latin1'), /^Authentication-Results:/im);
  });

  it('refuses to start with a missing key file, naming the option path and the file', async () => {
    const missing = path.join(dir, 'nope.key');
    await assert.rejects(
      startTestRelay({ builtins: { mailauth }, config: { plugins: [{ use: 'mailauth', with: { sign: { domains: { 'example.test': [{ selector: 's1', key: missing }] } } } }] } }),
      (err: Error) => err.message.includes('plugins[0]') && err.message.includes(`sign.domains.example.test.0.key: cannot read DKIM key ${missing}`),
    );
  });

  it('writes keygen key files readable by the owner only', () => {
    const st = statSync(path.join(dir, 'example.test.rsa2026.key'));
    assert.equal(st.mode & 0o777, 0o600);
  });
});

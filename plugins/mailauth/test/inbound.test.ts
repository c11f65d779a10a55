import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CaptureServer, RawSmtp, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import mailauth from '../src/index.js';
import { Dnsmasq } from '../../mx-router/test/support/dnsmasq.js';
import { ServfailUpstream } from '../../mx-router/test/support/servfail-upstream.js';
import { arcseal, dkimsign, dkimTxtLine } from './support/dkim-tools.js';

/*
 * Inbound checks over SMTP. The Internet client is 127.0.0.9 (EHLO client.test unless a test says
 * otherwise); 127.0.0.1 is a trusted internal server. dnsmasq serves the SPF, DKIM and DMARC
 * records; messages are DKIM-signed by python3-dkim's dkimsign (an independent signer).
 *
 *   SPF  pass.test ip4:127.0.0.9 -all   fail.test ip4:192.0.2.1 -all   soft.test ~all   neutral.test ?all
 *        none.test (no TXT)   perm.test (bad ip4)   temp.test (SERVFAIL)   helo.test ip4:127.0.0.9 -all
 *        partner.test -all (listed in exceptions: tagged, never rejected)
 *   DMARC rej.test p=reject   quar.test p=quarantine   rel.test p=reject (relaxed)
 *        strict.test p=reject adkim=s aspf=s   dmarctemp.test (SERVFAIL)
 *   DKIM selector sel at signer.test, rel.test, strict.test
 */
describe('inbound SPF, DKIM, DMARC and Authentication-Results over SMTP (dnsmasq)', function () {
  this.timeout(60_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mailauth-in-'));
  const keyFiles: Record<string, string> = {};
  const keyPems: Record<string, string> = {};
  let sink: CaptureServer;
  let dns: Dnsmasq;
  let downDns: Dnsmasq;
  let servfail: ServfailUpstream;
  let relay: TestRelay;
  let downRelay: TestRelay;

  const records = () => [
    'txt-record=pass.test,"v=spf1 ip4:127.0.0.9 -all"',
    'txt-record=fail.test,"v=spf1 ip4:192.0.2.1 -all"',
    'txt-record=partner.test,"v=spf1 ip4:192.0.2.1 -all"',
    'txt-record=soft.test,"v=spf1 ~all"',
    'txt-record=neutral.test,"v=spf1 ?all"',
    'host-record=none.test,127.0.0.99',
    'txt-record=perm.test,"v=spf1 ip4:999.0.0.1 -all"',
    `server=/temp.test/${servfail.target}`,
    'txt-record=helo.test,"v=spf1 ip4:127.0.0.9 -all"',
    'txt-record=cache.test,"v=spf1 ip4:127.0.0.9 -all"',
    'txt-record=_dmarc.rej.test,"v=DMARC1; p=reject"',
    'txt-record=_dmarc.quar.test,"v=DMARC1; p=quarantine"',
    'txt-record=_dmarc.rel.test,"v=DMARC1; p=reject"',
    'txt-record=mail.rel.test,"v=spf1 ip4:127.0.0.9 -all"',
    'txt-record=_dmarc.strict.test,"v=DMARC1; p=reject; adkim=s; aspf=s"',
    'txt-record=mail.strict.test,"v=spf1 ip4:127.0.0.9 -all"',
    `server=/dmarctemp.test/${servfail.target}`,
    ...['signer.test', 'rel.test', 'strict.test', 'forwarder.test'].map((d) => dkimTxtLine(d, 'sel', keyPems[d]!)),
  ];

  const relayConfig = (server: string) => ({
    hostname: 'relay.test',
    dns: { servers: [server], timeout: '1s' },
    plugins: [
      { use: 'relay-policy', with: { domains: { 'dest.test': { nexthop: sink.address, tls: 'none' } }, trustedNetworks: ['127.0.0.1/32'] } },
      { use: 'mailauth', with: { trustedNetworks: ['127.0.0.1/32'], verify: { spfFail: 'reject', exceptions: ['partner.test'] } } },
    ],
  });

  before(async () => {
    for (const d of ['signer.test', 'rel.test', 'strict.test', 'forwarder.test']) {
      // PKCS#1 PEM: the form python3-dkim's dkimsign reads.
      const pem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
      keyPems[d] = pem;
      keyFiles[d] = path.join(dir, `${d}.key`);
      writeFileSync(keyFiles[d]!, pem, { mode: 0o600 });
    }
    sink = await CaptureServer.start();
    servfail = await ServfailUpstream.start();
    dns = await Dnsmasq.start({ lines: records() });
    downDns = await Dnsmasq.start({ lines: records() });
    relay = await startTestRelay({ builtins: { 'relay-policy': relayPolicy, mailauth }, config: relayConfig(dns.server) });
    downRelay = await startTestRelay({ builtins: { 'relay-policy': relayPolicy, mailauth }, config: relayConfig(downDns.server) });
    await downDns.stop(); // its DNS server is gone: every lookup fails
  });
  after(async () => {
    await relay?.stop();
    await downRelay?.stop();
    await sink?.close();
    await dns?.stop();
    await servfail?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const message = (from: string, extra = '') =>
    `${extra}From: Sender <${from}>\r\nTo: bob@dest.test\r\nSubject: hello\r\nDate: Tue, 01 Dec 2026 09:00:00 +0000\r\nMessage-ID: <${Math.random().toString(36).slice(2)}@x.test>\r\n\r\nHello Bob.\r\n`;
  const signed = async (from: string, domain: string, extra = '') => (await dkimsign(message(from, extra), 'sel', domain, keyFiles[domain]!)).replace(/\r?\n/g, '\r\n');

  interface Outcome {
    mail: string;
    data?: string;
    delivered?: string;
  }
  /** One SMTP transaction from `ip`; returns the replies and, when accepted, what reached the next hop. */
  async function send(opts: { mailFrom: string; raw?: string; helo?: string; ip?: string; via?: TestRelay }): Promise<Outcome> {
    const r = opts.via ?? relay;
    const c = await RawSmtp.connect(r.port, '127.0.0.1', opts.ip ?? '127.0.0.9');
    try {
      assert.match(await c.read(), /^220 /);
      assert.match(await c.cmd(`EHLO ${opts.helo ?? 'client.test'}`), /^250/);
      const mail = await c.cmd(`MAIL FROM:<${opts.mailFrom}>`);
      if (!mail.startsWith('250')) return { mail };
      assert.match(await c.cmd('RCPT TO:<bob@dest.test>'), /^250/);
      assert.match(await c.cmd('DATA'), /^354/);
      const before = sink.messages.length;
      const body = (opts.raw ?? message(opts.mailFrom)).replace(/^\./gm, '..');
      const data = await c.cmd(body + (body.endsWith('\r\n') ? '' : '\r\n') + '.');
      if (!data.startsWith('250')) return { mail, data };
      await sink.waitFor(before + 1);
      return { mail, data, delivered: sink.messages[before]!.raw.toString('latin1') };
    } finally {
      c.close();
    }
  }
  /** Our Authentication-Results field (unfolded), from a delivered message. */
  const ours = (delivered: string) => {
    const fields = [...delivered.matchAll(/^Authentication-Results:((?:.*)(?:\r\n[ \t].*)*)/gim)].map((m) => m[1]!.replace(/\r\n[ \t]/g, ' ').trim());
    const mine = fields.filter((f) => f.startsWith('relay.test;'));
    assert.equal(mine.length, 1, `expected one Authentication-Results from relay.test, got: ${fields.join(' | ')}`);
    return mine[0]!;
  };

  describe('SPF', () => {
    for (const [domain, result] of [
      ['pass.test', 'pass'],
      ['soft.test', 'softfail'],
      ['neutral.test', 'neutral'],
      ['none.test', 'none'],
      ['perm.test', 'permerror'],
    ] as const) {
      it(`records spf=${result} for a MAIL FROM in ${domain} and delivers`, async () => {
        const o = await send({ mailFrom: `a@${domain}` });
        assert.equal(o.data?.slice(0, 3), '250', JSON.stringify(o));
        assert.match(ours(o.delivered!), new RegExp(`spf=${result} .*smtp\\.mailfrom=a@${domain.replace('.', '\\.')}`));
      });
    }

    it('rejects an SPF fail (-all) at MAIL FROM with 550 5.7.23 naming the domain when spfFail is reject', async () => {
      const o = await send({ mailFrom: 'a@fail.test' });
      assert.equal(o.mail, '550 5.7.23 SPF check failed: fail.test does not designate this host as a permitted sender');
    });

    it('only tags an SPF fail for a domain listed in exceptions', async () => {
      const o = await send({ mailFrom: 'a@partner.test' });
      assert.equal(o.data?.slice(0, 3), '250', JSON.stringify(o));
      assert.match(ours(o.delivered!), /spf=fail .*smtp\.mailfrom=a@partner\.test/);
      assert.match(o.delivered!, /^X-Portcullis-Quarantine: spf=fail smtp\.mailfrom=partner\.test/m);
    });

    it('answers 451 4.4.3 for an SPF temperror (SERVFAIL), never a 5xx', async () => {
      const o = await send({ mailFrom: 'a@temp.test' });
      assert.equal(o.mail, '451 4.4.3 Temporary DNS failure checking SPF for temp.test, try again later');
    });

    it('checks the HELO identity too and reports it as smtp.helo', async () => {
      const o = await send({ mailFrom: 'a@none.test', helo: 'helo.test' });
      const ar = ours(o.delivered!);
      assert.match(ar, /spf=none .*smtp\.mailfrom=a@none\.test/);
      assert.match(ar, /; spf=pass \([^)]*\) smtp\.helo=helo\.test;/);
    });
  });

  describe('DKIM', () => {
    it('reports dkim=pass for a valid signature, with the signing domain', async () => {
      const o = await send({ mailFrom: 'a@none.test', raw: await signed('a@signer.test', 'signer.test') });
      assert.match(ours(o.delivered!), /dkim=pass header\.i=@signer\.test header\.s=sel header\.a=rsa-sha256/);
    });

    it('reports dkim=fail for a signature broken by a changed body', async () => {
      const raw = (await signed('a@signer.test', 'signer.test')).replace('Hello Bob.', 'Hello Bob!');
      const o = await send({ mailFrom: 'a@none.test', raw });
      assert.match(ours(o.delivered!), /dkim=fail \(body hash did not verify\) header\.i=@signer\.test/);
    });

    it('reports dkim=fail for a signature broken by a changed signed header', async () => {
      const raw = (await signed('a@signer.test', 'signer.test')).replace('Subject: hello', 'Subject: hello again');
      const o = await send({ mailFrom: 'a@none.test', raw });
      assert.match(ours(o.delivered!), /dkim=fail .*header\.i=@signer\.test/);
      assert.doesNotMatch(ours(o.delivered!), /dkim=pass/);
    });

    it('reports dkim=none for a message without a signature', async () => {
      const o = await send({ mailFrom: 'a@none.test' });
      assert.match(ours(o.delivered!), /dkim=none/);
      assert.match(ours(o.delivered!), /arc=none/);
    });
  });

  describe('ARC', () => {
    /** A signed message a list at forwarder.test changed (breaking DKIM) and then ARC-sealed. */
    const forwarded = async () => {
      const original = await signed('a@signer.test', 'signer.test');
      const changed = ('Authentication-Results: forwarder.test; dkim=pass header.d=signer.test\r\n' + original).replace('Hello Bob.', 'Hello Bob.\r\n-- \r\nlist footer');
      return (await arcseal(changed, 'sel', 'forwarder.test', keyFiles['forwarder.test']!, 'forwarder.test')).replace(/\r?\n/g, '\r\n');
    };

    it('reports arc=pass for a valid ARC chain sealed by a forwarder, next to the broken DKIM signature', async () => {
      const o = await send({ mailFrom: 'a@none.test', raw: await forwarded() });
      const ar = ours(o.delivered!);
      assert.match(ar, /arc=pass .*smtp\.remote-ip=127\.0\.0\.9|arc=pass/);
      assert.match(ar, /dkim=fail .*header\.i=@signer\.test/);
    });

    it('reports arc=fail when the sealed message is changed after sealing', async () => {
      const raw = (await forwarded()).replace('Subject: hello', 'Subject: hello, changed');
      const o = await send({ mailFrom: 'a@none.test', raw });
      assert.match(ours(o.delivered!), /arc=fail/);
    });
  });

  describe('DMARC', () => {
    it('rejects a p=reject failure at end of DATA with 550 5.7.1 naming the From: domain', async () => {
      const o = await send({ mailFrom: 'a@pass.test', raw: message('boss@rej.test') });
      assert.equal(o.mail.slice(0, 3), '250');
      assert.equal(o.data, '550 5.7.1 Message rejected: DMARC policy of rej.test is reject and this message failed it');
    });

    it('shows the DMARC rejection to swaks, as a person trying it would see it', async () => {
      // swaks exits non-zero on a rejected message: the output is what counts.
      const r = await promisify(execFile)('swaks', ['--server', `127.0.0.1:${relay.port}`, '--local-interface', '127.0.0.9', '--ehlo', 'client.test', '--from', 'a@pass.test', '--to', 'bob@dest.test', '--header', 'From: Boss <boss@rej.test>', '--timeout', '20'], { encoding: 'utf8', timeout: 30_000 }).catch((e: { stdout: string; stderr: string }) => e);
      assert.match(r.stdout, /^<\*\* 550 5\.7\.1 Message rejected: DMARC policy of rej\.test is reject and this message failed it$/m, r.stdout + r.stderr);
    });

    it('tags a p=quarantine failure and delivers it', async () => {
      const o = await send({ mailFrom: 'a@pass.test', raw: message('news@quar.test') });
      assert.equal(o.data?.slice(0, 3), '250', JSON.stringify(o));
      assert.match(ours(o.delivered!), /dmarc=fail .*header\.from=quar\.test/);
      assert.match(o.delivered!, /^X-Portcullis-Quarantine: dmarc=fail policy=quarantine header\.from=quar\.test/m);
    });

    it('passes relaxed DKIM alignment: From: a subdomain, signed by the organisational domain', async () => {
      const o = await send({ mailFrom: 'a@none.test', raw: await signed('a@news.rel.test', 'rel.test') });
      assert.equal(o.data?.slice(0, 3), '250', JSON.stringify(o));
      assert.match(ours(o.delivered!), /dmarc=pass/);
      assert.doesNotMatch(o.delivered!, /X-Portcullis-Quarantine/);
    });

    it('passes relaxed SPF alignment: MAIL FROM in a subdomain of the From: domain', async () => {
      const o = await send({ mailFrom: 'bounce@mail.rel.test', raw: message('a@rel.test') });
      assert.equal(o.data?.slice(0, 3), '250', JSON.stringify(o));
      assert.match(ours(o.delivered!), /spf=pass .*dmarc=pass/s);
    });

    it('fails strict DKIM alignment (adkim=s) for a subdomain signed by its parent: 550', async () => {
      const o = await send({ mailFrom: 'a@none.test', raw: await signed('a@news.strict.test', 'strict.test') });
      assert.equal(o.data, '550 5.7.1 Message rejected: DMARC policy of news.strict.test is reject and this message failed it');
    });

    it('fails strict SPF alignment (aspf=s) for a MAIL FROM in a subdomain: 550', async () => {
      const o = await send({ mailFrom: 'bounce@mail.strict.test', raw: message('a@strict.test') });
      assert.equal(o.data, '550 5.7.1 Message rejected: DMARC policy of strict.test is reject and this message failed it');
    });

    it('passes strict alignment when the signing domain is exactly the From: domain', async () => {
      const o = await send({ mailFrom: 'a@none.test', raw: await signed('a@strict.test', 'strict.test') });
      assert.equal(o.data?.slice(0, 3), '250', JSON.stringify(o));
      assert.match(ours(o.delivered!), /dkim=pass .*dmarc=pass/s);
    });

    it('answers 451 4.4.3 when the DMARC lookup fails (SERVFAIL), never 550', async () => {
      const o = await send({ mailFrom: 'a@pass.test', raw: message('a@dmarctemp.test') });
      assert.equal(o.data, '451 4.4.3 Temporary DNS failure checking DKIM/DMARC for dmarctemp.test, try again later');
    });
  });

  describe('DNS cache (the relay\'s shared state)', () => {
    it('asks the DNS server once for records it has cached', async () => {
      const queries = () => dns.log.split('\n').filter((l) => /query\[TXT\] cache\.test from/.test(l)).length;
      for (let i = 0; i < 3; i++) {
        const o = await send({ mailFrom: `n${i}@cache.test` });
        assert.match(ours(o.delivered!), /spf=pass .*smtp\.mailfrom=n\d@cache\.test/);
      }
      assert.equal(queries(), 1, dns.log.split('\n').filter((l) => l.includes('cache.test')).join('\n'));
    });

    it('never caches a DNS failure: the next attempt asks again', async () => {
      const before = servfail.queries;
      for (let i = 0; i < 2; i++) assert.match((await send({ mailFrom: 'a@temp.test' })).mail, /^451 4\.4\.3 /);
      assert.ok(servfail.queries >= before + 2, `upstream saw ${servfail.queries - before} queries`);
    });
  });

  describe('malformed input', () => {
    it('reports dmarc=permerror for a From: whose domain is no valid DNS name, and delivers it (no 451 loop)', async () => {
      const raw = 'From: <<<>>>\r\nTo: bob@dest.test\r\nSubject: odd\r\n\r\nbody\r\n';
      const o = await send({ mailFrom: 'a@pass.test', raw });
      assert.equal(o.data?.slice(0, 3), '250', JSON.stringify(o));
      assert.match(ours(o.delivered!), /dkim=none.*dmarc=permerror \(From: domain is not a valid domain name\)/);
    });

    it('reports a syntactically broken DKIM-Signature without failing the message', async () => {
      const raw = message('a@pass.test', 'DKIM-Signature: v=1; a=rsa-sha256; d=pass.test; s=nokey; h=from; bh=AAAA; b=AAAA\r\n');
      const o = await send({ mailFrom: 'a@pass.test', raw });
      assert.equal(o.data?.slice(0, 3), '250', JSON.stringify(o));
      assert.match(ours(o.delivered!), /dkim=(fail|neutral|permerror)/);
    });
  });

  describe('Authentication-Results', () => {
    it('removes an incoming Authentication-Results claiming our authserv-id and keeps others', async () => {
      const forged = 'Authentication-Results: relay.test;\r\n dkim=pass header.d=rej.test; dmarc=pass\r\nAuthentication-Results: other.example; spf=pass smtp.mailfrom=a@pass.test\r\n';
      const o = await send({ mailFrom: 'a@pass.test', raw: message('a@pass.test', forged) });
      assert.equal(o.data?.slice(0, 3), '250', JSON.stringify(o));
      const mine = ours(o.delivered!);
      assert.match(mine, /^relay\.test; spf=pass/);
      assert.doesNotMatch(o.delivered!, /dkim=pass header\.d=rej\.test/);
      assert.match(o.delivered!, /^Authentication-Results: other\.example; spf=pass smtp\.mailfrom=a@pass\.test\r$/m);
    });

    it('removes a forged field whatever its case, comments or version', async () => {
      const forged = 'authentication-results:  (forged) RELAY.TEST 1 ; spf=pass\r\n';
      const o = await send({ mailFrom: 'a@pass.test', raw: message('a@pass.test', forged) });
      assert.doesNotMatch(o.delivered!, /RELAY\.TEST 1/);
      ours(o.delivered!);
    });
  });

  describe('DNS down and trusted senders', () => {
    it('answers 451 when the resolver is unreachable, never 550, even for a p=reject domain', async () => {
      for (const mailFrom of ['a@pass.test', 'boss@rej.test', 'a@fail.test']) {
        const o = await send({ mailFrom, via: downRelay, raw: message('boss@rej.test') });
        assert.match(o.mail, /^451 4\.4\.3 /, `${mailFrom}: ${JSON.stringify(o)}`);
      }
    });

    it('skips every check for a trusted network: a p=reject From: is delivered, with no Authentication-Results added', async () => {
      const o = await send({ mailFrom: 'a@fail.test', raw: message('boss@rej.test'), ip: '127.0.0.1' });
      assert.equal(o.data?.slice(0, 3), '250', JSON.stringify(o));
      assert.doesNotMatch(o.delivered!, /^Authentication-Results:/im);
    });
  });
});

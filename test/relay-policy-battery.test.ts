import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { definePlugin } from '@portcullis/core';
import { CaptureServer, RawSmtp, selfSignedFiles, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy, { userLine } from '@portcullis/relay-policy';

/**
 * Issue 3's battery: untrusted (127.0.0.9), trusted (127.0.0.2) and authenticated (127.0.0.10)
 * clients against one relay. Hosted domains go to the internal capture server; everything else a
 * trusted or authenticated client sends goes to the "internet" capture server. Untrusted clients
 * must never get anything to the internet.
 */
const UNTRUSTED = '127.0.0.9';
const TRUSTED = '127.0.0.2';
const AUTHED = '127.0.0.10';
const PASSWORD = 'correct horse battery staple';

describe('relay policy battery (issue 3)', function () {
  this.timeout(60_000);
  let internal: CaptureServer;
  let internet: CaptureServer;
  let relay: TestRelay;

  before(async () => {
    internal = await CaptureServer.start({ host: '127.0.0.1' });
    internet = await CaptureServer.start({ host: '127.0.0.1' });
    const tls = await selfSignedFiles('relay.test');
    const users = path.join(tls.dir, 'users.passwd');
    writeFileSync(users, (await userLine('alice@hosted.test', PASSWORD)) + '\n');
    const toInternet = definePlugin({ name: 'to-internet', setup: () => ({ route: () => ({ hosts: [{ host: internet.host, port: internet.port }], tls: 'none' as const }) }) });
    relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy, 'to-internet': toInternet },
      config: {
        tls: { key: tls.key, cert: tls.cert },
        listen: [{ host: '127.0.0.1', port: 0, tls: 'starttls', auth: 'optional', greetingDelay: 0 }],
        plugins: [
          {
            use: 'relay-policy',
            with: {
              domains: {
                'hosted.test': { nexthop: internal.address, tls: 'none' },
                '*.sub.hosted.test': { nexthop: internal.address, tls: 'none' },
                'bücher.test': { nexthop: internal.address, tls: 'none' },
              },
              trustedNetworks: [`${TRUSTED}/32`],
              blockedDestinations: ['blocked.test'],
              users,
              senderMustMatch: true,
              authThrottle: { delay: '10ms', maxFailuresPerConnection: 3, maxFailuresPerIp: 10, window: '1m' },
            },
          },
          { use: 'to-internet' },
        ],
      },
    });
  });
  after(async () => {
    await relay?.stop();
    await internal?.close();
    await internet?.close();
  });

  async function session(client: string, opts: { helo?: string; auth?: boolean } = {}): Promise<RawSmtp> {
    const c = await RawSmtp.connect(relay.port, '127.0.0.1', client);
    assert.match(await c.read(), /^220 /);
    const ehlo = await c.cmd(`EHLO ${opts.helo ?? 'client.test'}`);
    assert.doesNotMatch(ehlo, /AUTH/, 'AUTH is never advertised before TLS');
    if (opts.auth) {
      assert.match(await c.cmd('STARTTLS'), /^220 /);
      await c.startTls();
      assert.match(await c.cmd('EHLO client.test'), /250-AUTH PLAIN LOGIN/);
      const token = Buffer.from(`\0alice@hosted.test\0${PASSWORD}`).toString('base64');
      assert.match(await c.cmd(`AUTH PLAIN ${token}`), /^235 /);
    }
    return c;
  }

  /** A connection from `client`, upgraded with STARTTLS and greeted again, not yet logged in. */
  async function tlsSession(client: string): Promise<RawSmtp> {
    const c = await RawSmtp.connect(relay.port, '127.0.0.1', client);
    await c.read();
    await c.cmd('EHLO client.test');
    await c.cmd('STARTTLS');
    await c.startTls();
    await c.cmd('EHLO client.test');
    return c;
  }

  /** MAIL + RCPT; if RCPT is accepted, sends a message and returns the DATA reply as well. */
  async function attempt(client: string, from: string, rcpt: string, opts: { helo?: string; auth?: boolean } = {}): Promise<{ mail: string; rcpt: string; data?: string; body: string }> {
    const c = await session(client, opts);
    const body = `From: <${from || 'nobody@x.test'}>\r\nTo: <${rcpt}>\r\nSubject: case ${rcpt}\r\nMessage-ID: <${Math.random().toString(36).slice(2)}@client.test>\r\n\r\nHello ${rcpt}\r\n`;
    const mail = await c.cmd(`MAIL FROM:<${from}>`);
    const r = await c.cmd(`RCPT TO:<${rcpt}>`);
    let data: string | undefined;
    if (r.startsWith('250')) {
      assert.match(await c.cmd('DATA'), /^354 /);
      c.write(body + '.\r\n');
      data = await c.read();
    }
    c.close();
    return { mail, rcpt: r, data, body };
  }

  type Case = { title: string; client: string; from?: string; rcpt: string; helo?: string; auth?: boolean; expect: RegExp; lands?: 'internal' | 'internet' };
  const cases: Case[] = [
    { title: 'untrusted → hosted domain is accepted and delivered inside', client: UNTRUSTED, rcpt: 'user@hosted.test', expect: /^250 /, lands: 'internal' },
    { title: 'untrusted → hosted domain in upper case', client: UNTRUSTED, rcpt: 'User@HOSTED.TEST', expect: /^250 /, lands: 'internal' },
    { title: 'untrusted → configured wildcard subdomain', client: UNTRUSTED, rcpt: 'user@a.sub.hosted.test', expect: /^250 /, lands: 'internal' },
    { title: 'untrusted → IDN hosted domain in punycode', client: UNTRUSTED, rcpt: 'user@xn--bcher-kva.test', expect: /^250 /, lands: 'internal' },
    { title: 'untrusted → unconfigured subdomain of a hosted domain', client: UNTRUSTED, rcpt: 'user@other.hosted.test', expect: /^550 5\.7\.1 Unable to relay$/ },
    { title: 'untrusted → wildcard parent itself', client: UNTRUSTED, rcpt: 'user@sub.hosted.test', expect: /^550 5\.7\.1 Unable to relay$/ },
    { title: 'untrusted → third-party domain', client: UNTRUSTED, rcpt: 'user@third.test', expect: /^550 5\.7\.1 Unable to relay$/ },
    { title: 'untrusted → % hack via a hosted domain', client: UNTRUSTED, rcpt: 'user%third.test@hosted.test', expect: /^550 5\.7\.1 Unable to relay$/ },
    { title: 'untrusted → bang path via a hosted domain', client: UNTRUSTED, rcpt: 'third.test!user@hosted.test', expect: /^550 5\.7\.1 Unable to relay$/ },
    { title: 'untrusted → bare bang path', client: UNTRUSTED, rcpt: 'third.test!user', expect: /^5\d\d / },
    { title: 'untrusted → quoted local part hiding @', client: UNTRUSTED, rcpt: '"user@third.test"@hosted.test', expect: /^5\d\d / },
    { title: 'untrusted → quoted local part hiding %', client: UNTRUSTED, rcpt: '"user%third.test"@hosted.test', expect: /^5\d\d / },
    { title: 'untrusted → source route through a hosted domain', client: UNTRUSTED, rcpt: '@hosted.test:user@third.test', expect: /^5\d\d / },
    { title: 'untrusted → address literal', client: UNTRUSTED, rcpt: 'user@[127.0.0.1]', expect: /^550 5\.7\.1 Unable to relay$/ },
    { title: 'untrusted → bare IP as domain', client: UNTRUSTED, rcpt: 'user@127.0.0.1', expect: /^550 5\.7\.1 Unable to relay$/ },
    { title: 'untrusted → hosted domain as a prefix of another', client: UNTRUSTED, rcpt: 'user@hosted.test.evil.test', expect: /^550 5\.7\.1 Unable to relay$/ },
    { title: 'untrusted → hosted domain as a suffix without a dot', client: UNTRUSTED, rcpt: 'user@evilhosted.test', expect: /^550 5\.7\.1 Unable to relay$/ },
    { title: 'untrusted spoofing our domain in MAIL FROM → third party', client: UNTRUSTED, from: 'postmaster@hosted.test', rcpt: 'user@third.test', expect: /^550 5\.7\.1 Unable to relay$/ },
    { title: 'untrusted spoofing our domain in HELO → third party', client: UNTRUSTED, helo: 'hosted.test', rcpt: 'user@third.test', expect: /^550 5\.7\.1 Unable to relay$/ },
    { title: 'untrusted claiming a trusted IP in HELO → third party', client: UNTRUSTED, helo: `[${TRUSTED}]`, rcpt: 'user@third.test', expect: /^550 5\.7\.1 Unable to relay$/ },
    { title: 'untrusted with the null sender → third party', client: UNTRUSTED, from: '', rcpt: 'user@third.test', expect: /^550 5\.7\.1 Unable to relay$/ },
    { title: 'untrusted → postmaster of a third party', client: UNTRUSTED, rcpt: 'postmaster@third.test', expect: /^550 5\.7\.1 Unable to relay$/ },
    { title: 'untrusted → non-ASCII address without SMTPUTF8', client: UNTRUSTED, rcpt: 'üser@hosted.test', expect: /^553 5\.6\.7 / },
    { title: 'trusted → third party is relayed', client: TRUSTED, rcpt: 'user@third.test', expect: /^250 /, lands: 'internet' },
    { title: 'trusted → hosted domain', client: TRUSTED, rcpt: 'user@hosted.test', expect: /^250 /, lands: 'internal' },
    { title: 'trusted → % hack is still refused', client: TRUSTED, rcpt: 'user%fourth.test@third.test', expect: /^550 5\.7\.1 Unable to relay$/ },
    { title: 'trusted → blocked destination', client: TRUSTED, rcpt: 'user@blocked.test', expect: /^550 5\.7\.1 Relaying to blocked\.test is not allowed$/ },
    { title: 'trusted → address literal is refused unless allowed', client: TRUSTED, rcpt: 'user@[127.0.0.1]', expect: /^550 5\.7\.1 Unable to relay$/ },
    { title: 'authenticated → third party is relayed', client: AUTHED, auth: true, from: 'alice@hosted.test', rcpt: 'friend@third.test', expect: /^250 /, lands: 'internet' },
    { title: 'authenticated → blocked destination', client: AUTHED, auth: true, from: 'alice@hosted.test', rcpt: 'x@blocked.test', expect: /^550 5\.7\.1 Relaying to blocked\.test is not allowed$/ },
    { title: 'authenticated → bang path is still refused', client: AUTHED, auth: true, from: 'alice@hosted.test', rcpt: 'third.test!user@hosted.test', expect: /^550 5\.7\.1 Unable to relay$/ },
  ];

  const landed: Array<{ c: Case; body: string }> = [];
  for (const c of cases) {
    it(c.title, async () => {
      const r = await attempt(c.client, c.from ?? 'sender@client.test', c.rcpt, { helo: c.helo, auth: c.auth });
      assert.match(r.rcpt, c.expect, `RCPT TO:<${c.rcpt}> got ${r.rcpt}`);
      if (c.lands) {
        assert.match(r.data ?? '', /^250 2\.0\.0 Ok: queued as /);
        landed.push({ c, body: r.body });
      }
    });
  }

  it('an authenticated user cannot send as someone else (senderMustMatch)', async () => {
    const r = await attempt(AUTHED, 'boss@other.test', 'friend@third.test', { auth: true });
    assert.equal(r.mail, '553 5.7.1 Sender address <boss@other.test> does not belong to user alice@hosted.test');
  });

  it('delivered exactly the accepted messages, byte for byte after our Received header, and nothing from untrusted clients reached the internet', async () => {
    const wantInternal = landed.filter((l) => l.c.lands === 'internal');
    const wantInternet = landed.filter((l) => l.c.lands === 'internet');
    await internal.waitFor(wantInternal.length, 15_000);
    await internet.waitFor(wantInternet.length, 15_000);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(internal.messages.length, wantInternal.length);
    assert.equal(internet.messages.length, wantInternet.length);
    for (const { body } of wantInternal) {
      const got = internal.messages.find((m) => m.raw.toString().endsWith(body));
      assert.ok(got, `internal server did not get ${body.split('\r\n')[2]}`);
      assert.equal(got.raw.toString().replace(/^Received: [^\r]*\r\n(\t[^\r]*\r\n)*/, ''), body);
    }
    for (const m of internet.messages) assert.ok([TRUSTED, AUTHED].some((ip) => m.raw.toString().includes(`([${ip}])`)), 'only trusted or authenticated clients reach the internet');
  });

  describe('session state', () => {
    it('keeps no transaction after RSET and no login across connections', async () => {
      const c = await session(AUTHED, { auth: true });
      assert.match(await c.cmd('MAIL FROM:<alice@hosted.test>'), /^250/);
      assert.match(await c.cmd('RSET'), /^250/);
      assert.match(await c.cmd('RCPT TO:<friend@third.test>'), /^503 /);
      c.close();
      const fresh = await session(AUTHED);
      assert.match(await fresh.cmd('MAIL FROM:<alice@hosted.test>'), /^250/);
      assert.equal(await fresh.cmd('RCPT TO:<friend@third.test>'), '550 5.7.1 Unable to relay');
      fresh.close();
    });

    it('refuses AUTH before TLS, so no password crosses in clear', async () => {
      const c = await session(UNTRUSTED);
      const token = Buffer.from(`\0alice@hosted.test\0${PASSWORD}`).toString('base64');
      assert.match(await c.cmd(`AUTH PLAIN ${token}`), /^5\d\d /);
      assert.match(await c.cmd('MAIL FROM:<alice@hosted.test>'), /^250/);
      assert.equal(await c.cmd('RCPT TO:<friend@third.test>'), '550 5.7.1 Unable to relay');
      c.close();
    });

    it('refuses an authorization identity different from the login', async () => {
      const c = await tlsSession(AUTHED);
      const token = Buffer.from(`bob@hosted.test\0alice@hosted.test\0${PASSWORD}`).toString('base64');
      assert.equal(await c.cmd(`AUTH PLAIN ${token}`), '535 5.7.8 Authorization identity must be the login name');
      c.close();
    });

    it('ignores commands injected in plaintext after STARTTLS, including a partial line', async () => {
      const c = await RawSmtp.connect(relay.port, '127.0.0.1', UNTRUSTED);
      await c.read();
      await c.cmd('EHLO client.test');
      c.write('STARTTLS\r\nMAIL FROM:<evil@third.test>\r\nRCPT TO:<victim@third.test>\r\nRCPT TO:<user@hosted.test>\r\nDATA\r\nMAIL FR');
      assert.match(await c.read(), /^220 /);
      await c.startTls().catch(() => undefined);
      if (c.isClosed) return; // dropping the connection is a fine answer too
      // Nothing from the plaintext survived: no transaction is open, and the partial line is gone.
      const reply = await c.cmd('RCPT TO:<user@hosted.test>').catch(() => 'closed');
      assert.match(reply, /^(503|5\d\d|closed)/);
      c.close();
    });
  });

  describe('failed logins', () => {
    it('cuts one connection off after 3 bad passwords with 421', async () => {
      const c = await tlsSession('127.0.0.31');
      const replies: string[] = [];
      for (let i = 0; i < 25 && !c.isClosed; i++) {
        const token = Buffer.from(`\0alice@hosted.test\0wrong${i}`).toString('base64');
        replies.push(await c.cmd(`AUTH PLAIN ${token}`).catch(() => 'closed'));
      }
      assert.deepEqual(replies.slice(0, 2), ['535 5.7.8 Authentication credentials invalid', '535 5.7.8 Authentication credentials invalid']);
      assert.equal(replies[2], '421 4.7.0 Too many failed authentication attempts');
      await c.waitClosed();
      assert.ok(replies.length <= 4, `${replies.length} attempts were possible`);
    });

    it('refuses every login from an IP after 10 failures across connections, even the right password', async () => {
      const ip = '127.0.0.32';
      const outcomes: string[] = [];
      for (let i = 0; i < 25; i++) {
        const c = await tlsSession(ip);
        const token = Buffer.from(`\0alice@hosted.test\0wrong${i}`).toString('base64');
        outcomes.push((await c.cmd(`AUTH PLAIN ${token}`).catch(() => 'closed')).slice(0, 9));
        c.close();
      }
      assert.deepEqual(outcomes.slice(0, 9), Array(9).fill('535 5.7.8'));
      assert.deepEqual(outcomes.slice(9), Array(16).fill('421 4.7.0'));
      const c = await tlsSession(ip);
      const token = Buffer.from(`\0alice@hosted.test\0${PASSWORD}`).toString('base64');
      assert.equal(await c.cmd(`AUTH PLAIN ${token}`), '421 4.7.0 Too many failed logins from your address, try again later');
      c.close();
    });
  });
});

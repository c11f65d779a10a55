import assert from 'node:assert/strict';
import tls from 'node:tls';
import { definePlugin } from '@portcullis/core';
import { CaptureServer, hostedRelay, RawSmtp, selfSignedFiles, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';

const TRUSTED = '127.0.0.2';
const UNTRUSTED = '127.0.0.9';

/** The end-of-data look-alikes that have smuggled mail through one server into another. */
const SEQUENCES: Record<string, string> = {
  'LF.LF': '\n.\n',
  'CR.CR': '\r.\r',
  'LF.CRLF': '\n.\r\n',
  'CRLF.LF': '\r\n.\n',
  'CR.CRLF': '\r.\r\n',
  'CRLF.CR': '\r\n.\r',
  'LF.CRCRLF': '\n.\r\r\n',
  'CRLF.CRCRLF': '\r\n.\r\r\n',
  'CRLF.NUL.CRLF': '\r\n.\0\r\n',
  'CRLF.NUL.LF': '\r\n.\0\n',
  'NUL.CRLF.CRLF': '\r\n\0.\r\n',
};

describe('SMTP smuggling', function () {
  this.timeout(60_000);
  let internal: CaptureServer;
  let internet: CaptureServer;
  let relay: TestRelay;
  before(async () => {
    internal = await CaptureServer.start();
    internet = await CaptureServer.start();
    const toInternet = definePlugin({ name: 'to-internet', setup: () => ({ route: () => ({ hosts: [{ host: internet.host, port: internet.port }], tls: 'none' as const }) }) });
    relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy, 'to-internet': toInternet },
      config: {
        plugins: [
          { use: 'relay-policy', with: { domains: { 'hosted.test': { nexthop: internal.address, tls: 'none' } }, trustedNetworks: [`${TRUSTED}/32`] } },
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

  for (const [direction, client, rcpt, sink] of [
    ['inbound', UNTRUSTED, 'user@hosted.test', () => internal],
    ['outbound', TRUSTED, 'user@third.test', () => internet],
  ] as const) {
    for (const [name, seq] of Object.entries(SEQUENCES)) {
      it(`${direction}: ${name} never yields a second message at the next hop`, async () => {
        const target = sink();
        const before = target.messages.length;
        const c = await RawSmtp.connect(relay.port, '127.0.0.1', client);
        await c.read();
        await c.cmd('EHLO client.test');
        assert.match(await c.cmd('MAIL FROM:<alice@client.test>'), /^250/);
        assert.match(await c.cmd(`RCPT TO:<${rcpt}>`), /^250/);
        assert.match(await c.cmd('DATA'), /^354/);
        c.write(
          `Subject: first ${name}\r\n\r\nfirst body` + seq +
            `MAIL FROM:<smuggler@evil.test>\r\nRCPT TO:<victim@${direction === 'inbound' ? 'hosted.test' : 'third.test'}>\r\nDATA\r\nSubject: SMUGGLED\r\n\r\nsecond\r\n.\r\n`,
        );
        const reply = await c.read();
        c.close();
        await new Promise((r) => setTimeout(r, 300));
        const got = target.messages.slice(before);
        assert.ok(got.length <= 1, `${got.length} messages reached the next hop`);
        assert.ok(!got.some((m) => m.to.some((t) => t.startsWith('victim@'))), 'the smuggled envelope reached the next hop');
        // Our policy: reject. (Neutralising would also satisfy "never two".)
        assert.equal(reply, '550 5.6.0 Message contains bare CR, bare LF or NUL; lines must end with CRLF');
        assert.equal(got.length, 0);
      });
    }
  }
});

describe('protocol limits', function () {
  this.timeout(30_000);
  let sink: CaptureServer;
  let relay: TestRelay;
  before(async () => {
    const hosted = await hostedRelay({
      builtins: { 'relay-policy': relayPolicy },
      domain: 'hosted.test',
      config: { limits: { headerSize: '4KB', headerFields: 20, maxReceived: 5, minDataRate: 1000, dataRateWindow: '700ms' } },
    });
    relay = hosted;
    sink = hosted.sink;
  });
  after(async () => {
    await relay?.stop();
    await sink?.close();
  });

  /** An untrusted client that has reached DATA for user@hosted.test. */
  async function openData(): Promise<RawSmtp> {
    const c = await RawSmtp.connect(relay.port, '127.0.0.1', UNTRUSTED);
    await c.read();
    await c.cmd('EHLO client.test');
    await c.cmd('MAIL FROM:<a@client.test>');
    await c.cmd('RCPT TO:<user@hosted.test>');
    await c.cmd('DATA');
    return c;
  }

  async function data(message: string): Promise<string> {
    const c = await openData();
    c.write(message + '.\r\n');
    const r = await c.read();
    c.close();
    return r;
  }

  it('refuses a mail loop (too many Received headers) with 554 5.4.6', async () => {
    const hops = Array.from({ length: 6 }, (_, i) => `Received: from hop${i}.test by hop${i + 1}.test; Fri, 27 Nov 2026 10:00:0${i} +0000\r\n`).join('');
    assert.equal(await data(hops + 'Subject: loop\r\n\r\nbody\r\n'), '554 5.4.6 Too many Received headers: mail loop?');
    assert.match(await data(hops.split('\r\n').slice(0, 5).join('\r\n') + '\r\nSubject: ok\r\n\r\nbody\r\n'), /^250 /);
  });

  it('refuses an oversized header section and too many header fields with 552 5.3.4', async () => {
    assert.equal(await data(`Subject: big\r\nX-Filler: ${'a'.repeat(5000)}\r\n\r\nbody\r\n`), '552 5.3.4 Message header exceeds the size or field-count limit');
    const fields = Array.from({ length: 21 }, (_, i) => `X-F${i}: v\r\n`).join('');
    assert.equal(await data(fields + '\r\nbody\r\n'), '552 5.3.4 Message header exceeds the size or field-count limit');
    // A long body is not a long header.
    assert.match(await data(`Subject: fine\r\n\r\n${('b'.repeat(70) + '\r\n').repeat(200)}`), /^250 /);
  });

  it('closes a client that trickles DATA slower than minDataRate with 421 4.4.2', async () => {
    const c = await openData();
    let reply = '';
    for (let i = 0; i < 40 && !c.isClosed; i++) {
      c.write('x');
      await new Promise((r) => setTimeout(r, 100));
    }
    reply = await c.read(2000).catch(() => '');
    await c.waitClosed(5000);
    assert.equal(reply, '421 4.4.2 Data rate too low, closing connection');
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(!sink.messages.some((m) => m.raw.includes('xxxxx')), 'the trickled message was not queued');
  });

  it('refuses XCLIENT, XFORWARD and BDAT from peers nobody configured', async () => {
    const c = await RawSmtp.connect(relay.port, '127.0.0.1', UNTRUSTED);
    await c.read();
    const ehlo = await c.cmd('EHLO client.test');
    assert.doesNotMatch(ehlo, /XCLIENT|XFORWARD|CHUNKING/);
    assert.match(await c.cmd('XCLIENT ADDR=127.0.0.2'), /^5\d\d /);
    assert.match(await c.cmd('XFORWARD ADDR=127.0.0.2'), /^5\d\d /);
    assert.match(await c.cmd('BDAT 10 LAST'), /^5\d\d /);
    c.close();
  });
});

describe('TLS', function () {
  this.timeout(30_000);
  let relay: TestRelay;
  let files: Awaited<ReturnType<typeof selfSignedFiles>>;
  before(async () => {
    files = await selfSignedFiles('relay.test');
    relay = await startTestRelay({
      config: {
        tls: { key: files.key, cert: files.cert },
        listen: [
          { host: '127.0.0.1', port: 0, tls: 'starttls', greetingDelay: 0 },
          { host: '127.0.0.1', port: 0, tls: 'implicit', auth: 'required', greetingDelay: 0 },
        ],
        limits: { tlsHandshakeTimeout: '1s' },
      },
    });
  });
  after(() => relay?.stop());

  function connectTls(port: number, opts: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'relay.test', ...opts }, () => resolve(s));
      s.once('error', reject);
    });
  }

  it('speaks implicit TLS on the 465-style listener, with AUTH offered only there', async () => {
    const port = relay.relay.addresses()[1]!.port;
    const s = await connectTls(port);
    const greeting = await new Promise<string>((r) => s.once('data', (d) => r(d.toString())));
    assert.match(greeting, /^220 /);
    s.write('EHLO client.test\r\n');
    const ehlo = await new Promise<string>((r) => s.once('data', (d) => r(d.toString())));
    assert.match(ehlo, /AUTH PLAIN LOGIN/);
    s.write('MAIL FROM:<a@b.test>\r\n');
    assert.equal((await new Promise<string>((r) => s.once('data', (d) => r(d.toString())))).trim(), '530 5.7.0 Authentication required');
    s.destroy();
  });

  it('refuses TLS older than 1.2', async () => {
    const port = relay.relay.addresses()[1]!.port;
    await assert.rejects(connectTls(port, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }));
    const ok = await connectTls(port, { maxVersion: 'TLSv1.2' });
    assert.equal(ok.getProtocol(), 'TLSv1.2');
    ok.destroy();
  });

  it('reloads the key and certificate without dropping an open session', async () => {
    const port = relay.relay.addresses()[0]!.port;
    const c = await RawSmtp.connect(port);
    await c.read();
    await c.cmd('EHLO client.test');
    await c.cmd('STARTTLS');
    const before = (await c.startTls()).getPeerCertificate().fingerprint256;
    const fresh = await selfSignedFiles('relay.test');
    const { copyFileSync } = await import('node:fs');
    copyFileSync(fresh.key, files.key);
    copyFileSync(fresh.cert, files.cert);
    relay.relay.reloadTls();
    assert.match(await c.cmd('NOOP'), /^250/, 'the open session survives the reload');
    const c2 = await RawSmtp.connect(port);
    await c2.read();
    await c2.cmd('EHLO client.test');
    await c2.cmd('STARTTLS');
    const after = (await c2.startTls()).getPeerCertificate().fingerprint256;
    assert.notEqual(after, before);
    c.close();
    c2.close();
  });

  it('closes a connection whose TLS handshake after STARTTLS never comes within limits.tlsHandshakeTimeout', async () => {
    const port = relay.relay.addresses()[0]!.port;
    const c = await RawSmtp.connect(port);
    await c.read();
    await c.cmd('EHLO client.test');
    assert.match(await c.cmd('STARTTLS'), /^220 /);
    const t0 = Date.now();
    await c.waitClosed(10_000); // the client sends no ClientHello
    const ms = Date.now() - t0;
    assert.ok(ms >= 900 && ms < 4000, `closed after ${ms} ms`);
  });

  it('leaves a session whose handshake completed alone after limits.tlsHandshakeTimeout', async () => {
    const port = relay.relay.addresses()[0]!.port;
    const c = await RawSmtp.connect(port);
    await c.read();
    await c.cmd('EHLO client.test');
    await c.cmd('STARTTLS');
    await c.startTls();
    await new Promise((r) => setTimeout(r, 1500));
    assert.match(await c.cmd('NOOP'), /^250/);
    c.close();
  });
});

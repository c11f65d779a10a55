import assert from 'node:assert/strict';
import { simpleParser } from 'mailparser';
import { definePlugin, accept, reject, z, type HookName } from '@portcullis/core';
import { CaptureServer, hostedRelay, RawSmtp, sendMail, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';

/** Opens a session up to an accepted RCPT, returns the client. */
async function openTransaction(port: number, rcpt = 'bob@example.com', localAddress = '127.0.0.7'): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port, '127.0.0.1', localAddress);
  assert.match(await c.read(), /^220 /);
  assert.match(await c.cmd('EHLO client.test'), /^250/);
  assert.match(await c.cmd('MAIL FROM:<alice@remote.test>'), /^250/);
  assert.match(await c.cmd(`RCPT TO:<${rcpt}>`), /^250/);
  return c;
}


describe('deny by default', () => {
  let relay: TestRelay;
  after(() => relay?.stop());

  it('rejects every recipient with 550 5.7.1 when no plugin decides, even for a trusted-looking client', async () => {
    relay = await startTestRelay({ config: { plugins: [] } });
    const c = await RawSmtp.connect(relay.port);
    await c.read();
    await c.cmd('EHLO localhost');
    assert.match(await c.cmd('MAIL FROM:<postmaster@localhost>'), /^250/);
    for (const rcpt of ['root@localhost', 'user@example.com', 'postmaster@[127.0.0.1]']) {
      assert.equal(await c.cmd(`RCPT TO:<${rcpt}>`), '550 5.7.1 Unable to relay');
    }
    assert.match(await c.cmd('DATA'), /^503 /);
    c.close();
  });
});

describe('failing plugins fail closed', () => {
  let sink: CaptureServer;
  let relay: TestRelay;
  const acceptAll = definePlugin({ name: 'accept-all', setup: () => ({ rcpt: () => accept() }) });
  const thrower = definePlugin({
    name: 'thrower',
    options: z.object({ hook: z.string() }),
    setup: (o) => ({
      [o.hook]: (_a: unknown, b: { address?: string }) => {
        if (o.hook !== 'rcpt' || b.address === 'boom@example.com') throw new Error('kaboom');
        return undefined;
      },
    }),
  });
  const hanger = definePlugin({
    name: 'hanger',
    setup: () => ({ rcpt: (_t, to) => (to.address === 'hang@example.com' ? new Promise<undefined>(() => undefined) : undefined) }),
  });
  before(async () => {
    sink = await CaptureServer.start();
    relay = await startTestRelay({
      builtins: { 'accept-all': acceptAll, thrower, hanger },
      config: {
        plugins: [
          { use: 'thrower', with: { hook: 'rcpt' } },
          { use: 'hanger', timeout: '300ms' },
          { use: 'accept-all' },
        ],
      },
    });
  });
  after(async () => {
    await relay?.stop();
    await sink?.close();
  });

  it('answers 451 4.3.0 when a plugin throws, and does not fall through to the next plugin', async () => {
    const c = await RawSmtp.connect(relay.port);
    await c.read();
    await c.cmd('EHLO client.test');
    await c.cmd('MAIL FROM:<a@remote.test>');
    assert.equal(await c.cmd('RCPT TO:<boom@example.com>'), '451 4.3.0 Temporary local problem, try again later');
    assert.equal(await c.cmd('RCPT TO:<fine@example.com>'), '250 2.1.5 Recipient OK');
    c.close();
  });

  it('answers 451 4.3.0 when a plugin exceeds its timeout', async () => {
    const c = await RawSmtp.connect(relay.port);
    await c.read();
    await c.cmd('EHLO client.test');
    await c.cmd('MAIL FROM:<a@remote.test>');
    const t0 = Date.now();
    assert.equal(await c.cmd('RCPT TO:<hang@example.com>'), '451 4.3.0 Temporary local problem, try again later');
    const took = Date.now() - t0;
    assert.ok(took >= 250 && took < 3000, `took ${took} ms`);
    c.close();
  });
});

describe('plugin order', () => {
  let relay: TestRelay;
  const calls: string[] = [];
  const recorder = (name: string, enforce?: 'pre' | 'post', decide = false) =>
    definePlugin({
      name,
      enforce,
      setup: () => ({
        rcpt: () => {
          calls.push(name);
          return decide ? reject(550, '5.7.1', `decided by ${name}`) : undefined;
        },
      }),
    });
  after(() => relay?.stop());

  it('runs pre plugins first and post plugins last, config order within each group, first verdict wins', async () => {
    relay = await startTestRelay({
      builtins: { a: recorder('a'), b: recorder('b', 'post', true), c: recorder('c', 'pre'), d: recorder('d', undefined, true), e: recorder('e', 'pre') },
      config: { plugins: [{ use: 'b' }, { use: 'a' }, { use: 'c' }, { use: 'd' }, { use: 'e' }] },
    });
    assert.deepEqual(relay.relay.driver.hookOrder().rcpt, ['c', 'e', 'a', 'd', 'b']);
    const c = await RawSmtp.connect(relay.port);
    await c.read();
    await c.cmd('EHLO client.test');
    await c.cmd('MAIL FROM:<a@remote.test>');
    assert.equal(await c.cmd('RCPT TO:<x@example.com>'), '550 5.7.1 decided by d');
    assert.deepEqual(calls, ['c', 'e', 'a', 'd']);
    c.close();
  });
});

describe('the data path', () => {
  let sink: CaptureServer;
  let relay: TestRelay;
  const stripper = definePlugin({
    name: 'strip-exe',
    setup: () => ({
      data: () => ({
        part: (part) => {
          if (!/\.exe$/i.test(part.filename ?? part.name ?? '')) return undefined;
          let bytes = 0;
          return {
            update: (chunk) => {
              bytes += chunk.length;
            },
            done: () => ({ action: 'replace', notice: `The attachment "${part.filename}" (${bytes} bytes) was removed by policy.` }),
          };
        },
      }),
    }),
  });
  before(async () => {
    const hosted = await hostedRelay({ builtins: { 'relay-policy': relayPolicy, 'strip-exe': stripper }, domain: 'example.com', plugins: [{ use: 'strip-exe' }], config: { limits: { messageSize: '64KB' } } });
    relay = hosted;
    sink = hosted.sink;
  });
  after(async () => {
    await relay?.stop();
    await sink?.close();
  });
  beforeEach(() => {
    sink.messages.length = 0;
  });

  it('replaces an attachment with a notice and the next hop gets valid MIME with every other part unchanged', async () => {
    const payload = Buffer.alloc(3000, 0x4d);
    const r = await sendMail({
      port: relay.port,
      from: 'alice@remote.test',
      to: 'bob@example.com',
      subject: 'invoice',
      text: 'see attached',
      attachments: [
        { filename: 'invoice.exe', content: payload, contentType: 'application/octet-stream' },
        { filename: 'notes.txt', content: 'keep me', contentType: 'text/plain' },
      ],
    });
    assert.equal(r.ok, true, r.response);
    const [msg] = await sink.waitFor(1);
    const parsed = await simpleParser(msg!.raw);
    assert.equal(parsed.subject, 'invoice');
    assert.equal(parsed.text?.trim().split('\n')[0], 'see attached');
    const names = parsed.attachments.map((a) => a.filename);
    assert.deepEqual(names, ['notes.txt']);
    assert.equal(parsed.attachments[0]!.content.toString(), 'keep me');
    assert.match(msg!.raw.toString(), /The attachment "invoice\.exe" \(3000 bytes\) was removed by policy\./);
    assert.doesNotMatch(msg!.raw.toString(), /TU1NTU1N/); // base64 of the payload
  });

  it('rejects bare LF in DATA with 550 5.6.0 and nothing, let alone a smuggled second message, reaches the next hop', async () => {
    const c = await openTransaction(relay.port);
    assert.match(await c.cmd('DATA'), /^354 /);
    c.write('Subject: one\r\n\r\nfirst\n.\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nsecond\r\n.\r\n');
    assert.equal(await c.read(), '550 5.6.0 Message contains bare CR, bare LF or NUL; lines must end with CRLF');
    // The session stays usable and in sync: the smuggled commands were message text, not commands.
    assert.match(await c.cmd('RSET'), /^250/);
    assert.match(await c.cmd('NOOP'), /^250/);
    c.close();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sink.messages.length, 0);
  });

  it('rejects bare CR in DATA too', async () => {
    const c = await openTransaction(relay.port);
    await c.cmd('DATA');
    c.write('Subject: cr\r\n\r\nline\rmore\r\n.\r\n');
    assert.equal(await c.read(), '550 5.6.0 Message contains bare CR, bare LF or NUL; lines must end with CRLF');
    c.close();
  });

  it('rejects a message over the size limit with 552 5.3.4 and queues nothing', async () => {
    const c = await openTransaction(relay.port);
    await c.cmd('DATA');
    const line = 'x'.repeat(998) + '\r\n';
    c.write('Subject: big\r\n\r\n' + line.repeat(80) + '.\r\n');
    assert.equal(await c.read(), '552 5.3.4 Message size exceeds fixed limit');
    c.close();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sink.messages.length, 0);
  });

  it('passes a message through byte for byte apart from the Received header on top', async () => {
    const body = 'From: a@remote.test\r\nTo: bob@example.com\r\nSubject: exact\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n..leading dot\r\nline two  \r\n\r\n';
    const c = await openTransaction(relay.port);
    await c.cmd('DATA');
    c.write(body.replace(/^\.\./m, '...') /* dot-stuffed on the wire */ + '.\r\n');
    assert.match(await c.read(), /^250 2\.0\.0 Ok: queued as /);
    c.close();
    const [msg] = await sink.waitFor(1);
    const raw = msg!.raw.toString();
    const afterReceived = raw.replace(/^Received: [^\r]*\r\n(\t[^\r]*\r\n)*/, '');
    assert.equal(afterReceived, body);
  });
});

describe('delivery: retries and bounces', () => {
  let nexthop: CaptureServer;
  let senderMx: CaptureServer;
  let relay: TestRelay;
  let failNext = 0;
  before(async () => {
    nexthop = await CaptureServer.start({
      host: '127.0.0.1',
      onRcpt: (rcpt) => {
        if (rcpt.startsWith('gone@')) return [550, '5.1.1 No such user here'];
        if (rcpt.startsWith('later@') && failNext > 0) {
          failNext--;
          return [451, '4.2.0 Mailbox busy, try later'];
        }
        return undefined;
      },
    });
    senderMx = await CaptureServer.start({ host: '127.0.0.1' });
    relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy },
      config: {
        delivery: { retrySchedule: ['500ms'] },
        plugins: [{ use: 'relay-policy', with: { domains: { 'example.com': { nexthop: nexthop.address, tls: 'none' }, 'sender.test': { nexthop: senderMx.address, tls: 'none' } } } }],
      },
    });
  });
  after(async () => {
    await relay?.stop();
    await nexthop?.close();
    await senderMx?.close();
  });

  it('retries a recipient that got 4xx and delivers it on a later attempt', async () => {
    failNext = 2;
    const r = await sendMail({ port: relay.port, from: 'alice@sender.test', to: 'later@example.com', subject: 'retry me' });
    assert.equal(r.ok, true, r.response);
    const msgs = await nexthop.waitFor(1, 15_000);
    assert.deepEqual(msgs[0]!.to, ['later@example.com']);
    assert.equal(failNext, 0, 'the next hop was asked three times');
    assert.equal(senderMx.messages.length, 0, 'no bounce for a deferral');
  });

  it('bounces a 5xx recipient with an RFC 3464 report to the sender, and still delivers the other recipient', async () => {
    nexthop.messages.length = 0;
    const r = await sendMail({ port: relay.port, from: 'alice@sender.test', to: ['gone@example.com', 'here@example.com'], subject: 'partly bad', messageId: '<orig-1@sender.test>' });
    assert.equal(r.ok, true, r.response);
    const [delivered] = await nexthop.waitFor(1);
    assert.deepEqual(delivered!.to, ['here@example.com']);
    const [dsn] = await senderMx.waitFor(1);
    assert.equal(dsn!.from, '', 'bounces come from the null sender');
    assert.deepEqual(dsn!.to, ['alice@sender.test']);
    const parsed = await simpleParser(dsn!.raw);
    assert.match(String(parsed.headers.get('content-type') && (parsed.headers.get('content-type') as { value: string }).value), /multipart\/report/);
    const raw = dsn!.raw.toString();
    assert.match(raw, /Content-Type: multipart\/report; report-type=delivery-status/);
    assert.match(raw, /Content-Type: message\/delivery-status\r\n[\s\S]*Reporting-MTA: dns; relay\.test[\s\S]*Final-Recipient: rfc822; gone@example\.com\r\nAction: failed\r\nStatus: 5\.1\.1\r\n[\s\S]*Diagnostic-Code: smtp; 550 5\.1\.1 No such user here/);
    assert.doesNotMatch(raw, /Final-Recipient: rfc822; here@example\.com/);
    assert.match(raw, /Content-Type: text\/rfc822-headers[\s\S]*Message-ID: <orig-1@sender\.test>/);
  });

  it('sends no bounce for a message from the null sender', async () => {
    senderMx.messages.length = 0;
    const r = await sendMail({ port: relay.port, from: '', to: 'gone@example.com', subject: 'from nobody' });
    assert.equal(r.ok, true, r.response);
    await new Promise((res) => setTimeout(res, 1500));
    assert.equal(senderMx.messages.length, 0);
  });
});

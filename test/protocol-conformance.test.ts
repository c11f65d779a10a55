import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { hostedRelay, RawSmtp, startTestRelay, type CaptureServer, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';

/**
 * Issue 9 item 7, over real SMTP: improper pipelining after DATA, unadvertised ESMTP parameters,
 * the domainless <postmaster>, and an enhanced code in our wording on every reply, including the
 * ones smtp-server writes itself.
 */
const UNTRUSTED = '127.0.0.9';
const ENHANCED = /^\d{3}[ -][245]\.\d{1,3}\.\d{1,3} /;

describe('protocol conformance', function () {
  this.timeout(30_000);
  let sink: CaptureServer;
  let relay: HostedRelay;

  before(async () => {
    relay = await hostedRelay({ builtins: { 'relay-policy': relayPolicy }, domain: ['example.com', 'example.net'] });
    sink = relay.sink;
  });
  after(() => relay?.close());

  async function open(): Promise<RawSmtp> {
    const c = await RawSmtp.connect(relay.port, '127.0.0.1', UNTRUSTED);
    assert.match(await c.read(), /^220 relay\.test ESMTP/);
    return c;
  }

  describe('improper pipelining after DATA', () => {
    it('refuses content sent in the same packet as DATA with 554 5.5.0 and closes; nothing is queued', async () => {
      const before = sink.messages.length;
      const c = await open();
      await c.cmd('EHLO client.test');
      c.write('MAIL FROM:<a@client.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nSubject: early\r\n\r\nbody\r\n.\r\nQUIT\r\n');
      assert.equal(await c.read(), '250 2.1.0 Sender OK');
      assert.equal(await c.read(), '250 2.1.5 Recipient OK');
      assert.equal(await c.read(), '554 5.5.0 Improper use of SMTP command pipelining: message content sent before the 354 reply');
      await c.waitClosed();
      await sleep(300);
      assert.equal(sink.messages.length, before);
    });

    it('refuses content written right after DATA without waiting for the 354', async () => {
      const c = await open();
      await c.cmd('EHLO client.test');
      c.write('MAIL FROM:<a@client.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n');
      c.write('Subject: early\r\n\r\nbody\r\n.\r\n');
      assert.equal(await c.read(), '250 2.1.0 Sender OK');
      assert.equal(await c.read(), '250 2.1.5 Recipient OK');
      assert.equal(await c.read(), '554 5.5.0 Improper use of SMTP command pipelining: message content sent before the 354 reply');
      await c.waitClosed();
    });

    it('accepts proper pipelining: MAIL, RCPT and DATA in one packet, the content after the 354', async () => {
      const before = sink.messages.length;
      const c = await open();
      assert.match(await c.cmd('EHLO client.test'), /^250-PIPELINING$/m);
      c.write('MAIL FROM:<a@client.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n');
      assert.equal(await c.read(), '250 2.1.0 Sender OK');
      assert.equal(await c.read(), '250 2.1.5 Recipient OK');
      assert.equal(await c.read(), '354 End data with <CR><LF>.<CR><LF>');
      assert.match(await c.cmd('Subject: fine\r\n\r\nbody\r\n.'), /^250 2\.0\.0 Ok: queued as \w+$/);
      assert.equal(await c.cmd('QUIT'), '221 2.0.0 Bye');
      await sink.waitFor(before + 1);
    });
  });

  describe('unadvertised ESMTP parameters', () => {
    it('refuses SMTPUTF8, REQUIRETLS and DSN parameters with 555 5.5.4, and accepts SIZE and BODY', async () => {
      const c = await open();
      const ehlo = await c.cmd('EHLO client.test');
      assert.doesNotMatch(ehlo, /SMTPUTF8|REQUIRETLS|DSN/);
      assert.match(ehlo, /^250-8BITMIME$/m);
      assert.equal(await c.cmd('MAIL FROM:<a@client.test> SMTPUTF8'), '555 5.5.4 Unsupported parameter SMTPUTF8 (not advertised)');
      assert.equal(await c.cmd('MAIL FROM:<a@client.test> REQUIRETLS'), '555 5.5.4 Unsupported parameter REQUIRETLS (not advertised)');
      assert.equal(await c.cmd('MAIL FROM:<a@client.test> RET=HDRS ENVID=x1'), '555 5.5.4 Unsupported parameter RET (not advertised)');
      assert.equal(await c.cmd('MAIL FROM:<a@client.test> X-MADE-UP=1'), '555 5.5.4 Unsupported parameter X-MADE-UP (not advertised)');
      assert.equal(await c.cmd('MAIL FROM:<a@client.test> AUTH=<>'), '555 5.5.4 Unsupported parameter AUTH (not advertised)');
      assert.equal(await c.cmd('MAIL FROM:<a@client.test> SIZE=1000 BODY=8BITMIME'), '250 2.1.0 Sender OK');
      assert.equal(await c.cmd('RCPT TO:<bob@example.com> NOTIFY=SUCCESS'), '555 5.5.4 Unsupported parameter NOTIFY (not advertised)');
      assert.equal(await c.cmd('RCPT TO:<bob@example.com> ORCPT=rfc822;bob@example.com'), '555 5.5.4 Unsupported parameter ORCPT (not advertised)');
      assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), '250 2.1.5 Recipient OK');
      c.close();
    });
  });

  describe('<postmaster> without a domain', () => {
    it('accepts it in any case from an untrusted client and delivers to postmaster@ the first hosted domain', async () => {
      const before = sink.messages.length;
      const c = await open();
      await c.cmd('EHLO client.test');
      assert.equal(await c.cmd('MAIL FROM:<a@client.test>'), '250 2.1.0 Sender OK');
      assert.equal(await c.cmd('RCPT TO:<postmaster>'), '250 2.1.5 Recipient OK');
      assert.equal(await c.cmd('RCPT TO:<PostMaster>'), '250 2.1.5 Recipient OK');
      assert.equal(await c.cmd('RCPT TO:<someone@elsewhere.test>'), '550 5.7.1 Unable to relay');
      assert.equal(await c.cmd('DATA'), '354 End data with <CR><LF>.<CR><LF>');
      assert.match(await c.cmd('Subject: abuse report\r\n\r\nhello\r\n.'), /^250 2\.0\.0 Ok: queued/);
      c.close();
      const [m] = (await sink.waitFor(before + 1)).slice(before);
      assert.deepEqual(m!.to, ['postmaster@example.com']);
    });

    it('routes it to the configured postmaster address instead when one is set', async () => {
      const own = await startTestRelay({
        builtins: { 'relay-policy': relayPolicy },
        config: { postmaster: 'hostmaster@example.net', plugins: [{ use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' }, 'example.net': { nexthop: sink.address, tls: 'none' } } } }] },
      });
      try {
        const before = sink.messages.length;
        const c = await RawSmtp.connect(own.port, '127.0.0.1', UNTRUSTED);
        await c.read();
        await c.cmd('HELO client.test');
        await c.cmd('MAIL FROM:<>');
        assert.equal(await c.cmd('RCPT TO:<postmaster>'), '250 2.1.5 Recipient OK');
        await c.cmd('DATA');
        assert.match(await c.cmd('Subject: x\r\n\r\nx\r\n.'), /^250 2\.0\.0 Ok: queued/);
        c.close();
        const [m] = (await sink.waitFor(before + 1)).slice(before);
        assert.deepEqual(m!.to, ['hostmaster@example.net']);
      } finally {
        await own.stop();
      }
    });
  });

  describe("enhanced codes on smtp-server's own replies, in our wording", () => {
    it('answers syntax and sequence errors with one enhanced code each', async () => {
      const c = await open();
      assert.equal(await c.cmd('MAIL FROM:<a@client.test>'), '503 5.5.1 Send HELO or EHLO first');
      assert.equal(await c.cmd('EHLO'), '501 5.5.4 Syntax: EHLO hostname');
      const ehlo = await c.cmd('EHLO client.test');
      assert.match(ehlo, /^250-ENHANCEDSTATUSCODES$/m);
      assert.equal(await c.cmd('FROBNICATE'), '500 5.5.2 Command not recognized');
      assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), '503 5.5.1 Need MAIL command first');
      assert.equal(await c.cmd('DATA'), '503 5.5.1 Need RCPT command first');
      assert.equal(await c.cmd('NOOP'), '250 2.0.0 OK');
      assert.equal(await c.cmd('MAIL FROM:<a@@client.test>'), '501 5.1.7 Bad sender address syntax');
      assert.equal(await c.cmd('MAIL FROM:<a@client.test>'), '250 2.1.0 Sender OK');
      assert.equal(await c.cmd('MAIL FROM:<a@client.test>'), '503 5.5.1 Sender already given (nested MAIL command)');
      assert.equal(await c.cmd('RCPT TO:<a@b@example.com>'), '501 5.1.3 Bad recipient address syntax');
      assert.equal(await c.cmd('RCPT TO:<nobody@elsewhere.test>'), '550 5.7.1 Unable to relay');
      assert.equal(await c.cmd('XCLIENT ADDR=127.0.0.2'), '550 5.7.0 Command not allowed from your address');
      assert.equal(await c.cmd('STARTTLS'), '500 5.5.2 Command not recognized');
      assert.equal(await c.cmd('VRFY bob'), '252 2.5.2 Cannot verify the address; send the message and delivery will be attempted');
      assert.equal(await c.cmd('RSET'), '250 2.0.0 OK');
      assert.equal(await c.cmd('QUIT'), '221 2.0.0 Bye');
      await c.waitClosed();
    });

    it('every reply of a long session carries exactly one enhanced code (greeting, EHLO and 354 excepted)', async () => {
      const c = await open();
      const lines: string[] = [];
      const commands = ['HELO client.test', 'EHLO client.test', 'HELP', 'NOOP', 'MAIL FROM:<a@client.test> BODY=7BIT', 'RCPT TO:<bob@example.com>', 'RCPT TO:<postmaster>', 'RCPT TO:<x@elsewhere.test>', 'RCPT TO:<bad address>', 'RSET', 'MAIL FROM:<>', 'RCPT TO:<bob@example.net>', 'DATA', 'Subject: s\r\n\r\nb\r\n.', 'AUTH PLAIN AGFAYg==', 'WIZ', 'SHELL', 'XFORWARD ADDR=1.2.3.4', 'QUIT'];
      for (const cmd of commands) lines.push(`${cmd.split('\r\n')[0]} -> ${await c.cmd(cmd)}`);
      for (const l of lines) {
        const reply = l.slice(l.indexOf(' -> ') + 4);
        if (/^(HELO|EHLO|DATA) /.test(l)) continue;
        assert.match(reply, ENHANCED, l);
        assert.doesNotMatch(reply, /^\d{3}[ -][245]\.\d+\.\d+ [245]\.\d+\.\d+/, `doubled: ${l}`);
        assert.doesNotMatch(reply, /Error:/, `library wording: ${l}`);
      }
    });

    it('closes an idle client with 421 4.4.2 instead of "421 Timeout - closing connection"', async () => {
      const idle = await startTestRelay({ config: { limits: { idleTimeout: '300ms' } } });
      try {
        const c = await RawSmtp.connect(idle.port);
        await c.read();
        assert.equal(await c.read(5000), '421 4.4.2 Timeout waiting for a command, closing connection');
        await c.waitClosed();
      } finally {
        await idle.stop();
      }
    });

    it('refuses a client over the connection limit with 421 4.3.2 and our hostname, not the library text', async () => {
      const full = await startTestRelay({ config: { limits: { connections: 1 } } });
      try {
        const first = await RawSmtp.connect(full.port);
        await first.read();
        const second = await RawSmtp.connect(full.port);
        assert.equal(await second.read(), '421 4.3.2 relay.test Too many connected clients, try again later');
        await second.waitClosed();
        first.close();
      } finally {
        await full.stop();
      }
    });
  });
});

import assert from 'node:assert/strict';
import { hostedRelay, RawSmtp, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import type { RelayConfigInput } from '@portcullis/core';

/** The core's per-session command discipline (limits.commandTimeout, junkCommands, tarpit, ...). */
describe('per-session command limits', () => {
  let relay: TestRelay | undefined;
  let c: RawSmtp | undefined;
  afterEach(async () => {
    c?.close();
    await relay?.stop();
    relay = c = undefined;
  });
  async function session(limits: NonNullable<RelayConfigInput['limits']>): Promise<RawSmtp> {
    relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy },
      config: { limits, plugins: [{ use: 'relay-policy', with: { domains: { 'example.test': { nexthop: '127.0.0.1:9', tls: 'none' } } } }] },
    });
    c = await RawSmtp.connect(relay.port, '127.0.0.1', '127.0.0.9');
    assert.match(await c.read(), /^220 /);
    assert.match(await c.cmd('EHLO client.test'), /^250/);
    return c;
  }
  /** Sends `line` and returns the reply with how long it took. */
  async function timed(s: RawSmtp, line: string): Promise<[string, number]> {
    const t0 = Date.now();
    const r = await s.cmd(line);
    return [r, Date.now() - t0];
  }

  it('closes a connection whose command line trickles in one byte at a time with 421 4.4.2', async () => {
    const s = await session({ commandTimeout: '1s' });
    const t0 = Date.now();
    for (const ch of 'NOOP') {
      if (s.isClosed) break;
      s.write(ch);
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.equal(await s.read(), '421 4.4.2 Command timeout, closing connection');
    await s.waitClosed();
    const took = Date.now() - t0;
    assert.ok(took >= 1000 && took < 2500, `closed after ${took} ms`);
  });

  it('does not count the idle time between complete commands against the command time limit', async () => {
    const s = await session({ commandTimeout: '1s' });
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 700));
      assert.match(await s.cmd('NOOP'), /^250/);
    }
  });

  it('answers junk commands up to the limit, then counts each as an error until 421 4.7.0 (one pipelined burst)', async () => {
    const s = await session({ junkCommands: 100, tarpitAfter: 10, tarpitDelay: '5ms', tarpitMax: '20ms', maxErrors: 20 });
    s.write('NOOP\r\n'.repeat(1000));
    const replies: string[] = [];
    for (;;) {
      try {
        replies.push(await s.read(10_000));
      } catch {
        break;
      }
    }
    // 100 free, then 19 more counted as errors 1..19; the 120th reaches 20 errors.
    assert.equal(replies.filter((r) => r.startsWith('250')).length, 119);
    assert.equal(replies.at(-1), '421 4.7.0 Too many errors, closing connection');
    assert.equal(replies.length, 120);
    assert.equal(s.isClosed, true);
  });

  it('slows a client that keeps sending bad commands (a growing tarpit), then disconnects it', async () => {
    const s = await session({ tarpitAfter: 2, tarpitDelay: '250ms', tarpitMax: '2s', maxErrors: 6 });
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const [r, ms] = await timed(s, 'RCPT TO:<a@example.test>');
      assert.match(r, /^503 /);
      times.push(ms);
    }
    // Two errors are free; with 3 errors behind it a command waits 250 ms, with 4 500 ms, and so on.
    assert.ok(times[0]! < 150 && times[1]! < 150 && times[2]! < 150, `first replies: ${times}`);
    assert.ok(times[3]! >= 240 && times[3]! < 600, `4th: ${times}`);
    assert.ok(times[4]! >= 490 && times[4]! < 900, `5th: ${times}`);
    // The 6th error ends the session, after its own reply.
    assert.match(await s.cmd('RCPT TO:<a@example.test>'), /^503 /);
    assert.equal(await s.read(), '421 4.7.0 Too many errors, closing connection');
    await s.waitClosed();
  });

  it('answers QUIT at once even in a tarpitted session', async () => {
    const s = await session({ tarpitAfter: 0, tarpitDelay: '1s', maxErrors: 10 });
    assert.match(await s.cmd('RCPT TO:<a@example.test>'), /^503 /);
    const [slow, slowMs] = await timed(s, 'NOOP');
    assert.match(slow, /^250 /);
    assert.ok(slowMs >= 900, `a tarpitted NOOP took ${slowMs} ms`);
    const [bye, byeMs] = await timed(s, 'QUIT');
    assert.match(bye, /^221 /);
    // "At once" against the 1 s tarpit, with room for a loaded machine.
    assert.ok(byeMs < 700, `QUIT took ${byeMs} ms`);
  });

  it('closes the session past the unknown-command limit with 421 4.7.0', async () => {
    const s = await session({ unknownCommands: 3 });
    for (let i = 0; i < 3; i++) assert.match(await s.cmd('FROB'), /^500 /);
    assert.equal(await s.cmd('FROB'), '421 4.7.0 Too many unrecognized commands, closing connection');
    await s.waitClosed();
  });

  it('closes the session past the per-session transaction limit with 421 4.7.0', async () => {
    const s = await session({ transactionsPerSession: 3, junkCommands: 0 });
    for (let i = 0; i < 3; i++) {
      assert.match(await s.cmd('MAIL FROM:<a@outside.test>'), /^250/);
      assert.match(await s.cmd('RSET'), /^250/);
    }
    assert.equal(await s.cmd('MAIL FROM:<a@outside.test>'), '421 4.7.0 Too many transactions in one session, closing connection');
    await s.waitClosed();
  });

  /** Reads `n` replies (or fewer, if the connection closes first). */
  async function replies(s: RawSmtp, n: number): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      try {
        out.push(await s.read(10_000));
      } catch {
        break;
      }
    }
    return out;
  }

  it('answers 150 pipelined recipients (limit 100) with 100 × 250 and 50 × 452 4.5.3, and queues the message for the 100', async () => {
    const hosted = await hostedRelay({ builtins: { 'relay-policy': relayPolicy }, domain: 'example.test', config: { limits: { recipients: 100 } } });
    const sink = hosted.sink;
    try {
      relay = hosted;
      c = await RawSmtp.connect(relay.port, '127.0.0.1', '127.0.0.9');
      await c.read();
      await c.cmd('EHLO client.test');
      const t0 = Date.now();
      c.write(['MAIL FROM:<a@outside.test>', ...Array.from({ length: 150 }, (_, i) => `RCPT TO:<u${i}@example.test>`), 'DATA'].map((l) => l + '\r\n').join(''));
      const got = await replies(c, 152);
      assert.match(got[0]!, /^250 /);
      const rcpts = got.slice(1, 151);
      assert.equal(rcpts.filter((r) => r.startsWith('250 ')).length, 100);
      assert.deepEqual(rcpts.slice(100), Array(50).fill('452 4.5.3 Too many recipients'));
      assert.match(got[151]!, /^354 /);
      assert.match(await c.cmd('Subject: many\r\n\r\nhello\r\n.'), /^250 2\.0\.0 Ok: queued as /);
      // No tarpit: the whole exchange is quick (the default tarpit would take tens of seconds).
      assert.ok(Date.now() - t0 < 5000, `${Date.now() - t0} ms`);
      await sink.waitFor(1, 10_000);
      assert.equal(sink.messages[0]!.to.length, 100);
      assert.deepEqual(sink.messages[0]!.to.slice(0, 2), ['u0@example.test', 'u1@example.test']);
    } finally {
      await sink.close();
    }
  });

  it('counts recipient overshoot as errors past limits.recipientOvershoot, then closes with 421 4.7.0', async () => {
    const s = await session({ recipients: 3, recipientOvershoot: 5, maxErrors: 4, tarpitDelay: 0 });
    s.write(['MAIL FROM:<a@outside.test>', ...Array.from({ length: 20 }, (_, i) => `RCPT TO:<u${i}@example.test>`)].map((l) => l + '\r\n').join(''));
    const got = await replies(s, 30);
    // 3 accepted, 5 free 452s, then 4 counted ones: the 4th error closes the session.
    assert.equal(got.filter((r) => r.startsWith('250 ')).length, 1 + 3);
    assert.equal(got.filter((r) => r === '452 4.5.3 Too many recipients').length, 5 + 4);
    assert.equal(got.at(-1), '421 4.7.0 Too many errors, closing connection');
  });

  it('does not count a tarpit pause against commandTimeout: a tarpitted client is answered, not closed as too slow', async () => {
    const s = await session({ commandTimeout: '1s', tarpitAfter: 0, tarpitDelay: '2s', tarpitMax: '2s', maxErrors: 10 });
    assert.match(await s.cmd('RCPT TO:<a@example.test>'), /^503 /); // one error: every next command waits 2 s
    s.write('NOOP\r\nNO'); // a complete command (held 2 s by the tarpit) and the start of the next
    assert.match(await s.read(5000), /^250 /);
    s.write('OP\r\n');
    assert.match(await s.read(5000), /^250 /);
    assert.equal(s.isClosed, false);
  });

  it('answers an over-long command line with 500 5.5.6 Line too long and closes the connection', async () => {
    const s = await session({});
    s.write(`NOOP ${'x'.repeat(20_000)}\r\n`);
    assert.equal(await s.read(), '500 5.5.6 Line too long');
    await s.waitClosed();
  });

  it('refuses an EHLO or HELO name with 8-bit bytes with 501 5.5.2, and accepts an ASCII one after it', async () => {
    const s = await session({});
    s.write(Buffer.concat([Buffer.from('EHLO '), Buffer.from('bücher.test', 'utf8'), Buffer.from('\r\n')]));
    assert.equal(await s.read(), '501 5.5.2 Syntax: EHLO hostname (8-bit characters are not allowed)');
    s.write(Buffer.concat([Buffer.from('HELO '), Buffer.from([0xe9, 0x2e, 0x74]), Buffer.from('\r\n')]));
    assert.equal(await s.read(), '501 5.5.2 Syntax: EHLO hostname (8-bit characters are not allowed)');
    assert.match(await s.cmd('EHLO xn--bcher-kva.test'), /^250/);
    assert.match(await s.cmd('MAIL FROM:<a@outside.test>'), /^250 /);
  });
});

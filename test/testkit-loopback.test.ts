import assert from 'node:assert/strict';
import { CaptureServer, codeOf, freePort, hostedRelay, messageIds, RawSmtp, sendLoad, sendMail, sendNumbered, sinkRelayConfig, startTestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';

describe('testkit loopback parts', () => {
  let sink: CaptureServer;
  before(async () => {
    sink = await CaptureServer.start({
      host: '127.0.0.1',
      onRcpt: (rcpt) => (rcpt.startsWith('busy@') ? [451, '4.3.0 Try later'] : rcpt.startsWith('gone@') ? [550, '5.1.1 No such user'] : undefined),
    });
  });
  after(() => sink.close());

  it('CaptureServer stores exactly the bytes of accepted messages and refuses as told', async () => {
    const ok = await sendMail({ port: sink.port, from: 'a@x.test', to: 'b@y.test', raw: 'Subject: raw\r\n\r\nexact body\r\n' });
    assert.equal(ok.ok, true);
    const [m] = await sink.waitFor(1);
    assert.equal(m!.raw.toString(), 'Subject: raw\r\n\r\nexact body\r\n');
    assert.deepEqual([m!.from, m!.to], ['a@x.test', ['b@y.test']]);
    const busy = await sendMail({ port: sink.port, from: 'a@x.test', to: 'busy@y.test' });
    assert.deepEqual([busy.ok, busy.code], [false, 451]);
    assert.equal(sink.messages.length, 1);
  });

  it('RawSmtp reads multi-line replies whole and binds the source address it is given', async () => {
    const c = await RawSmtp.connect(sink.port, '127.0.0.1', '127.0.0.44');
    assert.equal(codeOf(await c.read()), 220);
    const ehlo = await c.cmd('EHLO me.test');
    assert.match(ehlo, /^250-.*\n250 /s);
    assert.match(await c.cmd('MAIL FROM:<a@x.test>'), /^250/);
    assert.match(await c.cmd('RCPT TO:<gone@y.test>'), /^550 5\.1\.1 No such user/);
    assert.match(await c.cmd('RCPT TO:<ok@y.test>'), /^250/);
    await c.cmd('DATA');
    c.write('Subject: s\r\n\r\nb\r\n.\r\n');
    assert.equal(codeOf(await c.read()), 250);
    assert.equal(sink.messages.at(-1)!.remoteAddress, '127.0.0.44');
    c.close();
  });

  it('waitFor rejects with a clear message when messages do not come', async () => {
    await assert.rejects(sink.waitFor(99, 200), /capture server got \d+ of 99 messages within 200 ms/);
  });
});

describe('testkit hostedRelay', function () {
  this.timeout(30_000);

  it('hosts each given domain with the capture next hop, refuses the rest, and hands the message on byte for byte', async () => {
    const t = await hostedRelay({ builtins: { 'relay-policy': relayPolicy }, domain: ['a.test', 'b.test'], policy: { trustedNetworks: ['127.0.0.2/32'] } });
    try {
      assert.equal(t.domain, 'a.test');
      const raw = 'From: x@remote.test\r\nSubject: hosted\r\n\r\nbody\r\n';
      const r = await t.send({ to: ['u@a.test', 'v@b.test'], raw });
      assert.equal(r.code, 250, r.response);
      const [msg] = await t.waitFor(1);
      assert.deepEqual(msg!.to, ['u@a.test', 'v@b.test']);
      assert.ok(msg!.raw.toString('latin1').endsWith(raw), msg!.raw.toString('latin1'));
      assert.equal(t.captured, t.sink.messages);
      assert.deepEqual((await t.rcptReplies(['w@a.test', 'x@elsewhere.test'], { localAddress: '127.0.0.5' })).map((x) => x.reply.slice(0, 3)), ['250', '550']);
      assert.match((await t.rcptReplies(['x@elsewhere.test'], { localAddress: '127.0.0.2' }))[0]!.reply, /^250 /, 'relay-policy options given in policy apply');
      const sent = await t.rawSend('Subject: raw\r\n\r\n.leading dot\r\n', { rcpt: 'y@b.test' });
      sent.client.close();
      assert.match(sent.reply, /^250 2\.0\.0 Ok: queued as /);
      const [, second] = await t.waitFor(2);
      assert.ok(second!.raw.toString('latin1').endsWith('\r\n\r\n.leading dot\r\n'), 'dot-stuffed on the way in, unstuffed at the next hop');
      const c = await t.connect('127.0.0.6');
      assert.equal(codeOf(await c.read()), 220);
      c.close();
    } finally {
      await t.close();
    }
    // Both are closed: nothing listens on either port any more.
    await assert.rejects(RawSmtp.connect(t.port));
    await assert.rejects(RawSmtp.connect(t.sink.port));
  });

  it('says what is missing when relay-policy is not among the builtins, and closes the next hop when the relay cannot start', async () => {
    await assert.rejects(hostedRelay({ builtins: {} }), /builtins must hold 'relay-policy'/);
    const sinkPort = await freePort();
    await assert.rejects(hostedRelay({ builtins: { 'relay-policy': relayPolicy }, capture: { port: sinkPort }, config: { limits: { recipients: -1 } } as never }), /limits\.recipients/);
    // The next hop it had started on that port is closed again: nothing listens there.
    await assert.rejects(RawSmtp.connect(sinkPort));
  });
});

describe('testkit numbered messages (sendNumbered, sendLoad, messageIds, sinkRelayConfig)', function () {
  this.timeout(30_000);

  it('tells acked from refused from lost, sends a bounded load counting each 250, and finds each id at the next hop', async () => {
    const sink = await CaptureServer.start();
    // The config the process tests write, run in this process (startTestRelay parses the same keys).
    const { spool: _spool, listen: _listen, ...config } = sinkRelayConfig({ port: 0, spoolDir: 'unused', nexthop: sink.address, connectionsPerIp: 7 }, { hostname: 'kit.test' });
    const relay = await startTestRelay({ builtins: { 'relay-policy': relayPolicy }, config });
    try {
      assert.equal(relay.relay.config.limits.connectionsPerIp, 7);
      assert.equal(relay.relay.config.hostname, 'kit.test');
      assert.equal(await sendNumbered(relay.port, 'one@client.test'), 'acked');
      assert.equal(await sendNumbered(relay.port, 'two@client.test'), 'acked');
      await sink.waitFor(2);
      assert.deepEqual(messageIds(sink), ['one@client.test', 'two@client.test']);
      assert.match(sink.messages[0]!.raw.toString(), /\r\n\r\n(payload line\r\n){40}$/);
      assert.equal(await sendNumbered(await freePort(), 'nobody@client.test'), 'lost');
      const silent = await CaptureServer.start({ onRcpt: () => [550, '5.1.1 No'] });
      try {
        assert.equal(await sendNumbered(silent.port, 'refused@client.test'), 'refused');
      } finally {
        await silent.close();
      }
      const acks: number[] = [];
      const { acked, attempts, failures } = await sendLoad(relay.port, { prefix: 'kit', total: 6, concurrency: 2, lines: 3, onAck: (n) => void acks.push(n) });
      assert.deepEqual([...acked].sort(), ['kit-0', 'kit-1', 'kit-2', 'kit-3', 'kit-4', 'kit-5'].map((i) => `${i}@client.test`));
      assert.deepEqual(acks, [1, 2, 3, 4, 5, 6]);
      assert.equal(failures, 0);
      assert.equal(attempts, 6);
    } finally {
      await relay.stop();
      await sink.close();
    }
  });
});

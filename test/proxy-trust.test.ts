import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger, definePlugin } from '@portcullis/core';
import { CaptureServer, hostedRelay, RawSmtp, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';

/**
 * Issue 9 item 6: XCLIENT, XFORWARD and PROXY work from a listed peer and are refused from any
 * other. The relay trusts 127.0.0.50 only; 127.0.0.2 may send XCLIENT, 127.0.0.3 XFORWARD, and
 * 127.0.0.4 must open with a PROXY v1 header (each listed as a network). 127.0.0.9 is nobody.
 * Allowed paths are driven with swaks (XCLIENT, PROXY) and a raw client (XFORWARD).
 */
const XCLIENT_PEER = '127.0.0.2';
const XFORWARD_PEER = '127.0.0.3';
const PROXY_PEER = '127.0.0.4';
const TRUSTED_CLIENT = '127.0.0.50';
const NOBODY = '127.0.0.9';

function swaks(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('swaks', ['--timeout', '10', ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as NodeJS.ErrnoException & { code?: number }).code as unknown as number) ?? 1 : 0, out: stdout + stderr });
    });
  });
}

describe('proxy trust (XCLIENT, XFORWARD, PROXY) by listed networks', function () {
  this.timeout(60_000);
  let internal: CaptureServer;
  let internet: CaptureServer;
  let relay: TestRelay;
  const logLines: Array<Record<string, unknown>> = [];
  const transactions = () => logLines.filter((l) => l['msg'] === 'transaction');

  before(async () => {
    internet = await CaptureServer.start({ host: '127.0.0.1' });
    const toInternet = definePlugin({ name: 'to-internet', setup: () => ({ route: () => ({ hosts: [{ host: internet.host, port: internet.port }], tls: 'none' as const }) }) });
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) logLines.push(JSON.parse(line) as Record<string, unknown>);
        cb();
      },
    });
    const hosted = await hostedRelay({
      logger: createLogger('info', sink),
      builtins: { 'relay-policy': relayPolicy, 'to-internet': toInternet },
      domain: 'hosted.test',
      policy: { trustedNetworks: [`${TRUSTED_CLIENT}/32`] },
      plugins: [{ use: 'to-internet' }],
      config: { listen: [{ host: '127.0.0.1', port: 0, greetingDelay: 0, xclient: [`${XCLIENT_PEER}/32`], xforward: [`${XFORWARD_PEER}/32`], proxyProtocol: ['127.0.0.4/31'] }] },
    });
    relay = hosted;
    internal = hosted.sink;
  });
  after(async () => {
    await relay?.stop();
    await internal?.close();
    await internet?.close();
  });

  describe('XCLIENT', () => {
    it('from the listed peer, replaces the client address and with it the relay decision (swaks --xclient-addr)', async () => {
      const before = internet.messages.length;
      // Without XCLIENT the proxy itself is untrusted: relaying is refused.
      const plain = await swaks(['--server', `127.0.0.1:${relay.port}`, '--local-interface', XCLIENT_PEER, '--from', 'a@hosted.test', '--to', 'friend@elsewhere.test']);
      assert.match(plain.out, /^<\*\* 550 5\.7\.1 Unable to relay$/m, plain.out);
      const r = await swaks(['--server', `127.0.0.1:${relay.port}`, '--local-interface', XCLIENT_PEER, '--xclient-addr', TRUSTED_CLIENT, '--xclient-name', '[UNAVAILABLE]', '--from', 'a@hosted.test', '--to', 'friend@elsewhere.test', '--header', 'Subject: via xclient']);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /^<- {2}250[ -]XCLIENT NAME ADDR PORT PROTO HELO LOGIN$/m);
      assert.match(r.out, /^<- {2}220 relay\.test ESMTP/m); // the fresh greeting after XCLIENT
      assert.match(r.out, /^<- {2}250 2\.1\.5 Recipient OK$/m);
      assert.match(r.out, /^<- {2}250 2\.0\.0 Ok: queued as \w+$/m);
      const [m] = (await internet.waitFor(before + 1)).slice(before);
      assert.deepEqual(m!.to, ['friend@elsewhere.test']);
      assert.match(m!.raw.toString('latin1'), new RegExp(`^Received: from [^\\r]* \\(\\[${TRUSTED_CLIENT.replace(/\./g, '\\.')}\\]\\) \\(via \\[${XCLIENT_PEER.replace(/\./g, '\\.')}\\] XCLIENT\\)\\r\\n`));
      const t = transactions().find((l) => (l['rcpts'] as string[]).includes('friend@elsewhere.test') && l['verdict'] === 'accepted');
      assert.ok(t, JSON.stringify(transactions()));
      assert.equal(t['client'], TRUSTED_CLIENT);
      assert.equal(t['peer'], XCLIENT_PEER);
      assert.equal(t['proxied'], 'xclient');
    });

    it('from any other peer, is neither offered nor obeyed: 550 5.7.0, and the client stays untrusted', async () => {
      for (const peer of [NOBODY, XFORWARD_PEER, '127.0.0.6']) {
        const c = await RawSmtp.connect(relay.port, '127.0.0.1', peer);
        await c.read();
        assert.doesNotMatch(await c.cmd('EHLO proxy.test'), /XCLIENT/);
        assert.equal(await c.cmd(`XCLIENT ADDR=${TRUSTED_CLIENT}`), '550 5.7.0 Command not allowed from your address');
        await c.cmd('MAIL FROM:<a@hosted.test>');
        assert.equal(await c.cmd('RCPT TO:<friend@elsewhere.test>'), '550 5.7.1 Unable to relay');
        c.close();
      }
    });
  });

  describe('XFORWARD', () => {
    it('from the listed peer, records the forwarded client (log and Received) but grants it no trust', async () => {
      const before = internal.messages.length;
      const c = await RawSmtp.connect(relay.port, '127.0.0.1', XFORWARD_PEER);
      await c.read();
      assert.match(await c.cmd('EHLO filter.test'), /^250[ -]XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE$/m);
      assert.equal(await c.cmd(`XFORWARD ADDR=${TRUSTED_CLIENT} NAME=client.example HELO=client.example`), '250 2.0.0 OK');
      assert.equal(await c.cmd('MAIL FROM:<a@client.example>'), '250 2.1.0 Sender OK');
      // The forwarded address is a trusted one, and still: XFORWARD is for the record only.
      assert.equal(await c.cmd('RCPT TO:<friend@elsewhere.test>'), '550 5.7.1 Unable to relay');
      assert.equal(await c.cmd('RCPT TO:<bob@hosted.test>'), '250 2.1.5 Recipient OK');
      await c.cmd('DATA');
      assert.match(await c.cmd('Subject: forwarded\r\n\r\nhi\r\n.'), /^250 2\.0\.0 Ok: queued/);
      c.close();
      const [m] = (await internal.waitFor(before + 1)).slice(before);
      assert.match(m!.raw.toString('latin1'), new RegExp(`^Received: from client\\.example \\(\\[${XFORWARD_PEER.replace(/\./g, '\\.')}\\]\\) \\(XFORWARD from \\[${TRUSTED_CLIENT.replace(/\./g, '\\.')}\\] by \\[${XFORWARD_PEER.replace(/\./g, '\\.')}\\]\\)\\r\\n`));
      await sleep(50);
      const t = transactions().find((l) => (l['rcpts'] as string[]).includes('bob@hosted.test') && (l['forwarded'] as { addr?: string } | undefined)?.addr === TRUSTED_CLIENT);
      assert.ok(t, JSON.stringify(transactions()));
      assert.equal(t['client'], XFORWARD_PEER);
      assert.equal(t['peer'], XFORWARD_PEER);
      assert.deepEqual(t['forwarded'], { addr: TRUSTED_CLIENT, name: 'client.example', helo: 'client.example' });
      assert.deepEqual(t['rejectedRcpts'], ['friend@elsewhere.test']);
    });

    it('from any other peer, is refused with 550 5.7.0', async () => {
      const c = await RawSmtp.connect(relay.port, '127.0.0.1', NOBODY);
      await c.read();
      assert.doesNotMatch(await c.cmd('EHLO filter.test'), /XFORWARD/);
      assert.equal(await c.cmd(`XFORWARD ADDR=${TRUSTED_CLIENT}`), '550 5.7.0 Command not allowed from your address');
      c.close();
    });
  });

  describe('PROXY protocol v1', () => {
    it('from a listed peer, takes the header source as the client (swaks --proxy-version 1)', async () => {
      const before = internet.messages.length;
      const r = await swaks([
        '--server', `127.0.0.1:${relay.port}`, '--local-interface', PROXY_PEER,
        '--proxy-version', '1', '--proxy-family', 'TCP4', '--proxy-source', TRUSTED_CLIENT, '--proxy-source-port', '40000', '--proxy-dest', '127.0.0.1', '--proxy-dest-port', String(relay.port),
        '--from', 'a@hosted.test', '--to', 'friend@elsewhere.test', '--header', 'Subject: via proxy',
      ]);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, new RegExp(`PROXY TCP4 ${TRUSTED_CLIENT.replace(/\./g, '\\.')} 127\\.0\\.0\\.1 40000`));
      assert.match(r.out, /^<- {2}250 2\.1\.5 Recipient OK$/m);
      const [m] = (await internet.waitFor(before + 1)).slice(before);
      assert.match(m!.raw.toString('latin1'), new RegExp(`\\(\\[${TRUSTED_CLIENT.replace(/\./g, '\\.')}\\]\\) \\(via \\[${PROXY_PEER.replace(/\./g, '\\.')}\\] PROXY\\)`));
      const t = transactions().find((l) => l['proxied'] === 'proxy' && l['verdict'] === 'accepted');
      assert.ok(t, JSON.stringify(transactions()));
      assert.equal(t['client'], TRUSTED_CLIENT);
      assert.equal(t['peer'], PROXY_PEER);
    });

    it('from a listed peer, a session without the header is cut off; the network 127.0.0.4/31 covers 127.0.0.5 too', async () => {
      const c = await RawSmtp.connect(relay.port, '127.0.0.1', '127.0.0.5');
      c.write('EHLO lb.test\r\n');
      await c.waitClosed();
    });

    it('from any other peer, a PROXY line is just an unknown command and grants nothing', async () => {
      const c = await RawSmtp.connect(relay.port, '127.0.0.1', NOBODY);
      assert.match(await c.read(), /^220 /);
      assert.equal(await c.cmd(`PROXY TCP4 ${TRUSTED_CLIENT} 127.0.0.1 40000 25`), '500 5.5.2 Command not recognized');
      await c.cmd('EHLO x.test');
      await c.cmd('MAIL FROM:<a@hosted.test>');
      assert.equal(await c.cmd('RCPT TO:<friend@elsewhere.test>'), '550 5.7.1 Unable to relay');
      c.close();
    });
  });
});

describe('proxy trust that covers everyone', () => {
  it('starts with 0.0.0.0/0 but logs a loud warning naming the key', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write(chunk: Buffer, _e, cb) { lines.push(chunk.toString('utf8')); cb(); } });
    const relay = await startTestRelay({ logger: createLogger('warn', sink), config: { listen: [{ host: '127.0.0.1', port: 0, xclient: ['0.0.0.0/0'] }] } });
    try {
      const warning = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['key'] === 'listen[0].xclient');
      assert.ok(warning, lines.join(''));
      assert.equal(warning['level'], 40);
      assert.match(String(warning['msg']), /^WARNING: listen\[0\]\.xclient trusts EVERY address/);
      assert.deepEqual(warning['networks'], ['0.0.0.0/0']);
    } finally {
      await relay.stop();
    }
  });
});

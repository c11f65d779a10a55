import assert from 'node:assert/strict';
import { CaptureServer, RawSmtp, sendMail, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import limits, { clientKey } from '../src/index.js';

const builtins = { limits, 'relay-policy': relayPolicy };

/** Opens a connection from `from` and returns it with its first reply (220 or a refusal). */
async function open(port: number, from: string): Promise<{ c: RawSmtp; greeting: string }> {
  const c = await RawSmtp.connect(port, '127.0.0.1', from);
  return { c, greeting: await c.read() };
}

describe('client keys', () => {
  it('counts IPv6 clients per /64 and IPv4-mapped clients as IPv4', () => {
    assert.equal(clientKey('2001:db8:1:2:aaaa::1', 64), '2001:db8:1:2::/64');
    assert.equal(clientKey('2001:db8:1:2:bbbb::9', 64), '2001:db8:1:2::/64');
    assert.equal(clientKey('::ffff:127.0.0.9', 64), '127.0.0.9');
  });
});

describe('limits over SMTP (memory store)', () => {
  let sink: CaptureServer;
  let relay: TestRelay;
  const open$: RawSmtp[] = [];
  const start = async (withOpts: object, limitsCfg: object = {}, listen?: object[]) => {
    relay = await startTestRelay({
      builtins,
      config: {
        ...(listen ? { listen: listen as never } : {}),
        limits: limitsCfg,
        plugins: [
          { use: 'limits', with: { exempt: { networks: ['127.0.0.2/32'] }, ...withOpts } },
          { use: 'relay-policy', with: { domains: { 'example.test': { nexthop: sink.address, tls: 'none' } }, trustedNetworks: ['127.0.0.2/32'] } },
        ],
      },
    });
  };
  before(async () => (sink = await CaptureServer.start()));
  afterEach(async () => {
    for (const c of open$.splice(0)) c.close();
    await relay?.stop();
  });
  after(async () => sink?.close());

  it('refuses the connection past the per-address limit with 421 4.7.0 before any greeting, and serves a trusted client meanwhile', async () => {
    await start({ perIp: { connections: 3 } });
    for (let i = 0; i < 3; i++) {
      const { c, greeting } = await open(relay.port, '127.0.0.9');
      open$.push(c);
      assert.match(greeting, /^220 /);
    }
    const t0 = Date.now();
    const { c, greeting } = await open(relay.port, '127.0.0.9');
    assert.equal(greeting, '421 4.7.0 Too many connections from your address, try again later');
    await c.waitClosed();
    assert.ok(Date.now() - t0 < 1000);
    const trusted = await sendMail({ port: relay.port, localAddress: '127.0.0.2', from: 'a@inside.test', to: 'b@example.test' });
    assert.equal(trusted.ok, true, trusted.response);
    // Once one closes, the address may connect again.
    open$.shift()!.close();
    await new Promise((r) => setTimeout(r, 100));
    const again = await open(relay.port, '127.0.0.9');
    open$.push(again.c);
    assert.match(again.greeting, /^220 /);
  });

  it('keeps connection capacity for trusted networks and submission when untrusted clients take the rest', async () => {
    await start({ reservedConnections: 5, perIp: { connections: 5 } }, { connections: 15 }, [{ host: '127.0.0.1', port: 0, greetingDelay: 0 }, { host: '127.0.0.1', port: 0, greetingDelay: 0, auth: 'required' }]);
    for (const ip of ['127.0.0.11', '127.0.0.12']) {
      for (let i = 0; i < 5; i++) {
        const { c, greeting } = await open(relay.port, ip);
        open$.push(c);
        assert.match(greeting, /^220 /);
      }
    }
    // 10 of 15 used, 5 kept: a third untrusted address is refused at once.
    const refused = await open(relay.port, '127.0.0.13');
    assert.equal(refused.greeting, '421 4.7.0 Too many connections, try again later');
    refused.c.close();
    // The same address on the submission listener (auth: required) uses the kept capacity.
    const submission = await open(relay.relay.addresses()[1]!.port, '127.0.0.13');
    open$.push(submission.c);
    assert.match(submission.greeting, /^220 /);
    for (let i = 0; i < 3; i++) {
      const { c, greeting } = await open(relay.port, '127.0.0.2');
      open$.push(c);
      assert.match(greeting, /^220 /, `trusted connection ${i + 1}`);
    }
    const trusted = await sendMail({ port: relay.port, localAddress: '127.0.0.2', from: 'a@inside.test', to: 'b@example.test' });
    assert.equal(trusted.ok, true, trusted.response);
  });

  it('refuses a client that connects too often with 421 4.7.0 and closes', async () => {
    await start({ perIp: { connectionRate: { limit: 3, window: '10s' } } });
    for (let i = 0; i < 3; i++) {
      const { c, greeting } = await open(relay.port, '127.0.0.9');
      assert.match(greeting, /^220 /);
      c.close();
    }
    const { c, greeting } = await open(relay.port, '127.0.0.9');
    assert.equal(greeting, '421 4.7.0 Too many connections from your address in a short time, try again later');
    await c.waitClosed();
    const other = await open(relay.port, '127.0.0.10');
    assert.match(other.greeting, /^220 /);
    other.c.close();
  });

  it('tempfails MAIL past the per-address message rate with 451 4.7.1, never 5xx, and lets exempt networks through', async () => {
    await start({ perIp: { messageRate: { limit: 2, window: '1m' } } });
    for (let i = 0; i < 2; i++) {
      const r = await sendMail({ port: relay.port, localAddress: '127.0.0.9', from: `s${i}@outside.test`, to: 'b@example.test' });
      assert.equal(r.ok, true, r.response);
    }
    const over = await sendMail({ port: relay.port, localAddress: '127.0.0.9', from: 's9@outside.test', to: 'b@example.test' });
    assert.equal(over.response, '451 4.7.1 Too many messages (address rate limit), try again later');
    for (let i = 0; i < 4; i++) {
      const r = await sendMail({ port: relay.port, localAddress: '127.0.0.2', from: 'a@inside.test', to: 'b@example.test' });
      assert.equal(r.ok, true, r.response);
    }
  });

  it('tempfails RCPT past the recipient rate with 450 4.7.1 and MAIL past the sender and null-sender rates with 451 4.7.1', async () => {
    await start({ perIp: { recipientRate: { limit: 3, window: '1m' }, nullSenderRate: { limit: 1, window: '1m' } }, perSender: { messageRate: { limit: 2, window: '1m' } } });
    const c = (await open(relay.port, '127.0.0.9')).c;
    open$.push(c);
    await c.cmd('EHLO client.test');
    assert.match(await c.cmd('MAIL FROM:<x@outside.test>'), /^250/);
    for (let i = 0; i < 3; i++) assert.match(await c.cmd(`RCPT TO:<u${i}@example.test>`), /^250/);
    assert.equal(await c.cmd('RCPT TO:<u4@example.test>'), '450 4.7.1 Too many recipients (address rate limit), try again later');
    assert.match(await c.cmd('RSET'), /^250/);
    // The same sender from two addresses: counted together.
    const d = (await open(relay.port, '127.0.0.10')).c;
    open$.push(d);
    await d.cmd('EHLO client.test');
    assert.match(await d.cmd('MAIL FROM:<X@outside.test>'), /^250/);
    assert.match(await d.cmd('RSET'), /^250/);
    assert.equal(await d.cmd('MAIL FROM:<x@outside.test>'), '451 4.7.1 Too many messages (sender rate limit), try again later');
    assert.match(await d.cmd('MAIL FROM:<>'), /^250/);
    assert.match(await d.cmd('RSET'), /^250/);
    assert.equal(await d.cmd('MAIL FROM:<>'), '451 4.7.1 Too many messages (null-sender rate limit), try again later');
  });

  it('does not count the connections of a configured XCLIENT proxy as one client, neither at once nor in its connection rate', async () => {
    await start({ perIp: { connections: 2, connectionRate: { limit: 2, window: '1m' } } }, { connectionsPerIp: 2 }, [{ host: '127.0.0.1', port: 0, greetingDelay: 0, xclient: ['127.0.0.5/32'] }]);
    for (let i = 0; i < 4; i++) {
      const { c, greeting } = await open(relay.port, '127.0.0.5');
      open$.push(c);
      assert.match(greeting, /^220 /, `proxy connection ${i + 1}`);
    }
    // Any other address is still limited.
    for (let i = 0; i < 2; i++) open$.push((await open(relay.port, '127.0.0.9')).c);
    const over = await open(relay.port, '127.0.0.9');
    open$.push(over.c);
    assert.match(over.greeting, /^421 4\.7\.0 /);
  });

  it('rejects bad options naming the key path', async () => {
    await assert.rejects(
      startTestRelay({ builtins, config: { plugins: [{ use: 'limits', with: { exempt: { networks: ['10.0.0.1/8'] }, perIp: { messageRate: { limit: 0, window: '1m' } } } }] } }),
      (err: Error) => /plugins\[0\]\.with\.exempt\.networks\[0\]: .*host bits/.test(err.message) && /plugins\[0\]\.with\.perIp\.messageRate/.test(err.message),
    );
  });
});

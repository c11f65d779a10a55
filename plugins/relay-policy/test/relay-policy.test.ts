import assert from 'node:assert/strict';
import { CaptureServer, hostedRelay, RawSmtp, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '../src/index.js';
import { NetworkList } from '@portcullis/core';

describe('trusted networks', () => {
  const nets = NetworkList.parse(['10.0.0.0/8', '192.0.2.7', 'fd00::/8']);
  it('matches IPv4, single addresses, IPv6 and IPv4-mapped IPv6', () => {
    assert.equal(nets.contains('10.1.2.3'), true);
    assert.equal(nets.contains('::ffff:10.1.2.3'), true);
    assert.equal(nets.contains('192.0.2.7'), true);
    assert.equal(nets.contains('192.0.2.8'), false);
    assert.equal(nets.contains('fd12::1'), true);
    assert.equal(nets.contains('2001:db8::1'), false);
    assert.equal(nets.contains('not an ip'), false);
  });
});

describe('relay-policy over SMTP', () => {
  let sink: CaptureServer;
  let relay: TestRelay;
  before(async () => {
    const hosted = await hostedRelay({ builtins: { 'relay-policy': relayPolicy }, domain: 'Example.COM.', policy: { trustedNetworks: ['127.0.0.2/32'] } });
    relay = hosted;
    sink = hosted.sink;
  });
  after(async () => {
    await relay?.stop();
    await sink?.close();
  });

  async function rcpt(from: string, to: string): Promise<string> {
    const c = await RawSmtp.connect(relay.port, '127.0.0.1', from);
    await c.read();
    await c.cmd('EHLO client.test');
    await c.cmd('MAIL FROM:<someone@example.com>');
    const r = await c.cmd(`RCPT TO:<${to}>`);
    c.close();
    return r;
  }

  it('accepts a hosted domain from anyone, case-insensitively (the configured name may end in a dot)', async () => {
    assert.equal(await rcpt('127.0.0.9', 'user@example.com'), '250 2.1.5 Recipient OK');
    assert.equal(await rcpt('127.0.0.9', 'user@EXAMPLE.com'), '250 2.1.5 Recipient OK');
  });
  it('lets a trusted network relay anywhere', async () => {
    assert.equal(await rcpt('127.0.0.2', 'user@elsewhere.test'), '250 2.1.5 Recipient OK');
  });
  it('refuses relay for an untrusted client, even when MAIL FROM claims a hosted domain', async () => {
    assert.equal(await rcpt('127.0.0.9', 'user@elsewhere.test'), '550 5.7.1 Unable to relay');
    assert.equal(await rcpt('127.0.0.9', 'user@sub.example.com'), '550 5.7.1 Unable to relay');
    assert.equal(await rcpt('127.0.0.9', 'user@example.com.evil.test'), '550 5.7.1 Unable to relay');
  });
  it('rejects bad options with the key path', async () => {
    await assert.rejects(
      startTestRelay({ builtins: { 'relay-policy': relayPolicy }, config: { plugins: [{ use: 'relay-policy', with: { trustedNetworks: ['10.0.0.0/33'], domains: { 'a.test': { nexthop: 'nohost' } } } }] } }),
      (err: Error) => /plugins\[0\]\.with\.trustedNetworks\[0\]: "10\.0\.0\.0\/33" has a bad prefix length/.test(err.message) && /plugins\[0\]\.with\.domains\.a\.test\.nexthop: expected host:port/.test(err.message),
    );
  });
});

import assert from 'node:assert/strict';
import { simpleParser } from 'mailparser';
import { hostedRelay, RawSmtp, sendMail, type CaptureServer, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';

describe('relay basics', () => {
  let sink: CaptureServer;
  let relay: HostedRelay;

  before(async () => {
    relay = await hostedRelay({ builtins: { 'relay-policy': relayPolicy }, domain: 'example.com', policy: { trustedNetworks: ['127.0.0.2/32'] } });
    sink = relay.sink;
  });
  after(() => relay?.close());

  it('delivers mail for a hosted domain to its next hop with a Received header on top', async () => {
    const r = await sendMail({ port: relay.port, localAddress: '127.0.0.5', from: 'alice@remote.test', to: 'bob@example.com', subject: 'hi', text: 'body text' });
    assert.equal(r.ok, true, r.response);
    assert.match(r.response, /^250 2\.0\.0 Ok: queued as [0-9A-Z]+$/);
    const [msg] = await sink.waitFor(1);
    assert.deepEqual(msg!.to, ['bob@example.com']);
    assert.equal(msg!.from, 'alice@remote.test');
    assert.match(msg!.raw.toString(), /^Received: from client\.test \(\[127\.0\.0\.5\]\)\r\n\tby relay\.test \(Portcullis\) with ESMTP id /);
    const parsed = await simpleParser(msg!.raw);
    assert.equal(parsed.subject, 'hi');
    assert.equal(parsed.text?.trim(), 'body text');
  });

  it('rejects relay to an unhosted domain from an untrusted client with 550 5.7.1', async () => {
    const c = await RawSmtp.connect(relay.port, '127.0.0.1', '127.0.0.6');
    assert.match(await c.read(), /^220 /);
    assert.match(await c.cmd('EHLO client.test'), /^250/);
    assert.match(await c.cmd('MAIL FROM:<a@remote.test>'), /^250/);
    assert.equal(await c.cmd('RCPT TO:<victim@elsewhere.test>'), '550 5.7.1 Unable to relay');
    c.close();
  });
});

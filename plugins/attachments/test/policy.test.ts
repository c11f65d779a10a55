import assert from 'node:assert/strict';
import { hostedRelay, sendMail, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import attachments from '../src/index.js';
import * as f from './fixtures.js';

/** A relay hosting example.com (its own capture next hop), 127.0.0.2 trusted, with attachments after relay-policy. */
function relayWith(withOpts: Record<string, unknown>): Promise<HostedRelay> {
  return hostedRelay({
    builtins: { 'relay-policy': relayPolicy, attachments },
    policy: { trustedNetworks: ['127.0.0.2/32'] },
    plugins: [{ use: 'attachments', with: withOpts }],
  });
}

const send = (relay: HostedRelay, raw: string, localAddress = '127.0.0.1') => sendMail({ port: relay.port, localAddress, from: 'sender@remote.test', to: 'bob@example.com', raw });

describe('attachment policies over SMTP', function () {
  this.timeout(30_000);
  const relays: HostedRelay[] = [];
  after(async () => {
    for (const r of relays) await r.close();
  });

  it('in allow-list mode rejects an unlisted extension and passes a listed one unchanged', async () => {
    const relay = await relayWith({ rules: [{ action: 'block', extensions: [], allowExtensions: ['pdf', 'png'], checks: ['extension'] }] });
    relays.push(relay);
    const bad = await send(relay, f.message('[allow-1] xlsx', [f.attachment('table.xlsx', Buffer.from('PK not really'))]));
    assert.equal(bad.response, '550 5.7.1 Message refused: attachment "table.xlsx" has extension .xlsx, which is not allowed');
    const raw = f.message('[allow-2] pdf', [f.attachment('report.PDF', f.pdf(), 'application/pdf')]);
    const good = await send(relay, raw);
    assert.match(good.response, /^250 /);
    const [msg] = await relay.waitFor(1);
    assert.ok(msg!.raw.toString('latin1').endsWith(raw));
  });

  it('applies the shorthand `block` list with `action: strip` to both directions', async () => {
    const relay = await relayWith({ block: ['exe', 'js'], action: 'strip' });
    relays.push(relay);
    const r = await send(relay, f.message('[short-1] js', [f.attachment('run.js', Buffer.from('alert(1)'))]), '127.0.0.2');
    assert.match(r.response, /^250 /);
    const msgs = await relay.waitFor(1);
    const got = msgs[msgs.length - 1]!.raw.toString();
    assert.match(got, /File: "run\.js"/);
    assert.ok(!got.includes(Buffer.from('alert(1)').toString('base64')));
    // .scr is not on this operator's list: it passes.
    const ok = await send(relay, f.message('[short-2] scr', [f.attachment('s.scr', Buffer.from('plain text'))]));
    assert.match(ok.response, /^250 /);
  });

  it('screens only the direction a rule names', async () => {
    const relay = await relayWith({ trustedNetworks: ['127.0.0.2/32'], rules: [{ direction: 'inbound', action: 'block' }] });
    relays.push(relay);
    const raw = () => f.message('[dir] exe', [f.attachment('tool.exe', f.pe('dir'))]);
    const inbound = await send(relay, raw(), '127.0.0.1');
    assert.match(inbound.response, /^550 5\.7\.1 Message refused: attachment "tool\.exe" is a Windows program/);
    const outbound = await send(relay, raw(), '127.0.0.2');
    assert.match(outbound.response, /^250 /);
  });

  it('fails closed with 451 4.3.0 when an archive cannot be written for inspection', async () => {
    const relay = await relayWith({ tempDir: '/nonexistent/portcullis-attachments' });
    relays.push(relay);
    const r = await send(relay, f.message('[tmp] zip', [f.attachment('a.zip', await f.zip([{ name: 'a.txt', data: Buffer.from('x') }]), 'application/zip')]));
    assert.match(r.response, /^451 4\.3\.0 /);
    const plain = await send(relay, f.message('[tmp] pdf', [f.attachment('a.pdf', f.pdf(), 'application/pdf')]));
    assert.match(plain.response, /^250 /, 'parts that need no temp file still pass');
  });
});

import assert from 'node:assert/strict';
import { accept, definePlugin } from '@portcullis/core';
import { inject, reverseName } from '@portcullis/testkit';
import policy, { type PolicyNote } from '../src/index.js';
import { TinyPolicyServer } from './support/tiny-policy-server.js';

/**
 * client_name / reverse_client_name as Postfix sends them, and the HOLD note (the hold itself: policy.test.ts). The relay runs in
 * memory (the test kit's inject) so that its resolver can be scripted; the policy server is a real
 * one on loopback (written for the test, to see the requests).
 */
describe('policy: client names and notes', function () {
  this.timeout(20_000);
  let tiny: TinyPolicyServer;
  let answer = 'DUNNO';
  const notes: Array<PolicyNote | undefined> = [];
  const accepter = definePlugin({
    name: 'accept-all',
    setup: () => ({
      rcpt: () => accept(),
      message: (txn) => void notes.push(txn.notes['policy'] as PolicyNote | undefined),
      route: () => ({ hosts: [{ host: 'hop.test', port: 25 }] }),
    }),
  });
  const message = 'From: <a@remote.test>\r\nTo: <b@example.com>\r\nSubject: names\r\n\r\nHi.\r\n';
  before(async () => {
    tiny = await TinyPolicyServer.start(() => ({ action: answer }));
  });
  after(() => tiny?.close());

  const run = (ip: string, dns: Parameters<typeof inject>[0]['dns']) =>
    inject({
      plugins: [{ use: policy, with: { server: tiny.address } }, accepter],
      dns,
      client: { remoteAddress: ip },
      mail: { from: 'a@remote.test', to: 'b@example.com', message },
    });

  it('sends the forward-confirmed name as client_name and the PTR as reverse_client_name', async () => {
    const seen = tiny.requests.length;
    await run('192.0.2.7', { [reverseName('192.0.2.7')]: { PTR: ['mx.remote.test.'] }, 'mx.remote.test': { A: ['192.0.2.7'] } });
    const r = tiny.requests[seen]!;
    assert.equal(r.get('client_name'), 'mx.remote.test');
    assert.equal(r.get('reverse_client_name'), 'mx.remote.test');
    assert.equal(r.get('client_address'), '192.0.2.7');
  });

  it('sends client_name=unknown when the PTR name does not resolve back to the address, and unknown for both without a PTR', async () => {
    const seen = tiny.requests.length;
    await run('192.0.2.8', { [reverseName('192.0.2.8')]: { PTR: ['forged.test.'] }, 'forged.test': { A: ['198.51.100.1'] } });
    await run('192.0.2.9', {});
    const [forged, none] = tiny.requests.slice(seen);
    assert.equal(forged!.get('client_name'), 'unknown');
    assert.equal(forged!.get('reverse_client_name'), 'forged.test');
    assert.equal(none!.get('client_name'), 'unknown');
    assert.equal(none!.get('reverse_client_name'), 'unknown');
  });

  it('records a HOLD answer in txn.notes.policy and logs that it is applied at end of message', async () => {
    answer = 'HOLD please look at this';
    try {
      const r = await run('192.0.2.10', {});
      assert.equal(r.replies.at(-2)!.code, 250);
      assert.equal(r.spooled.length, 1);
      const n = notes.at(-1)!;
      assert.equal(n.hold, 'please look at this');
      assert.deepEqual(n.answers.map((a) => [a.stage, a.recipient, a.action]), [['rcpt', 'b@example.com', 'HOLD please look at this']]);
      assert.ok(r.logs.some((l) => l.plugin === 'policy' && /HOLD: applied at end of message/.test(String(l.msg))));
    } finally {
      answer = 'DUNNO';
    }
  });
});

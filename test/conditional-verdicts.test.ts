import assert from 'node:assert/strict';
import { accept, deferIfPermit, deferIfReject, definePlugin, reject, type Verdict } from '@portcullis/core';
import { RawSmtp, startTestRelay, type TestRelay } from '@portcullis/testkit';

/**
 * deferIfPermit / deferIfReject (Postfix's DEFER_IF_PERMIT and DEFER_IF_REJECT) on first-verdict-wins
 * hooks: the driver keeps asking the later plugins, and the conditional tempfail answers only for
 * the final decision it names.
 */
describe('conditional tempfails (deferIfPermit, deferIfReject)', () => {
  let relay: TestRelay;
  const byLocal = (verdicts: Record<string, Verdict | undefined>) => (local: string) => verdicts[local];
  const first = definePlugin({
    name: 'first',
    setup: () => ({
      rcpt: (_txn, to) => byLocal({ dip: deferIfPermit(450, '4.2.0', 'greylisted'), dir: deferIfReject(450, '4.7.1', 'maybe later'), both: deferIfPermit(450, '4.2.0', 'greylisted') })(to.local),
      mail: (_txn, from) => (from.local === 'dip' ? deferIfPermit(450, '4.7.1', 'sender deferred') : from.local === 'dir' ? deferIfReject(450, '4.7.1', 'sender maybe') : undefined),
    }),
  });
  // Later plugins: accept hosted recipients, reject `bad.test`, say nothing for others (deny by default).
  const second = definePlugin({
    name: 'second',
    setup: () => ({
      rcpt: (_txn, to) => (to.domain === 'example.com' ? accept() : to.domain === 'bad.test' ? reject(554, '5.7.1', 'refused by second') : undefined),
      mail: (_txn, from) => (from.domain === 'bad.test' ? reject(553, '5.7.1', 'sender refused') : undefined),
    }),
  });
  before(async () => {
    relay = await startTestRelay({ builtins: { first, second }, config: { plugins: [{ use: 'first' }, { use: 'second' }] } });
  });
  after(() => relay?.stop());

  async function session(): Promise<RawSmtp> {
    const c = await RawSmtp.connect(relay.port);
    assert.match(await c.read(), /^220 /);
    assert.match(await c.cmd('EHLO client.test'), /^250/);
    return c;
  }

  it('deferIfPermit tempfails a recipient a later plugin accepts, and leaves a later reject or the implicit 550 alone', async () => {
    const c = await session();
    assert.match(await c.cmd('MAIL FROM:<a@remote.test>'), /^250/);
    assert.equal(await c.cmd('RCPT TO:<dip@example.com>'), '450 4.2.0 greylisted');
    assert.equal(await c.cmd('RCPT TO:<dip@bad.test>'), '554 5.7.1 refused by second');
    assert.equal(await c.cmd('RCPT TO:<dip@elsewhere.test>'), '550 5.7.1 Unable to relay');
    assert.match(await c.cmd('RCPT TO:<other@example.com>'), /^250 /);
    c.close();
  });

  it('deferIfReject tempfails instead of a later reject or the implicit 550, and leaves a later accept alone', async () => {
    const c = await session();
    assert.match(await c.cmd('MAIL FROM:<a@remote.test>'), /^250/);
    assert.equal(await c.cmd('RCPT TO:<dir@bad.test>'), '450 4.7.1 maybe later');
    assert.equal(await c.cmd('RCPT TO:<dir@elsewhere.test>'), '450 4.7.1 maybe later');
    assert.match(await c.cmd('RCPT TO:<dir@example.com>'), /^250 /);
    c.close();
  });

  it('deferIfPermit at MAIL tempfails when nothing later decides (no verdict means accepted there)', async () => {
    const c = await session();
    assert.equal(await c.cmd('MAIL FROM:<dip@remote.test>'), '450 4.7.1 sender deferred');
    assert.equal(await c.cmd('MAIL FROM:<dip@bad.test>'), '553 5.7.1 sender refused');
    assert.equal(await c.cmd('MAIL FROM:<dir@bad.test>'), '450 4.7.1 sender maybe');
    assert.match(await c.cmd('MAIL FROM:<dir@remote.test>'), /^250 /);
    c.close();
  });
});

import assert from 'node:assert/strict';
import { CaptureServer, RawSmtp, codeOf, sendMail } from '@portcullis/testkit';

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

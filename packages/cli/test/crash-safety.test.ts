import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { CaptureServer, RawSmtp, codeOf } from '@portcullis/testkit';
import { cleanupDirs, freePort, killAll, startCli, tempDir, writeConfig } from './helpers.js';

/**
 * "A message is on disk before its 250": the relay is killed with SIGKILL the moment it answers
 * 250 to DATA (no chance to flush anything), restarted on the same spool, and must deliver the
 * message, byte for byte, to a next hop that was down the first time.
 */
describe('crash safety', () => {
  const servers: CaptureServer[] = [];
  afterEach(async () => {
    await killAll();
    await Promise.all(servers.splice(0).map((s) => s.close()));
    cleanupDirs();
  });

  it('delivers after a restart a message whose 250 was sent right before a SIGKILL', async () => {
    const nexthopPort = await freePort(); // nothing listens there yet: the first delivery attempt fails
    const dir = tempDir();
    const config = writeConfig(
      dir,
      'portcullis.yaml',
      [
        'hostname: relay.test',
        'listen: [{ host: 127.0.0.1, port: 0, greetingDelay: 0 }]',
        'spool: { dir: ./spool }',
        'delivery: { retrySchedule: [1s] }',
        'plugins:',
        '  - use: relay-policy',
        `    with: { domains: { test.example: { nexthop: "127.0.0.1:${nexthopPort}", tls: none } } }`,
        '',
      ].join('\n'),
    );

    // A message with a body large enough to take several writes, and bytes that must survive as they are.
    const line = (i: number) => `line ${String(i).padStart(5, '0')}: ${'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(2)} \u00e9t\u00e9\r\n`;
    const body = Array.from({ length: 3000 }, (_, i) => line(i)).join('');
    const message = Buffer.from(
      'From: Alice <alice@example.org>\r\nTo: Bob <bob@test.example>\r\nSubject: crash test\r\nMessage-ID: <crash-1@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n' + body,
      'utf8',
    );

    const first = startCli(['start', '--config', config], { cwd: dir });
    const port = await first.readyPort();
    const smtp = await RawSmtp.connect(port);
    let reply: string;
    try {
      assert.equal(codeOf(await smtp.read()), 220);
      assert.equal(codeOf(await smtp.cmd('EHLO client.test')), 250);
      assert.equal(codeOf(await smtp.cmd('MAIL FROM:<alice@example.org>')), 250);
      assert.equal(codeOf(await smtp.cmd('RCPT TO:<bob@test.example>')), 250);
      assert.equal(codeOf(await smtp.cmd('DATA')), 354);
      smtp.write(Buffer.concat([message, Buffer.from('.\r\n')]));
      reply = await smtp.read();
      first.kill('SIGKILL'); // the moment the 250 is here
    } finally {
      smtp.close();
    }
    assert.match(reply, /^250 2\.0\.0 Ok: queued as (\S+)/);
    const queueId = /queued as (\S+)/.exec(reply)![1]!;
    assert.deepEqual(await first.waitExit(), { code: null, signal: 'SIGKILL' });
    assert.ok(readdirSync(path.join(dir, 'spool', 'queue')).some((f) => f.startsWith(queueId)), 'the message is in the spool');

    const nexthop = await CaptureServer.start({ port: nexthopPort });
    servers.push(nexthop);
    const second = startCli(['start', '--config', config], { cwd: dir });
    const [got] = await nexthop.waitFor(1, 8_000).catch((err: Error) => {
      throw new Error(`${err.message}\nrelay stdout after the restart:\n${second.stdout}\nstderr:\n${second.stderr}`);
    });
    assert.equal(got!.from, 'alice@example.org');
    assert.deepEqual(got!.to, ['bob@test.example']);
    // What arrives is the relay's Received header, then exactly the bytes the client sent.
    const raw = got!.raw;
    const added = raw.subarray(0, raw.length - message.length).toString('latin1');
    assert.match(added, /^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby relay\.test \(Portcullis\) with ESMTP id \S+\r\n\tfor <bob@test\.example>;\r\n\t[^\r\n]+\r\n$/);
    assert.ok(added.includes(queueId), added);
    assert.ok(raw.subarray(raw.length - message.length).equals(message), 'the message arrives byte for byte');

    await second.waitFor('the recovery and delivery log lines', () => second.logs().some((l) => l['msg'] === 'recovered messages from the spool') && second.logs().some((l) => l['msg'] === 'delivered'));
    await nexthop.waitFor(1);
    second.kill('SIGTERM');
    assert.deepEqual(await second.waitExit(5_000), { code: 0, signal: null });
    assert.equal(nexthop.messages.length, 1, 'delivered once');
    assert.deepEqual(readdirSync(path.join(dir, 'spool', 'queue')).filter((f) => f.startsWith(queueId)), [], 'and removed from the spool');
  });
});

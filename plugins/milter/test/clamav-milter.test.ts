import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, hostedRelay, sendMail, type CaptureServer, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import milter from '../src/index.js';
import { Daemon } from './support/daemon.js';
// The clamav plugin's test support starts Debian's clamd with a one-line EICAR database.
import { Clamd, eicar } from '../../clamav/test/support/clamd.js';

/*
 * Debian's clamav-milter, started by the test on loopback against the test's own clamd (one EICAR
 * signature), behind the relay: an infected message is refused with clamav-milter's reply, a clean
 * one is delivered carrying clamav-milter's X-Virus-Scanned header.
 */
describe('milter: Debian\'s clamav-milter on the test\'s clamd', function () {
  this.timeout(90_000);
  let clamd: Clamd;
  let cm: Daemon;
  let sink: CaptureServer;
  let relay: HostedRelay;
  let dir: string;

  before(async () => {
    clamd = await Clamd.start();
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-clamav-milter-'));
    const port = await freePort();
    const conf = path.join(dir, 'clamav-milter.conf');
    writeFileSync(
      conf,
      [
        `MilterSocket inet:${port}@127.0.0.1`,
        'User root',
        'Foreground yes',
        `PidFile ${path.join(dir, 'pid')}`,
        `ClamdSocket tcp:127.0.0.1:${clamd.port}`,
        'OnClean Accept',
        'OnInfected Reject',
        'RejectMsg Virus found: %v',
        'OnFail Defer',
        'AddHeader Replace',
        `LogFile ${path.join(dir, 'log')}`,
        'LogInfected Basic',
        `TemporaryDirectory ${dir}`,
        'ReadTimeout 30',
      ].join('\n') + '\n',
    );
    cm = await Daemon.start('/usr/sbin/clamav-milter', () => ['--config-file', conf], { port });
    relay = await hostedRelay({ builtins: { 'relay-policy': relayPolicy, milter }, domain: 'example.com', pluginsBefore: [{ use: 'milter', with: { milters: [{ address: cm.address, name: 'clamav' }] } }] });
    sink = relay.sink;
  });
  after(async () => {
    await relay?.close();
    await cm?.stop();
    await clamd?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a message carrying EICAR with clamav-milter\'s own reply (its RejectMsg), and delivers nothing', async () => {
    const before = sink.messages.length;
    const r = await sendMail({ port: relay.port, from: 'alice@remote.test', to: 'bob@example.com', raw: `From: alice@remote.test\r\nSubject: test\r\n\r\n${eicar()}\r\n` });
    assert.equal(r.response, '550 5.7.1 Virus found: Eicar-Test-Signature.UNOFFICIAL');
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(sink.messages.length, before);
  });

  it('delivers a clean message with clamav-milter\'s X-Virus-Scanned and X-Virus-Status headers', async () => {
    const before = sink.messages.length;
    const r = await sendMail({ port: relay.port, from: 'alice@remote.test', to: 'bob@example.com', raw: 'From: alice@remote.test\r\nSubject: clean\r\n\r\nNothing to see here.\r\n' });
    assert.equal(r.code, 250, r.response);
    await sink.waitFor(before + 1);
    const text = sink.messages[before]!.raw.toString();
    assert.match(text, /\r\nX-Virus-Scanned: clamav-milter [\d.]+ at \S+\r\nX-Virus-Status: Clean\r\n\r\nNothing to see here\.\r\n$/);
  });
});

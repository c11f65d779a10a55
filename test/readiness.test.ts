import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hostedRelay, sendMail, startTestRelay, type CaptureServer, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import clamav from '@portcullis/clamav';
import { Clamd } from '../plugins/clamav/test/support/clamd.js';
import { adminGet } from './support/admin.js';

interface Report {
  ready: boolean;
  checks: Array<{ name: string; ready: boolean; detail?: string }>;
}
const readyz = async (port: number) => {
  const r = await adminGet(port, '/readyz');
  return { status: r.status, report: JSON.parse(r.body) as Report };
};
const check = (r: Report, name: string) => r.checks.find((c) => c.name === name);

describe('/readyz', function () {
  this.timeout(60_000);

  describe('with clamav', () => {
    let clamd: Clamd;
    let nexthop: CaptureServer;
    let relay: TestRelay;
    let admin: number;
    before(async () => {
      clamd = await Clamd.start();
      const hosted = await hostedRelay({
        builtins: { 'relay-policy': relayPolicy, clamav },
        domain: 'example.com',
        config: { admin: { enabled: true, port: 0, readyTimeout: '3s' } },
        plugins: [{ use: 'clamav', with: { servers: [clamd.address], connectTimeout: '500ms' } }],
      });
      relay = hosted;
      nexthop = hosted.sink;
      admin = relay.relay.adminAddress()!.port;
    });
    after(async () => {
      await relay?.stop();
      await nexthop?.close();
      await clamd?.close();
    });

    it('answers 200 with every check passing while clamd runs', async () => {
      const { status, report } = await readyz(admin);
      assert.equal(status, 200, JSON.stringify(report));
      assert.deepEqual(report.checks.map((c) => [c.name, c.ready]), [['listeners', true], ['spool', true], ['disk', true], ['plugin:clamav', true]]);
      assert.match(check(report, 'plugin:clamav')!.detail!, new RegExp(`clamd ${clamd.address.replace(/\./g, '\\.')} answers`));
    });

    it('answers 503 naming clamav while clamd is stopped (mail tempfails meanwhile), and 200 again once it is back', async () => {
      await clamd.stop();
      const down = await readyz(admin);
      assert.equal(down.status, 503);
      assert.equal(down.report.ready, false);
      assert.equal(check(down.report, 'plugin:clamav')!.ready, false);
      assert.match(check(down.report, 'plugin:clamav')!.detail!, /no clamd answers: .*ECONNREFUSED/);
      assert.equal(check(down.report, 'spool')!.ready, true);
      const r = await sendMail({ port: relay.port, from: 'a@client.test', to: 'bob@example.com', subject: 'while clamd is down', text: 'x' });
      assert.match(r.response, /^451 4\.7\.0 /);
      await clamd.restart();
      const up = await readyz(admin);
      assert.equal(up.status, 200, JSON.stringify(up.report));
      assert.equal((await sendMail({ port: relay.port, from: 'a@client.test', to: 'bob@example.com', subject: 'clamd is back', text: 'x' })).ok, true);
    });
  });

  describe('with the spool on a small file system', () => {
    let mount: string;
    let relay: TestRelay | undefined;
    before(function () {
      mount = mkdtempSync(path.join(os.tmpdir(), 'portcullis-readyz-fs-'));
      // A real file system that really fills up: tmpfs (the tests run as root, as CI does).
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mount]);
    });
    after(async () => {
      await relay?.stop();
      execFileSync('umount', [mount]);
      rmSync(mount, { recursive: true, force: true });
    });

    it('answers 503 while the disk guard trips (free space below the limit), and 200 once space is freed', async () => {
      const spoolDir = path.join(mount, 'spool');
      mkdirSync(spoolDir);
      relay = await startTestRelay({ spoolDir, config: { admin: { enabled: true, port: 0 }, spool: { minFree: '4MB' } } });
      const admin = relay.relay.adminAddress()!.port;
      assert.equal((await readyz(admin)).status, 200);
      const filler = path.join(mount, 'filler');
      writeFileSync(filler, Buffer.alloc(5 * 1024 * 1024));
      const full = await readyz(admin);
      assert.equal(full.status, 503);
      assert.equal(check(full.report, 'disk')!.ready, false);
      assert.match(check(full.report, 'disk')!.detail!, /bytes free on the spool's file system, below 4194304: MAIL FROM gets 452 4\.3\.1/);
      // The same guard refuses new mail meanwhile.
      assert.match((await sendMail({ port: relay.port, from: 'a@client.test', to: 'b@example.com', subject: 'full', text: 'x' })).response, /^452 4\.3\.1 /);
      rmSync(filler);
      const freed = await readyz(admin);
      assert.equal(freed.status, 200, JSON.stringify(freed.report));
    });
  });
});

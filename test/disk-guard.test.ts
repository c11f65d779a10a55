import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CaptureServer, freePort, RawSmtp, sendMail, startTestRelay, waitUntil, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';

/**
 * The disk guard against a real small file system: a 4 MB tmpfs mounted by the test (needs root,
 * as in CI), unmounted afterwards.
 */
describe('disk-space guard on a small tmpfs spool', function () {
  this.timeout(60_000);
  let mountDir: string;
  let mounted = false;
  let relay: TestRelay;
  let sink: CaptureServer | undefined;
  let hopPort: number;
  const accepted: string[] = [];

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs and must run as root (CI does)');
    mountDir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-tmpfs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', mountDir]);
    mounted = true;
    hopPort = await freePort(); // the next hop is down at first: everything stays queued
    relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy },
      spoolDir: path.join(mountDir, 'spool'),
      config: {
        limits: { messageSize: '1MB' },
        spool: { minFree: '1MB' } as never,
        delivery: { retrySchedule: ['1s'] },
        plugins: [{ use: 'relay-policy', with: { domains: { 'example.test': { nexthop: `127.0.0.1:${hopPort}`, tls: 'none' } } } }],
      },
    });
  });
  after(async () => {
    await relay?.stop();
    await sink?.close();
    if (mounted) execFileSync('umount', [mountDir]);
    if (mountDir) rmSync(mountDir, { recursive: true, force: true });
  });

  async function mailFrom(from = '127.0.0.9'): Promise<string> {
    const c = await RawSmtp.connect(relay.port, '127.0.0.1', from);
    try {
      await c.read();
      await c.cmd('EHLO client.test');
      return await c.cmd('MAIL FROM:<sender@outside.test>');
    } finally {
      c.close();
    }
  }

  it('accepts mail until the spool is short of space, then answers MAIL FROM with 452 4.3.1', async () => {
    const body = 'x'.repeat(76) + '\r\n';
    let last = '';
    for (let i = 0; i < 40; i++) {
      const subject = `fill ${i}`;
      const r = await sendMail({ port: relay.port, localAddress: '127.0.0.9', from: 'sender@outside.test', to: 'u@example.test', subject, text: body.repeat(2600) });
      last = r.response;
      if (!r.ok) break;
      accepted.push(subject);
    }
    console.log(`      ${accepted.length} messages of ~200 KB accepted before 452 4.3.1`);
    assert.ok(accepted.length >= 5, `only ${accepted.length} accepted`);
    assert.ok(accepted.length < 40, 'the spool never filled');
    assert.match(last, /^452 4\.3\.1 Insufficient system storage/);
    assert.equal(await mailFrom(), '452 4.3.1 Insufficient system storage');
  });

  it('keeps answering a flood of MAIL FROM while full, without crashing', async () => {
    const before = relay.relay.diskGuard.refused;
    // From 50 addresses: one address would meet limits.connectionsPerIp (20) first.
    const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => mailFrom(`127.0.2.${i + 1}`)));
    assert.deepEqual([...new Set(replies)], ['452 4.3.1 Insufficient system storage']);
    assert.ok(relay.relay.diskGuard.refused - before >= 50);
  });

  it('delivers every acknowledged message exactly once when the next hop returns, then accepts mail again by itself', async () => {
    sink = await CaptureServer.start({ port: hopPort });
    await sink.waitFor(accepted.length, 30_000);
    await new Promise((r) => setTimeout(r, 1500)); // a duplicate would arrive with the next retry round
    const subjects = sink.messages.map((m) => /^Subject: (.*)$/m.exec(m.raw.toString())?.[1]);
    assert.deepEqual([...subjects].sort(), [...accepted].sort());
    await waitUntil(() => relay.relay.queue.size === 0, 'an empty queue', 10_000);
    assert.match(await mailFrom(), /^250 /);
  });
});

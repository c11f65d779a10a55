import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CaptureServer, freePort, hostedRelay, RawSmtp, sendMail, startTestRelay, waitUntil, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import attachments from '@portcullis/attachments';
import { manySmallParts } from './support/mime-bombs.js';
import { rawSend } from './support/raw-send.js';
import { DiskGuard } from '@portcullis/core/internal';
import { pino } from 'pino';

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

/**
 * The guard reuses a fresh measurement only while it answers for the worst case: every transaction
 * admitted on it writing a message of the maximum size. Against a real 8 MB tmpfs (root, as in CI).
 */
describe('disk guard: reusing a measurement never admits more than measuring each time would', function () {
  this.timeout(30_000);
  let dir: string;
  let mounted = false;
  const log = pino({ level: 'silent' });
  before(() => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs and must run as root (CI does)');
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-guard-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', dir]);
    mounted = true;
  });
  afterEach(() => {
    for (const f of ['a', 'b']) rmSync(path.join(dir, f), { force: true });
  });
  after(() => {
    if (mounted) execFileSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  });

  // The reuse window is 1 s here (100 ms in production) so that a loaded machine cannot stretch the
  // gap between two calls past it; what is tested is the rule, not the figure.
  it('reuses the figure for small messages far above the threshold, and measures again once the window is over', async () => {
    const guard = new DiskGuard(dir, 1_000_000, log, 0, 100_000, 1_000);
    assert.equal(await guard.hasRoom(), true);
    const first = guard.lastFree;
    writeFileSync(path.join(dir, 'a'), Buffer.alloc(3_000_000));
    assert.equal(await guard.hasRoom(), true);
    assert.equal(guard.lastFree, first, 'reused: 8 MB less two 100 KB messages still clears 1 MB');
    await new Promise((r) => setTimeout(r, 1_100));
    assert.equal(await guard.hasRoom(), true);
    assert.ok(first - guard.lastFree >= 3_000_000, `measured again: ${first} → ${guard.lastFree}`);
  });

  it('measures at once when the admitted transactions could have used up the margin, and refuses', async () => {
    // 1 MB messages, 1 MB threshold, 8 MiB disk.
    const guard = new DiskGuard(dir, 1_000_000, log, 0, 1_000_000, 1_000);
    writeFileSync(path.join(dir, 'a'), Buffer.alloc(4_500_000));
    assert.equal(await guard.hasRoom(), true); // measured: ~3.9 MB free
    writeFileSync(path.join(dir, 'b'), Buffer.alloc(3_000_000)); // now ~0.9 MB free
    // Within the window, and 3.9 MB − 2 × 1 MB still clears 1 MB: reused once (a real client would
    // have written at most 1 MB of that 3 MB)...
    assert.equal(await guard.hasRoom(), true);
    // ...then 3.9 MB − 3 × 1 MB does not: measured (~0.9 MB free) and refused.
    assert.equal(await guard.hasRoom(), false);
    assert.ok(guard.lastFree < 1_000_000, `measured: ${guard.lastFree}`);
  });

  it('measures every time without a message size (the old behaviour)', async () => {
    const guard = new DiskGuard(dir, 1_000_000, log);
    assert.equal(await guard.hasRoom(), true);
    writeFileSync(path.join(dir, 'a'), Buffer.alloc(7_500_000));
    assert.equal(await guard.hasRoom(), false);
  });
});

/**
 * Issue 17: temp space anonymous clients hold never locks out trusted clients. A 32 MB tmpfs spool
 * (root, as in CI); relay-policy with a trusted network, attachments on its defaults.
 */
describe('disk guard: a reserve of spool space for trusted clients', function () {
  this.timeout(120_000);
  let dir: string;
  let mounted = false;
  let relay: TestRelay | undefined;
  let sink: CaptureServer;
  const TRUSTED = '127.0.0.2';
  const ballast = (name: string, freeLeft: number) => {
    const free = Number(statfsSync(dir).bavail) * Number(statfsSync(dir).bsize);
    writeFileSync(path.join(dir, name), Buffer.alloc(Math.max(0, free - freeLeft)));
  };
  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs and must run as root (CI does)');
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-reserve-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=32m,mode=0700', 'tmpfs', dir]);
    mounted = true;
    const hosted = await hostedRelay({
      builtins: { 'relay-policy': relayPolicy, attachments },
      spoolDir: path.join(dir, 'spool'),
      domain: 'example.test',
      policy: { trustedNetworks: [`${TRUSTED}/32`] },
      plugins: [{ use: 'attachments', with: { tempDir: path.join(dir, 'att') } }],
      config: { limits: { messageSize: '4MB' }, spool: { minFree: '12MB', reserve: '8MB' } as never },
    });
    relay = hosted;
    sink = hosted.sink;
    mkdirSync(path.join(dir, 'att'));
  });
  after(async () => {
    await relay?.stop();
    await sink?.close();
    if (mounted) execFileSync('umount', [dir]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('answers a trusted client 250 while fifteen anonymous stalled-shape messages arrive at once, and leaves no temp file', async () => {
    ballast('ballast-1', 14 * 1024 * 1024); // 2 MB above minFree: the anonymous flood alone could cross it
    const shape = manySmallParts(12_000, { named: true });
    const flood = Array.from({ length: 15 }, (_, i) => rawSend(relay!.port, shape, { localAddress: `127.0.3.${i + 1}`, rcpt: 'u@example.test', chunk: 65536, timeoutMs: 30_000 }).catch((err: Error) => ({ reply: `error ${err.message}`, ms: 0, client: undefined })));
    await new Promise((r) => setTimeout(r, 50));
    const trusted = await rawSend(relay!.port, 'Subject: from a trusted server\r\n\r\nhello\r\n', { localAddress: TRUSTED, rcpt: 'u@example.test' });
    trusted.client.close();
    assert.match(trusted.reply, /^250 2\.0\.0 Ok: queued as /);
    const results = await Promise.all(flood);
    for (const r of results) r.client?.close();
    // Each is refused by its MIME structure, or (the spool already short) at MAIL FROM: never unanswered.
    for (const r of results) assert.match(r.reply, /^(552 5\.3\.4 |452 4\.3\.1 )/, r.reply);
    await waitUntil(() => readdirSync(path.join(dir, 'spool', 'tmp')).length === 0, 'no spool temp file', 5000);
    assert.deepEqual(readdirSync(path.join(dir, 'att')), []);
  });

  it('refuses anonymous clients with 452 4.3.1 below spool.minFree but still queues and delivers for a trusted client', async () => {
    ballast('ballast-2', 8 * 1024 * 1024); // between minFree − reserve (4 MB) and minFree (12 MB)
    await new Promise((r) => setTimeout(r, 150)); // past the guard's 100 ms reuse window
    const anon = await rawSend(relay!.port, 'Subject: anonymous\r\n\r\nhello\r\n', { rcpt: 'u@example.test' });
    anon.client.close();
    assert.equal(anon.reply, '452 4.3.1 Insufficient system storage');
    const before = sink.messages.length;
    const trusted = await rawSend(relay!.port, 'Subject: trusted while short\r\n\r\nhello\r\n', { localAddress: TRUSTED, rcpt: 'u@example.test' });
    trusted.client.close();
    assert.match(trusted.reply, /^250 2\.0\.0 Ok: queued as /);
    await sink.waitFor(before + 1, 10_000);
    assert.match(sink.messages.at(-1)!.raw.toString(), /Subject: trusted while short/);
    ballast('ballast-3', 3 * 1024 * 1024); // below minFree − reserve: trusted clients are refused too
    await new Promise((r) => setTimeout(r, 150));
    const last = await rawSend(relay!.port, 'Subject: trusted, full\r\n\r\nhello\r\n', { localAddress: TRUSTED, rcpt: 'u@example.test' });
    last.client.close();
    assert.equal(last.reply, '452 4.3.1 Insufficient system storage');
  });
});

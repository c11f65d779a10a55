import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { definePlugin } from '@portcullis/core';
import { hostedRelay, waitUntil, type CaptureServer, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import { rawSend } from './support/raw-send.js';

/** A part screener, so the MIME pass runs too while the disk fills; it replaces parts of one made-up type (the rewrite pass). */
const partScreener = definePlugin({
  name: 'part-screener',
  setup: () => ({
    data: () => ({
      part: (part) => ({ update: () => undefined, done: async () => (part.contentType === 'application/x-replace-me' ? { action: 'replace' as const, notice: 'removed by the test' } : undefined) }),
    }),
  }),
});

const message = (id: string, bytes: number) =>
  `Subject: ${id}\r\nMessage-ID: <${id}@remote.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n` + ('x'.repeat(998) + '\r\n').repeat(Math.ceil(bytes / 1000));

/**
 * The spool on a small tmpfs that this test mounts (it runs as root, like CI) and unmounts after.
 * A next hop that defers keeps everything in the queue, so concurrent clients fill the disk.
 */
describe('a full disk while receiving', function () {
  this.timeout(120_000);
  const mnt = mkdtempSync(path.join(os.tmpdir(), 'portcullis-tmpfs-'));
  let sink: CaptureServer;
  let relay: HostedRelay;
  let deferring = true;
  before(async function () {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs and must run as root');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', mnt]);
    relay = await hostedRelay({
      spoolDir: path.join(mnt, 'spool'),
      builtins: { 'relay-policy': relayPolicy, 'part-screener': partScreener },
      domain: 'example.com',
      capture: { onData: () => (deferring ? [451, '4.3.0 not now'] : undefined) },
      plugins: [{ use: 'part-screener' }],
      config: {
        // The MAIL FROM free-space guard is off here: this test is about ENOSPC while receiving.
        spool: { minFree: 0 },
        delivery: { retrySchedule: ['1h'] },
      },
    });
    sink = relay.sink;
  });
  after(async () => {
    await relay?.close();
    try {
      execFileSync('umount', [mnt]);
    } finally {
      rmSync(mnt, { recursive: true, force: true });
    }
  });

  it('answers 452 4.3.1 once the spool is full, never crashes, delivers every acknowledged message, and serves again when space returns', async () => {
    const accepted: string[] = [];
    const replies: string[] = [];
    let n = 0;
    // Four clients, 1 MB messages, until each has seen two refusals (bounded: at most 15 each).
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        let refused = 0;
        for (let i = 0; i < 15 && refused < 2; i++) {
          const id = `m${n++}`;
          const { reply, client } = await rawSend(relay.port, message(id, 1_000_000), { chunk: 65536, timeoutMs: 20_000 });
          client.close();
          replies.push(reply);
          if (reply.startsWith('250 ')) accepted.push(id);
          else refused++;
        }
      }),
    );
    const refusals = replies.filter((r) => !r.startsWith('250 '));
    assert.ok(refusals.length >= 8, `expected refusals, got ${JSON.stringify(replies)}`);
    for (const r of refusals) assert.equal(r, '452 4.3.1 Insufficient system storage');
    assert.ok(accepted.length >= 3, `accepted ${accepted.length}`);
    assert.deepEqual(readdirSync(path.join(relay.spoolDir, 'tmp')), []);

    // Space returns (the next hop takes the queue): the relay serves again by itself.
    deferring = false;
    relay.relay.queue.flush();
    await sink.waitFor(accepted.length, 30_000);
    const delivered = sink.messages.map((m) => /Message-ID: <(m\d+)@/.exec(m.raw.toString('latin1'))![1]).sort();
    assert.deepEqual(delivered, [...accepted].sort());
    await waitUntil(() => readdirSync(path.join(relay.spoolDir, 'queue')).filter((f) => f.endsWith('.msg')).length === 0, 'the queue to empty', 10_000);
    const { reply, client } = await rawSend(relay.port, message('after', 1_000_000), { chunk: 65536 });
    client.close();
    assert.match(reply, /^250 2\.0\.0 Ok: queued as /);
    await sink.waitFor(accepted.length + 1, 10_000);
  });

  it('answers 452 4.3.1 when the disk is already full at DATA, and 250 after the space is freed', async () => {
    const filler = path.join(mnt, 'filler');
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=1M', 'count=20'], { stdio: 'ignore' });
    } catch {
      /* dd stops with ENOSPC: the disk is full, as wanted */
    }
    const full = await rawSend(relay.port, message('full', 200_000), { chunk: 65536 });
    full.client.close();
    assert.equal(full.reply, '452 4.3.1 Insufficient system storage');
    assert.deepEqual(readdirSync(path.join(relay.spoolDir, 'tmp')), []);
    rmSync(filler);
    writeFileSync(path.join(mnt, 'marker'), 'space is back');
    const ok = await rawSend(relay.port, message('freed', 200_000), { chunk: 65536 });
    ok.client.close();
    assert.match(ok.reply, /^250 /);
  });

  it('answers 452 4.3.1 when the disk fills during the rewrite pass (a replaced part), then 250 once space returns', async () => {
    await waitUntil(() => readdirSync(path.join(relay.spoolDir, 'queue')).length === 0, 'the queue to empty', 10_000);
    const msg =
      'Subject: rewrite\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="r"\r\n\r\n' +
      `--r\r\nContent-Type: text/plain\r\n\r\n${('y'.repeat(998) + '\r\n').repeat(1000)}` +
      '--r\r\nContent-Type: application/x-replace-me\r\n\r\nreplace me\r\n--r--\r\n';
    // Room for the received copy (1 MB), not for the rewritten one next to it.
    const { bavail, bsize } = statfsSync(mnt);
    const filler = path.join(mnt, 'filler2');
    writeFileSync(filler, Buffer.alloc(Math.max(0, bavail * bsize - 1_600_000)));
    const full = await rawSend(relay.port, msg, { chunk: 65536 });
    full.client.close();
    assert.equal(full.reply, '452 4.3.1 Insufficient system storage');
    assert.deepEqual(readdirSync(path.join(relay.spoolDir, 'tmp')), []);
    rmSync(filler);
    const before = sink.messages.length;
    const ok = await rawSend(relay.port, msg, { chunk: 65536 });
    ok.client.close();
    assert.match(ok.reply, /^250 /);
    const [m] = (await sink.waitFor(before + 1, 10_000)).slice(before);
    assert.match(m!.raw.toString('latin1'), /removed by the test/);
    assert.doesNotMatch(m!.raw.toString('latin1'), /replace me/);
  });
});

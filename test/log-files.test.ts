import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger, parseConfig, Relay } from '@portcullis/core';
import { createLogFile, LOG_WRITE_CHUNK, nextBoundary } from '@portcullis/core/internal';
import { CaptureServer, sendMail, waitUntil } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import { adminGet, key, parseMetrics } from './support/admin.js';

/** Sends `n` messages over `parallel` connections at a time; returns the replies. */
async function load(port: number, n: number, parallel: number): Promise<string[]> {
  const replies: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < n) {
        const i = next++;
        const r = await sendMail({ port, from: `sender${i}@client.test`, to: `user${i % 7}@example.com`, subject: `load ${i}`, text: `message ${i} `.repeat(20) });
        replies.push(r.response);
      }
    }),
  );
  return replies;
}

async function startRelay(logDir: string, file: { size: number; files: number; buffer: number }, nexthop: string) {
  const spool = mkdtempSync(path.join(os.tmpdir(), 'portcullis-logtest-spool-'));
  const logFile = await createLogFile({ path: path.join(logDir, 'relay.log'), ...file }, logDir);
  const logger = createLogger('info', logFile.stream);
  const config = parseConfig({
    hostname: 'relay.test',
    listen: [{ host: '127.0.0.1', port: 0, greetingDelay: 0 }],
    spool: { dir: spool },
    admin: { enabled: true, port: 0 },
    plugins: [{ use: 'relay-policy', with: { domains: { 'example.com': { nexthop, tls: 'none' } } } }],
  });
  const relay = await Relay.create({ config, logger, logFile, builtins: { 'relay-policy': relayPolicy } });
  await relay.start();
  return {
    relay,
    logFile,
    port: relay.addresses()[0]!.port,
    async stop() {
      await relay.stop();
      // On a full disk the flush may not complete: never wait for it long.
      await Promise.race([new Promise<void>((r) => logFile.stream.flush(() => r())), new Promise((r) => setTimeout(r, 1000))]);
      const s = logFile.stream as unknown as { end(): void; destroy?(): void };
      try {
        s.end();
      } catch {
        s.destroy?.();
      }
      await new Promise((r) => setTimeout(r, 100));
      rmSync(spool, { recursive: true, force: true });
    },
  };
}

describe('log files', function () {
  this.timeout(120_000);
  let nexthop: CaptureServer;
  before(async () => (nexthop = await CaptureServer.start()));
  after(async () => nexthop?.close());

  it('rotate at their size limit under load and never number more than the retention count', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-logs-'));
    const r = await startRelay(dir, { size: 32 * 1024, files: 4, buffer: 4 * 1024 * 1024 }, nexthop.address);
    try {
      // Enough log lines for at least five rotations even when each file overshoots (see below).
      const messages = 900;
      const before = nexthop.messages.length;
      const replies = await load(r.port, messages, 10);
      assert.equal(replies.filter((x) => /^250 /.test(x)).length, messages);
      await nexthop.waitFor(before + messages, 60_000);
      // The last lines and the last rotation's clean-up land after flush() calls back (sonic-boom with
      // minLength 0 calls back at once): waited for, bounded, instead of a fixed pause.
      const logFiles = () => readdirSync(dir).filter((f) => /^relay\.\d+\.log$/.test(f)).sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1]));
      await waitUntil(() => logFiles().length === 4, 'four log files kept', 3000).catch(() => undefined);
      const files = logFiles();
      assert.equal(files.length, 4, `files: ${files.join(', ')}`);
      const numbers = files.map((f) => Number(f.split('.')[1]));
      assert.ok(numbers.at(-1)! > 4 && numbers[0]! > 1, `the log rotated more often than it keeps files, and removed the oldest (kept: ${files.join(', ')})`);
      // Every closed file stopped at the limit: the switch follows the write that crossed it, so a
      // file holds at most one more write chunk (16 KB), however busy the process is.
      for (const f of files.slice(0, -1)) assert.ok(statSync(path.join(dir, f)).size <= 32 * 1024 + LOG_WRITE_CHUNK, `${f}: ${statSync(path.join(dir, f)).size} bytes`);
      // The lines are the relay's JSON log: the newest file holds transaction lines.
      // (The newest file is empty when the very last write crossed the limit: then the one before it.)
      const newestWithLines = files.map((f) => readFileSync(path.join(dir, f), 'utf8')).filter((t) => t.length > 0).at(-1) ?? '';
      const last = newestWithLines.trim().split('\n').map((l) => JSON.parse(l) as { msg: string });
      assert.ok(last.length > 0);
      assert.equal(r.logFile.dropped, 0);
    } finally {
      await r.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('continue the newest file after a restart, remove files beyond the count (earlier runs included), and rotate on a schedule', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-logs-'));
    try {
      const { writeFileSync } = await import('node:fs');
      for (const n of [1, 2, 3, 4, 5]) writeFileSync(path.join(dir, `relay.${n}.log`), `{"old":${n}}\n`);
      // Start just after a whole two seconds, so the first scheduled rotation is ~2 s away.
      await new Promise((res) => setTimeout(res, 2000 - (Date.now() % 2000) + 20));
      const f = await createLogFile({ path: path.join(dir, 'relay.log'), size: 1024 * 1024, files: 3, buffer: 1024 * 1024, frequency: 2000 }, dir);
      f.stream.write('{"new":1}\n');
      await new Promise<void>((res) => f.stream.flush(() => res()));
      // Files beyond the count go asynchronously, and so do the lines (sonic-boom's flush() calls back
      // at once with minLength 0, before the write): both waited for, bounded well inside the 2 s
      // period so a loaded machine is not mistaken for a missed removal, not assumed after a pause.
      const files = () => readdirSync(dir).sort().join(' ');
      const continued = () => readFileSync(path.join(dir, 'relay.5.log'), 'utf8');
      await waitUntil(() => files() === 'relay.3.log relay.4.log relay.5.log' && continued() === '{"old":5}\n{"new":1}\n', 'relay.1 and relay.2 removed, the line in relay.5', 1500).catch(() => undefined);
      assert.deepEqual(readdirSync(dir).sort(), ['relay.3.log', 'relay.4.log', 'relay.5.log']);
      assert.equal(continued(), '{"old":5}\n{"new":1}\n');
      // frequency 2s: the next multiple of two seconds starts relay.6.log (and relay.3.log goes).
      await new Promise((res) => setTimeout(res, 2000 - (Date.now() % 2000) + 300));
      f.stream.write('{"new":2}\n');
      await new Promise<void>((res) => f.stream.flush(() => res()));
      // The line reaches the new file after flush() has called back (above): waited for, bounded.
      const newest = () => readFileSync(path.join(dir, 'relay.6.log'), 'utf8');
      await waitUntil(() => files() === 'relay.4.log relay.5.log relay.6.log' && newest() === '{"new":2}\n', 'relay.3 removed and the line in relay.6', 1500).catch(() => undefined);
      assert.deepEqual(readdirSync(dir).sort(), ['relay.4.log', 'relay.5.log', 'relay.6.log']);
      assert.equal(newest(), '{"new":2}\n');
      f.stream.end();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('schedule rotations at local midnight, at the full hour, or at multiples of a period', () => {
    const t = new Date(2026, 11, 1, 13, 27, 5).getTime();
    assert.equal(nextBoundary('daily', t), new Date(2026, 11, 2).getTime());
    assert.equal(nextBoundary('hourly', t), new Date(2026, 11, 1, 14).getTime());
    assert.equal(nextBoundary(60_000, 120_000), 180_000);
    assert.equal(nextBoundary(60_000, 179_999), 180_000);
  });

  describe('on a full file system', () => {
    let mount: string;
    before(() => {
      mount = mkdtempSync(path.join(os.tmpdir(), 'portcullis-logfs-'));
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'tmpfs', mount]);
    });
    after(() => {
      // -l: a file descriptor a failed run left open must not leave the mount behind.
      execFileSync('umount', ['-l', mount]);
      rmSync(mount, { recursive: true, force: true });
    });

    it('keeps accepting and delivering mail, and counts the log lines it had to drop', async () => {
      // Retention would keep 3 × 1 MB: far more than the 128 KB the file system has.
      const r = await startRelay(mount, { size: 1024 * 1024, files: 3, buffer: 32 * 1024 }, nexthop.address);
      try {
        // Leave about 8 KB free: the log fills the rest within the first messages.
        const { statfsSync, writeFileSync } = await import('node:fs');
        const st = statfsSync(mount);
        writeFileSync(path.join(mount, 'filler'), Buffer.alloc(Math.max(0, Number(st.bavail) * Number(st.bsize) - 8192)));
        const before = nexthop.messages.length;
        const replies = await load(r.port, 200, 10);
        assert.deepEqual(replies.filter((x) => !/^250 2\.0\.0 Ok: queued as /.test(x)), [], 'every message got its 250');
        await nexthop.waitFor(before + 200, 30_000);
        assert.ok(r.logFile.writeErrors > 0, 'the disk was full (ENOSPC)');
        assert.ok(r.logFile.dropped > 0, 'lines were dropped');
        const m = parseMetrics((await adminGet(r.relay.adminAddress()!.port, '/metrics')).body);
        assert.equal(m.get(key('portcullis_log_lines_dropped_total')), r.logFile.dropped);
        assert.ok(m.get(key('portcullis_log_write_errors_total'))! > 0);
        assert.equal(m.get(key('portcullis_transactions_total', { outcome: 'accepted' })), 200);
      } finally {
        await r.stop().catch(() => undefined);
      }
    });
  });
});

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, createReadStream, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import nodemailer from 'nodemailer';
import { CaptureServer } from '@portcullis/testkit';
import { Daemon } from './support/daemon.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const MB = 1024 * 1024;

/** VmRSS and VmHWM (peak RSS) of a process, in bytes. */
function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)![1]) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** Resets VmHWM to the current RSS (Linux: write 5 to /proc/PID/clear_refs), so the next peak is this message's. */
function resetPeak(pid: number): void {
  const fd = openSync(`/proc/${pid}/clear_refs`, 'w');
  writeSync(fd, '5');
  closeSync(fd);
}

/*
 * A 50 MB message through a relay (its own process) whose milter (the pymilter test milter) reads
 * the whole body: the body streams to the milter in 64 KB chunks as it arrives, so the relay's
 * peak RSS grows by less than 64 MB; the milter saw every byte (its X-Body-Bytes header).
 */
async function startRelay(config: unknown): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--max-semi-space-size=2', path.join(here, 'support', 'relay-child.mjs'), JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /READY (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`relay exited (${code})`)));
  });
  return { child, port };
}

/*
 * A 50 MB message through a relay (its own process) whose milter (the pymilter test milter) reads
 * the whole body: the body streams to the milter in 64 KB chunks as it arrives, so the relay's
 * peak RSS grows by less than 64 MB; the milter saw every byte (its X-Body-Bytes header).
 */
describe('milter: a 50 MB message through a body-reading milter keeps the relay memory flat', function () {
  this.timeout(240_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'milter-mem-'));
  const children: ChildProcess[] = [];
  let sink: CaptureServer;
  let py: Daemon;

  before(async () => {
    py = await Daemon.pyMilter();
    sink = await CaptureServer.start();
  });
  after(async () => {
    for (const c of children) c.kill('SIGTERM');
    await sink?.close();
    await py?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const relayConfig = () => ({
    limits: { messageSize: '60MB' },
    plugins: [
      {
        use: 'milter',
        timeout: '90s',
        with: { milters: [{ address: py.address, commandTimeout: '30s', eomTimeout: '30s' }] },
      },
      { use: 'relay-policy', with: { domains: { 'dest.test': { nexthop: sink.address, tls: 'none' } } } },
    ],
  });
  // `sequential` (a second milter fed from the temp-file copy) is not measured here: it streams the
  // message twice more, and on Node 24 its peak growth came close to the bound (50-58 MB, against
  // 20-26 MB on Node 20), too close for a test that must not fail by chance. See the README.

  const HEAD = 'From: big@big.test\r\nTo: bob@dest.test\r\nSubject: count\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n';
  function bigMessage(size: number): string {
    const file = path.join(dir, `msg-${size}.eml`);
    const fd = openSync(file, 'w');
    writeSync(fd, HEAD);
    const line = 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n';
    const block = Buffer.from(line.repeat(Math.floor(MB / line.length)));
    for (let written = 0; written < size; written += block.length) writeSync(fd, block);
    closeSync(fd);
    return file;
  }
  async function send(port: number, file: string): Promise<void> {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, name: 'client.test', socketTimeout: 120_000 });
    const info = await t.sendMail({ envelope: { from: 'big@big.test', to: ['bob@dest.test'] }, raw: createReadStream(file) });
    t.close();
    assert.match(String(info.response), /^250 /);
  }
  async function measure(): Promise<string> {
    const { child, port } = await startRelay(relayConfig());
    children.push(child);
    const before = sink.messages.length;
    await send(port, bigMessage(MB)); // warm-up: code paths and the milter connection are loaded
    await sink.waitFor(before + 1);
    await new Promise((r) => setTimeout(r, 500));
    const base = memoryOf(child.pid!);
    resetPeak(child.pid!);
    const file = bigMessage(50 * MB);
    const t0 = Date.now();
    await send(port, file);
    await sink.waitFor(before + 2, 120_000);
    const after = memoryOf(child.pid!);
    const growth = after.peak - base.rss;
    process.stdout.write(`      relay RSS before ${(base.rss / MB).toFixed(1)} MB, peak during the 50 MB message ${(after.peak / MB).toFixed(1)} MB: growth ${(growth / MB).toFixed(1)} MB (sent in ${Date.now() - t0} ms)\n`);
    assert.ok(growth < 64 * MB, `peak RSS grew by ${(growth / MB).toFixed(1)} MB`);
    const got = sink.messages[before + 1]!.raw.toString('latin1');
    const bodyBytes = statSync(file).size - Buffer.byteLength(HEAD);
    assert.match(got, new RegExp(`\\r\\nX-Body-Bytes: ${bodyBytes}\\r\\n`));
    return got;
  }

  it('grows the relay peak RSS by less than 64 MB, and the milter read the whole body', async () => {
    await measure();
  });
});

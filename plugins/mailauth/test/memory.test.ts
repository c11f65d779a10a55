import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, mkdtempSync, openSync, readFileSync, rmSync, writeSync, closeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import nodemailer from 'nodemailer';
import { CaptureServer } from '@portcullis/testkit';
import { generateSigningKey } from '../src/index.js';
import { Dnsmasq } from '../../mx-router/test/support/dnsmasq.js';
import { dkimTxtLine, dkimverify } from './support/dkim-tools.js';

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
 * A 50 MB message through a relay (its own process) that DKIM-signs it with RSA-2048 and Ed25519:
 * the relay's peak RSS must grow by less than 64 MB, and the signatures must verify (python3-dkim).
 */
describe('signing a 50 MB message keeps the relay memory flat', function () {
  this.timeout(120_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mailauth-mem-'));
  let child: ChildProcess;
  let sink: CaptureServer;
  let dns: Dnsmasq;
  let port: number;

  before(async () => {
    const rsa = generateSigningKey({ domain: 'big.test', selector: 'rsa', type: 'rsa', out: path.join(dir, 'rsa.key') });
    const ed = generateSigningKey({ domain: 'big.test', selector: 'ed', type: 'ed25519', out: path.join(dir, 'ed.key') });
    dns = await Dnsmasq.start({ lines: [dkimTxtLine('big.test', 'rsa', readFileSync(rsa.file, 'utf8')), dkimTxtLine('big.test', 'ed', readFileSync(ed.file, 'utf8'))] });
    sink = await CaptureServer.start();
    const config = {
      limits: { messageSize: '60MB' },
      plugins: [
        { use: 'relay-policy', with: { domains: { 'dest.test': { nexthop: sink.address, tls: 'none' } }, trustedNetworks: ['127.0.0.1/32'] } },
        { use: 'mailauth', with: { trustedNetworks: ['127.0.0.1/32'], sign: { domains: { 'big.test': [{ selector: 'rsa', key: rsa.file }, { selector: 'ed', key: ed.file }] } } } },
      ],
    };
    // Node as the portcullis command runs it (packages/cli/README.md, "Memory").
    child = spawn(process.execPath, ['--max-semi-space-size=2', path.join(here, 'support', 'relay-child.mjs'), JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'inherit'] });
    port = await new Promise<number>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /READY (\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (code) => reject(new Error(`relay exited (${code})`)));
    });
  });
  after(async () => {
    child?.kill('SIGTERM');
    await sink?.close();
    await dns?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Writes a message of about `size` bytes (76-character base64-like lines) and returns its path. */
  function bigMessage(size: number): string {
    const file = path.join(dir, `msg-${size}.eml`);
    const fd = openSync(file, 'w');
    writeSync(fd, 'From: Big <big@big.test>\r\nTo: bob@dest.test\r\nSubject: large\r\nDate: Tue, 01 Dec 2026 09:00:00 +0000\r\nMessage-ID: <big@big.test>\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n');
    const line = 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n';
    const block = Buffer.from(line.repeat(Math.floor(MB / line.length)));
    for (let written = 0; written < size; written += block.length) writeSync(fd, block);
    closeSync(fd);
    return file;
  }

  async function send(file: string): Promise<void> {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, name: 'client.test', socketTimeout: 60_000 });
    const info = await t.sendMail({ envelope: { from: 'big@big.test', to: ['bob@dest.test'] }, raw: createReadStream(file) });
    t.close();
    assert.match(String(info.response), /^250 /);
  }

  it('grows the relay peak RSS by less than 64 MB, and both signatures verify', async () => {
    await send(bigMessage(MB)); // warm-up: code paths, TLS-free SMTP, the signer are loaded
    await sink.waitFor(1);
    await new Promise((r) => setTimeout(r, 500));
    const base = memoryOf(child.pid!);
    resetPeak(child.pid!);
    const file = bigMessage(50 * MB);
    await send(file);
    await sink.waitFor(2, 60_000);
    const after = memoryOf(child.pid!);
    const growth = after.peak - base.rss;
    process.stdout.write(`      relay RSS before ${(base.rss / MB).toFixed(1)} MB, peak during the 50 MB message ${(after.peak / MB).toFixed(1)} MB: growth ${(growth / MB).toFixed(1)} MB\n`);
    assert.ok(growth < 64 * MB, `peak RSS grew by ${(growth / MB).toFixed(1)} MB`);
    const got = sink.messages[1]!.raw;
    assert.ok(got.length > 50 * MB);
    for (const index of [0, 1]) {
      const v = await dkimverify(got, dns.port, index);
      assert.ok(v.ok, `signature ${index}: ${v.out}`);
    }
  });
});

/**
 * Memory with one very large message (`pnpm bench:big`): a relay with relay-policy + attachments +
 * clamav (a private clamd) receives one message of BIG_MB (default 100) MB — a text part and a
 * base64 attachment of random bytes, generated while it is sent — and delivers it to a counting
 * sink. Printed: the relay's RSS before (after a warm-up message), its peak while the message came
 * in, was scanned, committed and delivered (VmRSS sampled every 20 ms and the kernel's VmHWM, reset
 * before the message), and the growth. Loopback only; every child is killed by PID.
 *
 *   node bench/dist/big-message.js          BIG_MB=100 BIG_RELAY_PORT=2632 BIG_SINK_PORT=2631 BIG_CLAMD_PORT=2633
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startClamd } from './clamd.js';
import { RELAY_NODE_FLAGS } from './node-flags.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;
const MB = 1024 * 1024;
const SIZE_MB = Number(env['BIG_MB'] ?? 100);
const RELAY_PORT = Number(env['BIG_RELAY_PORT'] ?? 2632);
const SINK_PORT = Number(env['BIG_SINK_PORT'] ?? 2631);
const CLAMD_PORT = Number(env['BIG_CLAMD_PORT'] ?? 2633);

const children = new Set<ChildProcess>();
const track = (cp: ChildProcess) => (children.add(cp), cp.once('exit', () => children.delete(cp)), cp);
const killAll = () => {
  for (const cp of children) if (cp.pid && cp.exitCode === null && cp.signalCode === null) cp.kill('SIGKILL');
};
process.on('exit', killAll);

function mem(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'latin1');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

async function waitPort(port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One SMTP transaction; `body` writes the message (dot-stuffing is not needed: base64 and plain text). */
function send(port: number, body: (sock: net.Socket) => Promise<void>): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.setNoDelay(true);
    let buf = '';
    const steps = ['EHLO big.example\r\n', 'MAIL FROM:<big@source.example>\r\n', 'RCPT TO:<rcpt@hosted.example>\r\n', 'DATA\r\n'];
    let step = -1;
    s.on('error', reject);
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (!/(^|\r\n)\d{3} [^\r\n]*\r\n$/.test(buf)) return;
      const reply = buf;
      buf = '';
      if (step === steps.length) {
        s.end('QUIT\r\n');
        return resolve(reply.trim());
      }
      if (!/^[23]/.test(reply)) return reject(new Error(`step ${step}: ${reply.trim()}`));
      step++;
      if (step < steps.length) return void s.write(steps[step]!);
      body(s).then(() => s.write('.\r\n'), reject);
      step = steps.length;
    });
  });
}

/** A multipart message of about `mb` MB: a short text part and a base64 attachment of random bytes. */
function bigMessage(mb: number) {
  return async (s: net.Socket) => {
    const w = (x: string | Buffer) => (s.write(x) ? Promise.resolve() : new Promise<void>((r) => s.once('drain', () => r())));
    await w('From: <big@source.example>\r\nTo: <rcpt@hosted.example>\r\nSubject: one big message\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="big-b"\r\n\r\n--big-b\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n--big-b\r\nContent-Type: application/octet-stream; name="data.bin"\r\nContent-Disposition: attachment; filename="data.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n');
    const raw = Math.floor((mb * MB * 3) / 4 / 57) * 57; // base64 of `raw` bytes in 76-column lines ≈ mb MB
    for (let sent = 0; sent < raw; ) {
      const n = Math.min(57 * 2000, raw - sent);
      await w(randomBytes(n).toString('base64').replace(/.{76}/g, '$&\r\n') + '\r\n');
      sent += n;
    }
    await w('--big-b--\r\n');
  };
}

async function main(): Promise<void> {
  process.stderr.write(`starting clamd on 127.0.0.1:${CLAMD_PORT} ...\n`);
  const clamd = await startClamd(CLAMD_PORT, track);
  const sink = track(fork(path.join(HERE, 'sink.js'), [`127.0.0.1:${SINK_PORT}`], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  let delivered = 0;
  sink.on('message', (m: { count?: number }) => (delivered = m.count ?? delivered));
  const maxSize = `${SIZE_MB + 20}MB`;
  const relay = track(
    spawn(process.execPath, [...RELAY_NODE_FLAGS, path.join(HERE, 'relay-main.js'), '--listen', `127.0.0.1:${RELAY_PORT}`, '--upstream', `127.0.0.1:${SINK_PORT}`, '--plugins', 'relay-policy,attachments,clamav', '--clamd', clamd.address, '--max-size', maxSize], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, NODE_ENV: 'production' },
    }),
  );
  try {
    await waitPort(SINK_PORT, 10_000);
    await waitPort(RELAY_PORT, 30_000);
    const warm = await send(RELAY_PORT, bigMessage(1));
    if (!warm.startsWith('250')) throw new Error(`warm-up refused: ${warm}`);
    while (delivered < 1) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 1000));
    const before = mem(relay.pid!);
    try {
      writeFileSync(`/proc/${relay.pid}/clear_refs`, '5'); // VmHWM := VmRSS
    } catch {
      /* not permitted: the sampled peak still counts */
    }
    let peak = before.rss;
    const sampler = setInterval(() => (peak = Math.max(peak, mem(relay.pid!).rss)), 20);
    const t0 = Date.now();
    const reply = await send(RELAY_PORT, bigMessage(SIZE_MB));
    const accepted = Date.now() - t0;
    const deadline = Date.now() + 300_000;
    while (reply.startsWith('250') && delivered < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const total = Date.now() - t0;
    clearInterval(sampler);
    const after = mem(relay.pid!);
    peak = Math.max(peak, after.hwm);
    const f = (b: number) => (b / MB).toFixed(1);
    console.log(`# one ${SIZE_MB} MB message (text + base64 attachment of random bytes) through relay-policy + attachments + clamav (clamd ${clamd.address}); Node ${process.version}`);
    console.log(`reply: ${reply}`);
    console.log(`accepted after ${(accepted / 1000).toFixed(1)} s, delivered after ${(total / 1000).toFixed(1)} s (${delivered - 1} delivered)`);
    console.log(`relay RSS before ${f(before.rss)} MB, peak ${f(peak)} MB, growth ${f(peak - before.rss)} MB`);
    if (!reply.startsWith('250') || delivered < 2) process.exitCode = 2;
  } finally {
    relay.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    await clamd.stop();
    killAll();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`big-message: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  killAll();
  process.exit(1);
});

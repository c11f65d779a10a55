/**
 * Memory benchmark: one 50 MB attachment through a relay running the attachments plugin, the relay
 * in a child process; prints its RSS growth (peak VmHWM during the run minus VmRSS before it).
 *
 *   cd plugins/attachments && npx tsx bench/large-attachment.ts [sizeMB]
 *
 * BENCH_WITHOUT_PLUGIN=1 runs the same relay without the plugin, for comparison.
 *
 * Two runs: random bytes (screened from a prefix, never written to a temp file) and a stored zip
 * of random bytes (written to a temp file and opened with yauzl, members sniffed).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { CaptureServer, sendMail } from '@portcullis/testkit';
import yazl from 'yazl';

const MB = 1024 * 1024;
const sizeMb = Number(process.argv[2] ?? 50);
const here = path.dirname(fileURLToPath(import.meta.url));

function memOf(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rss: kb('VmRSS') * 1024, hwm: kb('VmHWM') * 1024 };
}

function message(name: string, type: string, data: Buffer): Buffer {
  const b = 'bench-boundary';
  const head = [
    'From: a@remote.test', 'To: bob@example.com', `Subject: large ${name}`, 'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${b}"`, '', `--${b}`, 'Content-Type: text/plain', '', 'big one', `--${b}`,
    `Content-Type: ${type}; name="${name}"`, 'Content-Transfer-Encoding: base64', `Content-Disposition: attachment; filename="${name}"`, '', '',
  ].join('\r\n');
  const body = data.toString('base64').replace(/.{76}/g, '$&\r\n');
  return Buffer.concat([Buffer.from(head), Buffer.from(body), Buffer.from(`\r\n--${b}--\r\n`)]);
}

async function storedZip(data: Buffer): Promise<Buffer> {
  const z = new yazl.ZipFile();
  z.addBuffer(data, 'big/random.bin', { compress: false });
  z.end();
  const parts: Buffer[] = [];
  for await (const c of z.outputStream as AsyncIterable<Buffer>) parts.push(c);
  return Buffer.concat(parts);
}

async function run(label: string, raw: Buffer): Promise<number> {
  const sink = await CaptureServer.start({ host: '127.0.0.1' });
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'relay-child.ts'), sink.address], { stdio: ['ignore', 'pipe', 'inherit'], cwd: path.join(here, '..') });
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('relay child did not start in 30 s')), 30_000);
    child.stdout.on('data', (d: Buffer) => {
      const m = /PORT (\d+)/.exec(d.toString());
      if (m) (clearTimeout(t), resolve(Number(m[1])));
    });
    child.once('exit', (code) => reject(new Error(`relay child exited with ${code}`)));
  });
  try {
    // Warm up (JIT, mailsplit, file-type loaded) with a small message, then settle.
    const warm = await sendMail({ port, from: 'a@remote.test', to: 'bob@example.com', raw: message('warm.bin', 'application/octet-stream', randomBytes(64 * 1024)) });
    if (!warm.ok) throw new Error(`warm-up failed: ${warm.response}`);
    await sink.waitFor(1, 30_000);
    await new Promise((r) => setTimeout(r, 500));
    const before = memOf(child.pid!);
    let peak = before.rss;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, memOf(child.pid!).rss);
      } catch {
        /* child gone */
      }
    }, 25);
    const t0 = Date.now();
    const r = await sendMail({ port, from: 'a@remote.test', to: 'bob@example.com', raw });
    if (!r.ok) throw new Error(`large message refused: ${r.response}`);
    const [, big] = await sink.waitFor(2, 120_000);
    const elapsed = Date.now() - t0;
    clearInterval(sampler);
    const after = memOf(child.pid!);
    const hwmGrowth = Math.max(after.hwm - before.rss, peak - before.rss);
    if (!big!.raw.includes(raw.subarray(raw.length - 4096))) throw new Error('the large message did not arrive intact');
    console.log(
      `${label}: message ${(raw.length / MB).toFixed(1)} MB (attachment ${sizeMb} MB), reply "${r.response}", delivered in ${elapsed} ms; ` +
        `relay RSS before ${(before.rss / MB).toFixed(1)} MB, peak ${(Math.max(after.hwm, peak) / MB).toFixed(1)} MB, growth ${(hwmGrowth / MB).toFixed(1)} MB`,
    );
    return hwmGrowth;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await sink.close();
  }
}

const data = randomBytes(sizeMb * MB);
const g1 = await run('random.bin', message('random.bin', 'application/octet-stream', data));
const g2 = await run('archive.zip', message('archive.zip', 'application/zip', await storedZip(data)));
const worst = Math.max(g1, g2);
console.log(`worst RSS growth: ${(worst / MB).toFixed(1)} MB (${worst < 64 * MB ? 'under' : 'OVER'} the 64 MB budget)`);
process.exit(worst < 64 * MB ? 0 : 1);

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, createReadStream, openSync, readFileSync, writeSync } from 'node:fs';
import nodemailer from 'nodemailer';

const MB = 1024 * 1024;

/** VmRSS and VmHWM (peak RSS) of a process, in bytes (Linux, /proc/PID/status). */
export function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)![1]) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** Resets VmHWM to the current RSS (Linux: write 5 to /proc/PID/clear_refs), so the next peak is the next work's. */
export function resetPeak(pid: number): void {
  const fd = openSync(`/proc/${pid}/clear_refs`, 'w');
  try {
    writeSync(fd, '5');
  } finally {
    closeSync(fd);
  }
}

/**
 * How far process `pid`'s resident memory peaks above its settled level while `during` runs, in
 * bytes: RSS read after a 500 ms pause (what the work before left behind settles), the peak reset,
 * `during` awaited, the peak read. For "memory does not grow with message size" tests.
 */
export async function peakGrowthDuring(pid: number, during: () => Promise<void>): Promise<{ before: number; peak: number; growth: number }> {
  await new Promise((r) => setTimeout(r, 500));
  const before = memoryOf(pid).rss;
  resetPeak(pid);
  await during();
  const peak = memoryOf(pid).peak;
  return { before, peak, growth: peak - before };
}

/** `relay RSS before 80.1 MB, peak during the 50 MB message 101.3 MB: growth 21.2 MB`. */
export function describeGrowth(m: { before: number; peak: number; growth: number }, what: string): string {
  return `relay RSS before ${(m.before / MB).toFixed(1)} MB, peak during ${what} ${(m.peak / MB).toFixed(1)} MB: growth ${(m.growth / MB).toFixed(1)} MB`;
}

/**
 * Writes a message of at least `size` bytes to `file`: `head` (its header section and the blank
 * line, CRLF), then 76-character base64-alphabet lines, written 1 MB at a time (the test's own
 * memory stays flat too). Returns `file`.
 */
export function writeBigMessage(file: string, head: string, size: number): string {
  const fd = openSync(file, 'w');
  try {
    writeSync(fd, head);
    const line = 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n';
    const block = Buffer.from(line.repeat(Math.floor(MB / line.length)));
    for (let written = 0; written < size; written += block.length) writeSync(fd, block);
  } finally {
    closeSync(fd);
  }
  return file;
}

/** Streams the message in `file` over SMTP (nodemailer, never the whole file in memory); the final reply. */
export async function sendFile(o: { port: number; from: string; to: string[]; file: string; socketTimeout?: number }): Promise<string> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: o.port, secure: false, ignoreTLS: true, name: 'client.test', socketTimeout: o.socketTimeout ?? 60_000 });
  try {
    const info = await t.sendMail({ envelope: { from: o.from, to: o.to }, raw: createReadStream(o.file) });
    return String(info.response);
  } finally {
    t.close();
  }
}

/**
 * A relay in a process of its own, so that its memory can be measured alone: `script` is a plain
 * JavaScript file (built packages, run by `node` as in production: under tsx the compiler's own
 * garbage would count as the relay's) that starts a relay from the JSON config in argv[2], prints
 * `READY <port>` and stops on SIGTERM. Node runs with `--max-semi-space-size=2`, as the portcullis
 * command runs it (packages/cli/README.md, "Memory").
 */
export class RelayChild {
  private constructor(readonly child: ChildProcess, readonly port: number) {}

  get pid(): number {
    return this.child.pid!;
  }

  static async start(script: string, config: unknown, readyMs = 30_000): Promise<RelayChild> {
    const child = spawn(process.execPath, ['--max-semi-space-size=2', script, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        const timer = setTimeout(() => reject(new Error(`${script} printed no READY line in ${readyMs} ms`)), readyMs);
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /READY (\d+)/.exec(out);
          if (m) (clearTimeout(timer), resolve(Number(m[1])));
        });
        child.once('exit', (code) => (clearTimeout(timer), reject(new Error(`relay exited (${code})`))));
      });
      return new RelayChild(child, port);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
  }

  /** SIGTERM: the script stops its relay and exits. */
  stop(): void {
    this.child.kill('SIGTERM');
  }
}

import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import SonicBoomModule from 'sonic-boom';
import type { RelayConfig } from '../config/schema.js';

type LogFileConfig = NonNullable<RelayConfig['log']['file']>;

// A CommonJS module: Node's ESM loader offers only its default export (tsx would also take the named one).
const SonicBoom = (SonicBoomModule as unknown as { SonicBoom: typeof import('sonic-boom').SonicBoom }).SonicBoom;

/** What pino writes to: a SonicBoom stream with the accounting around it. */
export interface LogFileDestination {
  /** The stream pino writes into (has `write`, `flush`, `end`). */
  readonly stream: NodeJS.WritableStream & { flush(cb?: (err?: Error) => void): void; end(): void };
  readonly file: string;
  readonly dir: string;
  /** Lines dropped since start (disk full or too slow), and write/rotation errors. */
  dropped: number;
  writeErrors: number;
  /** Set by the relay, to count in /metrics as it happens. */
  onDrop?: () => void;
  onError?: (err: Error) => void;
}

/** The most SonicBoom writes in one call: a closed file exceeds `size` by less than this. */
export const LOG_WRITE_CHUNK = 16 * 1024;

/**
 * A log file that rotates by size (and optionally on a schedule) and keeps `files` files
 * (`relay.log` → `relay.1.log`, `relay.2.log`, …, the highest number is the current file).
 *
 * The writing is SonicBoom's (pino's own destination): asynchronous, so the SMTP path never waits
 * for the disk, with a bounded buffer (`maxLength`) that drops a line instead of growing when the
 * disk is slow or full (a `drop` event we count); on ENOSPC it keeps the unwritten lines and retries
 * on the next write, so writing resumes by itself once space is freed. It runs in this process, not
 * in a pino worker thread, on purpose: a worker transport blocks the main thread when its buffer fills.
 *
 * The rotation is ours, not pino-roll's: pino-roll waits for the stream to go idle ('drain') before
 * it switches files, and under sustained load the buffer never empties, so a 32 KB file grew to
 * 175 KB in our load test (the total on disk is then not bounded by `size × files`). Here the switch
 * happens after the write that crossed the limit (SonicBoom's `reopen` waits for the write in
 * flight; everything still buffered goes to the new file), so a closed file is at most `size` plus
 * one write chunk (16 KB). Old files are removed right after each switch, files of earlier runs
 * included; a restart appends to the newest file. An error never reaches the relay: it is counted
 * and reported to stderr at most once a minute.
 */
export async function createLogFile(cfg: LogFileConfig, configDir: string): Promise<LogFileDestination> {
  const abs = path.resolve(configDir, cfg.path);
  const dir = path.dirname(abs);
  mkdirSync(dir, { recursive: true });
  const ext = path.extname(abs);
  const stem = path.basename(abs, ext);
  const numbered = new RegExp(`^${escapeRegExp(stem)}\\.(\\d+)${escapeRegExp(ext)}$`);
  const nameOf = (n: number) => path.join(dir, `${stem}.${n}${ext}`);
  const existing = () =>
    readdirSync(dir)
      .map((f) => numbered.exec(f))
      .filter((m): m is RegExpExecArray => !!m)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);

  let number = existing().at(-1) ?? 1;
  let written = sizeOf(nameOf(number));
  if (written >= cfg.size) (number++, (written = 0));
  const stream = new SonicBoom({ dest: nameOf(number), mkdir: true, maxLength: cfg.buffer, maxWrite: LOG_WRITE_CHUNK, sync: false });

  let lastReport = 0;
  const dest: LogFileDestination = {
    stream: stream as unknown as LogFileDestination['stream'],
    file: abs,
    dir,
    dropped: 0,
    writeErrors: 0,
  };
  const failed = (err: Error) => {
    dest.writeErrors++;
    dest.onError?.(err);
    const now = Date.now();
    if (now - lastReport > 60_000) {
      lastReport = now;
      process.stderr.write(`portcullis: cannot write the log file ${abs}: ${err.message} (lines are kept in memory up to log.file.buffer, then dropped and counted)\n`);
    }
  };
  stream.on('drop', () => {
    dest.dropped++;
    dest.onDrop?.();
  });
  stream.on('error', failed);

  let closed = false;
  const removeOld = async () => {
    const numbers = existing();
    for (const n of numbers.slice(0, Math.max(0, numbers.length - cfg.files))) await rm(nameOf(n), { force: true });
  };
  const rotate = () => {
    if (closed || (stream as unknown as { destroyed?: boolean }).destroyed) return;
    number++;
    written = 0;
    try {
      stream.reopen(nameOf(number));
    } catch (err) {
      failed(err as Error);
      return;
    }
    stream.once('ready', () => void removeOld().catch(failed));
  };
  stream.on('write', (n: number) => {
    written += n;
    if (written >= cfg.size) rotate();
  });
  stream.once('ready', () => void removeOld().catch(failed));

  if (cfg.frequency !== undefined) {
    const period = cfg.frequency;
    let timer: NodeJS.Timeout | undefined;
    const schedule = () => {
      timer = setTimeout(() => {
        // A period in which nothing was written does not start an empty file.
        if (written > 0) rotate();
        schedule();
      }, Math.max(50, nextBoundary(period, Date.now()) - Date.now()));
      timer.unref();
    };
    schedule();
    stream.once('close', () => {
      closed = true;
      if (timer) clearTimeout(timer);
    });
  } else stream.once('close', () => (closed = true));
  return dest;
}

/** The next rotation time: the next local midnight, the next full hour, or the next multiple of the period since the epoch. */
export function nextBoundary(period: 'daily' | 'hourly' | number, now: number): number {
  const d = new Date(now);
  if (period === 'daily') return new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1).getTime();
  if (period === 'hourly') return new Date(d.getFullYear(), d.getMonth(), d.getDate(), d.getHours() + 1).getTime();
  return (Math.floor(now / period) + 1) * period;
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

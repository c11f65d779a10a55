import { mkdirSync } from 'node:fs';
import path from 'node:path';
import roll from 'pino-roll';
import type { RelayConfig } from './config-schema.js';

type LogFileConfig = NonNullable<RelayConfig['log']['file']>;

/** What pino writes to: pino-roll's SonicBoom stream with the accounting around it. */
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

/**
 * A log file that rotates by size (and optionally on a schedule) and keeps `files` files, through
 * pino-roll. It runs in this process, not in a pino worker thread, on purpose: SonicBoom writes
 * asynchronously (the SMTP path never waits for the disk), and its bounded buffer (`maxLength`)
 * drops a line instead of growing when the disk is slow or full, with a `drop` event we count. A
 * worker-thread transport would instead block the main thread when its buffer fills. On ENOSPC
 * SonicBoom keeps the unwritten lines and retries on the next write, so writing resumes by itself
 * once space is freed. An error never reaches the relay: it is counted and reported to stderr at
 * most once a minute.
 */
export async function createLogFile(cfg: LogFileConfig, configDir: string): Promise<LogFileDestination> {
  const abs = path.resolve(configDir, cfg.path);
  const dir = path.dirname(abs);
  mkdirSync(dir, { recursive: true });
  const ext = path.extname(abs);
  const base = ext ? abs.slice(0, -ext.length) : abs;
  const stream = await roll({
    file: base,
    extension: ext || undefined,
    size: `${Math.max(1, Math.floor(cfg.size / 1024))}k`,
    frequency: cfg.frequency,
    // pino-roll's count is the files kept besides the current one; removeOtherLogFiles also
    // counts the files earlier runs left, so a restart does not raise the total.
    limit: { count: cfg.files - 1, removeOtherLogFiles: true },
    mkdir: true,
    maxLength: cfg.buffer,
    sync: false,
  });
  let lastReport = 0;
  const dest: LogFileDestination = {
    stream: stream as unknown as LogFileDestination['stream'],
    file: abs,
    dir,
    dropped: 0,
    writeErrors: 0,
  };
  stream.on('drop', () => {
    dest.dropped++;
    dest.onDrop?.();
  });
  stream.on('error', (err: Error) => {
    dest.writeErrors++;
    dest.onError?.(err);
    const now = Date.now();
    if (now - lastReport > 60_000) {
      lastReport = now;
      process.stderr.write(`portcullis: cannot write the log file ${abs}: ${err.message} (lines are kept in memory up to log.file.buffer, then dropped and counted)\n`);
    }
  });
  return dest;
}

import type { RelayConfig } from '../config/schema.js';
import { createLogFile, type LogFileDestination } from './log-destination.js';
import { createLogger, stdoutDestination, type Logger } from './logger.js';

/** Where a process that owns the log stream writes, and the logger over it. */
export interface OpenedLog {
  readonly log: Logger;
  /** The stream the logger writes into; the worker mode's primary also writes its workers' lines here. */
  readonly dest: NodeJS.WritableStream & { flush(cb?: (err?: Error) => void): void };
  /** Set when `log.file` is configured (the relay counts its drops and errors in /metrics). */
  readonly logFile?: LogFileDestination;
}

/**
 * The one place that decides where the log goes, for the process that owns the stream (one
 * process with `workers: 1`, the primary otherwise; workers write to their stdout pipe).
 * `log.file` gives rotated files written off the SMTP path; otherwise JSON lines on stdout.
 * `levelOverride` is the command line's `--log-level`, which wins over the file's `log.level`.
 */
export async function openLogDestination(cfg: Pick<RelayConfig['log'], 'level' | 'file'>, configDir: string, levelOverride?: string): Promise<OpenedLog> {
  const logFile = cfg.file ? await createLogFile(cfg.file, configDir) : undefined;
  const dest = logFile?.stream ?? stdoutDestination();
  return { log: createLogger(levelOverride ?? cfg.level, dest), dest, logFile };
}

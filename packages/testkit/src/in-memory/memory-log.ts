import pino, { type Logger } from 'pino';

/** One pino log line, parsed. */
export interface LogEntry {
  readonly level: number;
  readonly msg?: string;
  readonly plugin?: string;
  readonly hook?: string;
  readonly [key: string]: unknown;
}

/**
 * A pino logger that keeps its lines in memory (`entries`), so a test can assert what was logged
 * (e.g. that a failing hook was logged with its plugin's and hook's names). PORTCULLIS_TEST_LOG=debug
 * also prints them to stderr.
 */
export function memoryLogger(level = 'debug'): { logger: Logger; entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  const echo = process.env['PORTCULLIS_TEST_LOG'];
  // pino writes each line with one synchronous write() call: the entry is there as soon as logged.
  const sink = {
    write(line: string) {
      const text = line.trimEnd();
      if (!text) return;
      try {
        entries.push(JSON.parse(text) as LogEntry);
      } catch {
        /* pino always writes JSON */
      }
      if (echo) process.stderr.write(text + '\n');
    },
  };
  const logger = pino({ level, base: { service: 'portcullis' } }, sink);
  return { logger, entries };
}

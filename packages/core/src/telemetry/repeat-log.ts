import type { Logger } from 'pino';

/**
 * Logs a repeated event in a bounded way: the first occurrence of each key at once, then at most
 * one line per `intervalMs` carrying how many were suppressed since the last line. A flood of
 * identical refusals (a full disk, a rate limit) thus costs a few log lines a minute, not one per
 * command, so it cannot fill the disk with logs either.
 */
export class RepeatLog {
  private readonly seen = new Map<string, { last: number; suppressed: number; total: number }>();

  constructor(private readonly intervalMs = 60_000, private readonly maxKeys = 10_000) {}

  /** Logs `msg` with `fields` at `level` unless an identical key was logged within the interval. */
  log(log: Logger, level: 'warn' | 'error' | 'info', key: string, fields: Record<string, unknown>, msg: string, now = Date.now()): void {
    const e = this.seen.get(key);
    if (e && now - e.last < this.intervalMs) {
      e.suppressed++;
      e.total++;
      return;
    }
    const entry = { last: now, suppressed: 0, total: (e?.total ?? 0) + 1 };
    this.seen.delete(key);
    this.seen.set(key, entry);
    while (this.seen.size > this.maxKeys) this.seen.delete(this.seen.keys().next().value!);
    log[level]({ ...fields, repeated: entry.total, suppressedSinceLast: e?.suppressed ?? 0 }, msg);
  }

  /** How many times `key` happened in total (logged or not). */
  count(key: string): number {
    return this.seen.get(key)?.total ?? 0;
  }
}

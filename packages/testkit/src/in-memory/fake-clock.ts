/**
 * A clock for `Tokens.Clock` that only moves when the test says so. It is a function (what the
 * token holds: `() => ms since the epoch`) with `advance` and `set`.
 */
export interface FakeClock {
  (): number;
  /** Moves time forward by `ms` (or a duration such as `'5m'`). */
  advance(ms: number | string): number;
  /** Jumps to an absolute time. */
  set(ms: number | Date): number;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function fakeClock(start: number | Date = Date.UTC(2026, 0, 1, 12, 0, 0)): FakeClock {
  let now = typeof start === 'number' ? start : start.getTime();
  const clock = (() => now) as FakeClock;
  clock.advance = (by) => {
    const ms = typeof by === 'number' ? by : parseDurationText(by);
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`fakeClock.advance: ${String(by)} is not a forward step`);
    now += ms;
    return now;
  };
  clock.set = (to) => (now = typeof to === 'number' ? to : to.getTime());
  return clock;
}

function parseDurationText(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim());
  if (!m) throw new RangeError(`fakeClock.advance: "${text}" is not a duration like 30s or 5m`);
  return Number(m[1]) * UNITS[m[2]!]!;
}

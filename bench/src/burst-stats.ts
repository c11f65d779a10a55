/**
 * Per-burst figures for one relay process: a burst is a run of DATA replies with gaps under
 * `gapMs`. Benchmark harnesses run a smoke test, a warm-up and then the measured messages against
 * one relay, with pauses between; splitting at the pauses gives the measured run its own numbers.
 * CPU time is the process's (user + system), read at the first reply of the burst and then at
 * every 32nd (a getrusage per reply would add to what is measured); the figure covers the replies
 * between the first and the last reading.
 */
export interface Burst {
  readonly messages: number;
  /** Mean bytes received per message. */
  readonly avgBytes: number;
  /** Wall time from the first to the last reply. */
  readonly seconds: number;
  /** Process CPU time between the first and the last reply, in ms per message. */
  readonly cpuMsPerMsg: number;
  /** End of DATA to the reply, in ms. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Median of the open sessions at each reply: the client's concurrency, as the relay saw it. */
  readonly sessions: number;
}

export class BurstStats {
  private readonly done: Burst[] = [];
  private latencies: number[] = [];
  private sessions: number[] = [];
  private bytes = 0;
  private first = 0;
  private last = 0;
  private cpuFirst = 0;
  private cpuLast = 0;
  /** Replies counted up to the last CPU reading. */
  private cpuCount = 0;

  constructor(private readonly gapMs = 700) {}

  record(ms: number, size = 0, sessions = 0): void {
    const t = performance.now();
    if (this.latencies.length && t - this.last > this.gapMs) this.close();
    if (!this.latencies.length) {
      this.first = t;
      this.cpuFirst = this.cpuLast = cpuMs();
      this.cpuCount = 1;
    }
    this.latencies.push(ms);
    this.sessions.push(sessions);
    this.bytes += size;
    this.last = t;
    if (this.latencies.length % 32 === 0) {
      this.cpuLast = cpuMs();
      this.cpuCount = this.latencies.length;
    }
  }

  /** Ends the current burst now (the next reply starts a new one). */
  cut(): void {
    this.close();
  }

  bursts(): Burst[] {
    this.close();
    return [...this.done];
  }

  private close(): void {
    const l = this.latencies;
    if (!l.length) return;
    const sorted = Float64Array.from(l).sort();
    const q = (p: number) => nearestRank(sorted, p);
    // The first reply's CPU reading happens after its own work: the CPU between the first and the
    // last reading belongs to the replies after the first, up to that reading.
    const n = l.length;
    const k = this.cpuCount - 1;
    this.done.push({
      messages: n,
      avgBytes: Math.round(this.bytes / n),
      seconds: round((this.last - this.first) / 1000, 3),
      cpuMsPerMsg: k > 0 ? round((this.cpuLast - this.cpuFirst) / k, 3) : NaN,
      p50Ms: round(q(0.5), 2),
      p99Ms: round(q(0.99), 2),
      maxMs: round(sorted[sorted.length - 1]!, 2),
      sessions: Float64Array.from(this.sessions).sort()[Math.floor(n / 2)]!,
    });
    this.latencies = [];
    this.sessions = [];
    this.bytes = 0;
  }
}

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function round(v: number, d: number): number {
  const f = 10 ** d;
  return Math.round(v * f) / f;
}

/** The nearest-rank percentile `p` (0–1) of ascending `sorted` (not empty). */
export function nearestRank(sorted: ArrayLike<number>, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

/**
 * Per-burst figures for one relay process: a burst is a run of DATA replies with gaps under
 * `gapMs`. Benchmark harnesses run a smoke test, a warm-up and then the measured messages against
 * one relay, with pauses between; splitting at the pauses gives the measured run its own numbers.
 * CPU time is the process's (user + system), read at the first and last reply of the burst.
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
}

export class BurstStats {
  private readonly done: Burst[] = [];
  private latencies: number[] = [];
  private bytes = 0;
  private first = 0;
  private last = 0;
  private cpuFirst = 0;
  private cpuLast = 0;

  constructor(private readonly gapMs = 700) {}

  record(ms: number, size = 0): void {
    const t = performance.now();
    const cpu = cpuMs();
    if (this.latencies.length && t - this.last > this.gapMs) this.close();
    if (!this.latencies.length) {
      this.first = t;
      this.cpuFirst = cpu;
    }
    this.latencies.push(ms);
    this.bytes += size;
    this.last = t;
    this.cpuLast = cpu;
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
    const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
    // The first reply's CPU reading happens after its own work: count the burst's CPU over n-1 messages.
    const n = l.length;
    this.done.push({
      messages: n,
      avgBytes: Math.round(this.bytes / n),
      seconds: round((this.last - this.first) / 1000, 3),
      cpuMsPerMsg: n > 1 ? round((this.cpuLast - this.cpuFirst) / (n - 1), 3) : NaN,
      p50Ms: round(q(0.5), 2),
      p99Ms: round(q(0.99), 2),
      maxMs: round(sorted[sorted.length - 1]!, 2),
    });
    this.latencies = [];
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

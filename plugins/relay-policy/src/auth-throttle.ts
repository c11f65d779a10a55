/**
 * Counts failed logins per client IP over a sliding window. Per-connection counts live in the
 * session's notes. A blocked IP is refused before its password is even checked.
 */
export class AuthThrottle {
  private readonly failures = new Map<string, number[]>();

  constructor(private readonly windowMs: number, private readonly maxPerIp: number) {}

  private recent(ip: string, now: number): number[] {
    const list = (this.failures.get(ip) ?? []).filter((t) => now - t < this.windowMs);
    if (list.length) this.failures.set(ip, list);
    else this.failures.delete(ip);
    return list;
  }

  blocked(ip: string, now = Date.now()): boolean {
    return this.recent(ip, now).length >= this.maxPerIp;
  }

  /** Records a failure; returns how many this IP has in the window. */
  fail(ip: string, now = Date.now()): number {
    const list = this.recent(ip, now);
    list.push(now);
    this.failures.set(ip, list);
    if (this.failures.size > 100_000) this.failures.delete(this.failures.keys().next().value!);
    return list.length;
  }
}

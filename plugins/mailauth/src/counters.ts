/**
 * Counters the plugin keeps and logs (TLS-RPT style: one line per interval with totals), so an
 * operator sees unsigned outbound domains and inbound failures without a metrics stack.
 */
export class Counters {
  private readonly counts = new Map<string, number>();
  /** Called for every add (the plugin feeds its metrics from here). */
  onAdd?: (name: string, n: number) => void;

  add(name: string, n = 1): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + n);
    this.onAdd?.(name, n);
  }

  get(name: string): number {
    return this.counts.get(name) ?? 0;
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.counts].sort(([a], [b]) => a.localeCompare(b)));
  }
}

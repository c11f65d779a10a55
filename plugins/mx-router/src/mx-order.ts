/** One MX record as node:dns returns it. */
export interface MxRecord {
  readonly exchange: string;
  readonly priority: number;
}

/** A source of numbers in [0, 1): `Math.random` in production, a fixed sequence in tests. */
export type Random = () => number;

/** Which address families to use, and which first, within each MX host. */
export type IpPreference = 'ipv4-first' | 'ipv6-first' | 'ipv4-only' | 'ipv6-only';

/** Lower-case, without a trailing dot (`MX1.Example.COM.` → `mx1.example.com`). */
export function normaliseName(name: string): string {
  return name.trim().toLowerCase().replace(/\.$/, '');
}

/** Fisher-Yates shuffle into a new array. */
export function shuffle<T>(items: readonly T[], random: Random = Math.random): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.min(i, Math.floor(random() * (i + 1)));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * Orders MX records as RFC 5321 section 5.1 asks: lowest preference first; records of equal
 * preference in random order, so that load spreads over equal hosts. Names are normalised and a
 * name listed twice keeps only its most preferred entry.
 */
export function orderMx(records: readonly MxRecord[], random: Random = Math.random): MxRecord[] {
  const best = new Map<string, number>();
  for (const r of records) {
    const name = normaliseName(r.exchange);
    const prev = best.get(name);
    if (prev === undefined || r.priority < prev) best.set(name, r.priority);
  }
  const byPreference = new Map<number, MxRecord[]>();
  for (const [exchange, priority] of best) {
    const list = byPreference.get(priority) ?? [];
    list.push({ exchange, priority });
    byPreference.set(priority, list);
  }
  return [...byPreference.keys()].sort((a, b) => a - b).flatMap((p) => shuffle(byPreference.get(p)!, random));
}

/**
 * Orders one host's addresses by family preference; within a family the DNS order is kept
 * (RFC 5321 section 5.1: try each address in turn).
 */
export function orderAddresses(v4: readonly string[], v6: readonly string[], preference: IpPreference): string[] {
  switch (preference) {
    case 'ipv4-only':
      return [...v4];
    case 'ipv6-only':
      return [...v6];
    case 'ipv6-first':
      return [...v6, ...v4];
    case 'ipv4-first':
      return [...v4, ...v6];
  }
}

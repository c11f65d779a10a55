/**
 * Answers kept for `ttl` ms, keyed by the request without the attributes that change with every
 * connection or message (`instance`, `queue_id`, `client_port`). Off unless configured: a greylisting or rate-limiting service must see every request.
 * Bounded in entries (oldest dropped first: a Map keeps insertion order).
 */
export class AnswerCache {
  private readonly entries = new Map<string, { action: string; expires: number }>();

  constructor(private readonly ttl: number, private readonly maxEntries: number, private readonly now: () => number = Date.now) {}

  static key(attrs: ReadonlyArray<readonly [string, string]>): string {
    return attrs.filter(([n]) => n !== 'instance' && n !== 'queue_id' && n !== 'client_port').map(([n, v]) => `${n}=${v}`).join('\n');
  }

  get(key: string): string | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.expires <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return e.action;
  }

  set(key: string, action: string): void {
    this.entries.delete(key);
    this.entries.set(key, { action, expires: this.now() + this.ttl });
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  get size(): number {
    return this.entries.size;
  }
}

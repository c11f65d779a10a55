/**
 * A node's bounded memory of answers it read from or wrote to the shared state, each until its own
 * expiry and only for the generation (`portcullis recipients flush`) it was learnt in. Holds at most
 * `max` keys: the one remembered longest ago is dropped first. Written by hand: it is a Map with two
 * checks, and the lookup must stay synchronous (the RCPT hook answers from it without a promise).
 */
export class ExpiringMemo<V> {
  // Map keeps insertion order, and `set` re-inserts: the first key is the one remembered longest ago.
  private readonly entries = new Map<string, { value: V; until: number; gen: string }>();

  /** `maxAgeMs`: the longest a value is kept, however late its own expiry. */
  constructor(private readonly max: number, private readonly maxAgeMs: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** The value remembered for `key` in generation `gen`, not yet expired; a stale entry is dropped. */
  get(key: string, gen: string, now = Date.now()): V | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.until <= now || e.gen !== gen) {
      this.entries.delete(key);
      return undefined;
    }
    return e.value;
  }

  /** Remembers `value` until `expiresAt` (epoch ms; at most `maxAgeMs` from now); nothing if already past. */
  set(key: string, value: V, gen: string, expiresAt: number | undefined, now = Date.now()): void {
    const until = Math.min(expiresAt ?? now + this.maxAgeMs, now + this.maxAgeMs);
    if (until <= now) return;
    this.entries.delete(key);
    this.entries.set(key, { value, until, gen });
    if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
  }

  clear(): void {
    this.entries.clear();
  }
}

import type { SharedState } from '@portcullis/core';

/** A cached answer of a domain's cached sources (ldap, callout). */
export interface CachedAnswer {
  readonly result: 'known' | 'unknown';
  readonly source: string;
  readonly detail: string;
  /** When the shared entry expires (epoch ms; written by put): bounds this node's memory copy. */
  readonly exp?: number;
}

export interface CacheTtls {
  readonly positive: number;
  readonly negative: number;
  readonly lastKnownGood: number;
}

/** How long a node trusts its copy of the generation before reading it again. */
const GENERATION_REFRESH_MS = 5_000;
/**
 * How long a node answers a "known" from its own memory before reading the shared entry again
 * (never past the entry's own expiry, and a flush's new generation drops them all). Lets a known
 * recipient be answered without a promise, a timer or a JSON parse: on the memory store that was
 * most of the plugin's cost per RCPT (see the README's "Cost").
 */
const LOCAL_MS = 30_000;
/** Known addresses a node keeps in memory (oldest dropped first). */
const LOCAL_MAX = 10_000;

/**
 * Answers on the relay's shared state (Redis when configured, so every node uses what one learnt;
 * memory otherwise). Every key has a TTL. Keys are prefixed with a fingerprint of the sources'
 * configuration (a reload that changes a source starts from an empty cache) and a generation that
 * `portcullis recipients flush` bumps (read again every 5 s, so every node drops its answers).
 *
 *   recipients:<fp>:<gen>:a:<address>   the answer, positive or negative TTL
 *   recipients:<fp>:lkg:<address>       last known good: the last positive answer, for outages
 *   recipients:<fp>:<gen>:c:<domain>    callout catch-all flag of a domain
 *   recipients:gen                      the generation (a year's TTL, renewed by each flush)
 *
 * Besides, each node keeps the "known" answers it read or wrote in memory for up to 30 s
 * (`knownNow`, synchronous), tagged with their generation.
 */
export class AnswerCache {
  private gen = '0';
  private genReadAt = 0;
  private readonly local = new Map<string, { answer: CachedAnswer; until: number; gen: string }>();

  constructor(private readonly state: SharedState, private readonly fingerprint: string, readonly ttls: CacheTtls) {}

  private async generation(): Promise<string> {
    if (Date.now() - this.genReadAt > GENERATION_REFRESH_MS) {
      this.genReadAt = Date.now();
      this.gen = (await this.state.get('recipients:gen').catch(() => undefined)) ?? '0';
    }
    return this.gen;
  }

  /**
   * A "known" answer this node holds in memory for the current generation, or undefined (then ask
   * `get`). Synchronous: the RCPT hook answers a known recipient without a promise. When the
   * generation is due to be read again, undefined: `get` reads it first, as without this memory, so
   * a flush is seen as soon as before.
   */
  knownNow(address: string): CachedAnswer | undefined {
    const now = Date.now();
    if (now - this.genReadAt > GENERATION_REFRESH_MS) return undefined;
    const e = this.local.get(address);
    if (!e) return undefined;
    if (e.until <= now || e.gen !== this.gen) {
      this.local.delete(address);
      return undefined;
    }
    return e.answer;
  }

  private remember(address: string, answer: CachedAnswer, gen: string): void {
    if (answer.result !== 'known' || gen !== this.gen) return;
    const now = Date.now();
    const until = Math.min(answer.exp ?? now + this.ttls.positive, now + LOCAL_MS);
    if (until <= now) return;
    this.local.delete(address);
    this.local.set(address, { answer, until, gen });
    // Map keeps insertion order: the first key is the one remembered longest ago.
    if (this.local.size > LOCAL_MAX) this.local.delete(this.local.keys().next().value!);
  }

  private async key(kind: string, name: string): Promise<string> {
    return `recipients:${this.fingerprint}:${await this.generation()}:${kind}:${name}`;
  }

  async get(address: string): Promise<CachedAnswer | undefined> {
    const gen = await this.generation();
    const v = await this.state.get(`recipients:${this.fingerprint}:${gen}:a:${address}`);
    if (!v) return undefined;
    const answer = JSON.parse(v) as CachedAnswer;
    this.remember(address, answer, gen);
    return answer;
  }

  async put(address: string, answer: CachedAnswer): Promise<void> {
    const ttl = answer.result === 'known' ? this.ttls.positive : this.ttls.negative;
    const gen = await this.generation();
    const stored = { ...answer, exp: Date.now() + ttl };
    await this.state.set(`recipients:${this.fingerprint}:${gen}:a:${address}`, JSON.stringify(stored), ttl);
    this.remember(address, stored, gen);
    if (answer.result === 'known') await this.state.set(`recipients:${this.fingerprint}:lkg:${address}`, JSON.stringify(answer), this.ttls.lastKnownGood);
  }

  async lastKnownGood(address: string): Promise<CachedAnswer | undefined> {
    const v = await this.state.get(`recipients:${this.fingerprint}:lkg:${address}`);
    return v ? (JSON.parse(v) as CachedAnswer) : undefined;
  }

  async catchAll(domain: string): Promise<boolean | undefined> {
    const v = await this.state.get(await this.key('c', domain));
    return v === undefined ? undefined : v === '1';
  }

  /** A catch-all domain is re-checked after the positive TTL, a normal one after the negative TTL. */
  async setCatchAll(domain: string, value: boolean): Promise<void> {
    await this.state.set(await this.key('c', domain), value ? '1' : '0', value ? this.ttls.positive : this.ttls.negative);
  }

  /** Starts a new generation: every node stops using the answers cached so far (last-known-good stays). */
  async flush(): Promise<string> {
    const next = `${Date.now().toString(36)}`;
    await this.state.set('recipients:gen', next, 365 * 24 * 3_600_000);
    this.gen = next;
    this.genReadAt = Date.now();
    this.local.clear();
    return next;
  }
}

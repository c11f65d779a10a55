import type { SharedState } from '@portcullis/core';
import { ExpiringMemo } from './expiring-memo.js';

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
/** Known addresses, and catch-all domains, a node keeps in memory (each map; oldest dropped first). */
const LOCAL_MAX = 10_000;

/**
 * Answers on the relay's shared state (Redis when configured, so every node uses what one learnt;
 * memory otherwise). Every key has a TTL. Keys are prefixed with a fingerprint of the sources'
 * configuration (a reload that changes a source starts from an empty cache) and a generation that
 * `portcullis recipients flush` bumps (read again every 5 s, so every node drops its answers).
 *
 *   recipients:<fp>:<gen>:a:<address>   the answer, positive or negative TTL
 *   recipients:<fp>:lkg:<address>       last known good: the last positive answer, for outages
 *   recipients:<fp>:<gen>:c:<domain>    callout catch-all flag of a domain (`1:<expiry>` / `0:<expiry>`)
 *   recipients:<fp>:lkg-c:<domain>      last known good of a catch-all domain
 *   recipients:gen                      the generation (a year's TTL, renewed by each flush)
 *
 * Besides, each node keeps the "known" answers and catch-all flags it read or wrote in memory for
 * up to 30 s (`knownNow`, `catchAllNow`: synchronous), tagged with their generation.
 */
export class AnswerCache {
  private gen = '0';
  private genReadAt = 0;
  private readonly local = new ExpiringMemo<CachedAnswer>(LOCAL_MAX, LOCAL_MS);
  private readonly localCatchAll = new ExpiringMemo<boolean>(LOCAL_MAX, LOCAL_MS);

  constructor(private readonly state: SharedState, private readonly fingerprint: string, readonly ttls: CacheTtls) {}

  private async generation(): Promise<string> {
    if (Date.now() - this.genReadAt > GENERATION_REFRESH_MS) {
      this.genReadAt = Date.now();
      this.gen = (await this.state.get('recipients:gen').catch(() => undefined)) ?? '0';
    }
    return this.gen;
  }

  /**
   * The generation for a synchronous memory lookup; undefined when it is due to be read again (then
   * the async path reads it first, as without the memory, so a flush is seen as soon as before).
   */
  private genForMemory(): string | undefined {
    return Date.now() - this.genReadAt > GENERATION_REFRESH_MS ? undefined : this.gen;
  }

  /**
   * A "known" answer this node holds in memory for the current generation, or undefined (then ask
   * `get`). Synchronous: the RCPT hook answers a known recipient without a promise. When the
   * generation is due to be read again, undefined: `get` reads it first, as without this memory, so
   * a flush is seen as soon as before.
   */
  knownNow(address: string): CachedAnswer | undefined {
    const gen = this.genForMemory();
    return gen === undefined ? undefined : this.local.get(address, gen);
  }

  private remember(address: string, answer: CachedAnswer, gen: string): void {
    if (answer.result !== 'known' || gen !== this.gen) return;
    this.local.set(address, answer, gen, answer.exp ?? Date.now() + this.ttls.positive);
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

  /** The address's last "known", or else its domain's last catch-all answer (see setCatchAll). */
  async lastKnownGood(address: string): Promise<CachedAnswer | undefined> {
    const v = await this.state.get(`recipients:${this.fingerprint}:lkg:${address}`);
    if (v) return JSON.parse(v) as CachedAnswer;
    const domain = address.slice(address.lastIndexOf('@') + 1);
    const d = await this.state.get(`recipients:${this.fingerprint}:lkg-c:${domain}`);
    return d ? (JSON.parse(d) as CachedAnswer) : undefined;
  }

  /**
   * The catch-all flag of a domain as this node last read or wrote it, for the current generation
   * (at most 30 s, never past the shared flag's expiry); undefined: ask `catchAll`.
   */
  catchAllNow(domain: string): boolean | undefined {
    const gen = this.genForMemory();
    return gen === undefined ? undefined : this.localCatchAll.get(domain, gen);
  }

  private rememberCatchAll(domain: string, value: boolean, exp: number | undefined, gen: string): void {
    if (gen === this.gen) this.localCatchAll.set(domain, value, gen, exp);
  }

  /** Stored as `1:<expiry>` / `0:<expiry>` (epoch ms): a node's memory copy never outlives it. */
  async catchAll(domain: string): Promise<boolean | undefined> {
    const gen = await this.generation();
    const v = await this.state.get(`recipients:${this.fingerprint}:${gen}:c:${domain}`);
    if (v === undefined) return undefined;
    const value = v.startsWith('1');
    const exp = Number(v.slice(2));
    this.rememberCatchAll(domain, value, Number.isFinite(exp) && exp > 0 ? exp : undefined, gen);
    return value;
  }

  /**
   * A catch-all domain is re-checked after the positive TTL, a normal one after the negative TTL.
   * A catch-all answer is kept for the domain, not per address (one key, however many addresses),
   * and so is its last-known-good copy (`lkg-c:<domain>`, for outages after the flag expired).
   */
  async setCatchAll(domain: string, value: boolean, lastKnownGood?: CachedAnswer): Promise<void> {
    const ttl = value ? this.ttls.positive : this.ttls.negative;
    const gen = await this.generation();
    const exp = Date.now() + ttl;
    await this.state.set(`recipients:${this.fingerprint}:${gen}:c:${domain}`, `${value ? 1 : 0}:${exp}`, ttl);
    this.rememberCatchAll(domain, value, exp, gen);
    if (value && lastKnownGood) await this.state.set(`recipients:${this.fingerprint}:lkg-c:${domain}`, JSON.stringify(lastKnownGood), this.ttls.lastKnownGood);
  }

  /** Starts a new generation: every node stops using the answers cached so far (last-known-good stays). */
  async flush(): Promise<string> {
    const next = `${Date.now().toString(36)}`;
    await this.state.set('recipients:gen', next, 365 * 24 * 3_600_000);
    this.gen = next;
    this.genReadAt = Date.now();
    this.local.clear();
    this.localCatchAll.clear();
    return next;
  }
}

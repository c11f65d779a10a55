import type { SharedState } from '@portcullis/core';

/** A cached answer of a domain's cached sources (ldap, callout). */
export interface CachedAnswer {
  readonly result: 'known' | 'unknown';
  readonly source: string;
  readonly detail: string;
}

export interface CacheTtls {
  readonly positive: number;
  readonly negative: number;
  readonly lastKnownGood: number;
}

/** How long a node trusts its copy of the generation before reading it again. */
const GENERATION_REFRESH_MS = 5_000;

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
 */
export class AnswerCache {
  private gen = '0';
  private genReadAt = 0;

  constructor(private readonly state: SharedState, private readonly fingerprint: string, readonly ttls: CacheTtls) {}

  private async generation(): Promise<string> {
    if (Date.now() - this.genReadAt > GENERATION_REFRESH_MS) {
      this.genReadAt = Date.now();
      this.gen = (await this.state.get('recipients:gen').catch(() => undefined)) ?? '0';
    }
    return this.gen;
  }

  private async key(kind: string, name: string): Promise<string> {
    return `recipients:${this.fingerprint}:${await this.generation()}:${kind}:${name}`;
  }

  async get(address: string): Promise<CachedAnswer | undefined> {
    const v = await this.state.get(await this.key('a', address));
    return v ? (JSON.parse(v) as CachedAnswer) : undefined;
  }

  async put(address: string, answer: CachedAnswer): Promise<void> {
    const ttl = answer.result === 'known' ? this.ttls.positive : this.ttls.negative;
    await this.state.set(await this.key('a', address), JSON.stringify(answer), ttl);
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
    return next;
  }
}

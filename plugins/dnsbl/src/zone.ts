import type { Resolver } from 'node:dns/promises';
type Logger = PluginLogger;
import type { PluginContext, SharedState } from '@portcullis/core';
type PluginLogger = PluginContext['log'];
import { answerKind, type AnswerFilter } from './answer-filter.js';
import { queryName } from './query-name.js';

export interface ZoneSettings {
  readonly zone: string;
  readonly weight: number;
  /** Shown to clients instead of the query zone (a zone with a secret key in it, for example). */
  readonly name: string;
  readonly filter?: AnswerFilter;
}

export interface LookupSettings {
  readonly timeoutMs: number;
  readonly minTtlMs: number;
  readonly maxTtlMs: number;
  readonly negativeTtlMs: number;
  /** How long a failing zone is skipped before it is re-checked. */
  readonly retryMs: number;
  /** Timeouts / SERVFAILs in a row that count as a failing zone. */
  readonly errorsInARow: number;
}

/** One zone's answer for one client. */
export type ZoneResult =
  | { readonly state: 'listed'; readonly answers: readonly string[] }
  | { readonly state: 'clear' }
  /** Timeout, SERVFAIL, refused: never a listing. */
  | { readonly state: 'error'; readonly error: string }
  /** The zone is marked failing and was not asked. */
  | { readonly state: 'skipped' };

/** Counters a status endpoint (or a test) can read. */
export interface ZoneStats {
  queries: number;
  cacheHits: number;
  listed: number;
  errors: number;
  /** Times the zone was marked failing. */
  failures: number;
}

const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);

/**
 * One DNS list: queries (bounded by a timeout), the TTL-clamped cache on the shared store, and the
 * zone's health. A zone that answers with an error code (127.255.255.0/24), with anything outside
 * 127.0.0.0/8, or that keeps timing out is marked failing: logged at error level, counted, skipped
 * for `retryMs`, then re-checked with the RFC 5782 test entries (127.0.0.2 listed, 127.0.0.1 not).
 * It is never disabled for good, and none of this ever counts as a listing.
 */
export class Zone {
  readonly stats: ZoneStats = { queries: 0, cacheHits: 0, listed: 0, errors: 0, failures: 0 };
  failingSince?: number;
  private retryAt = 0;
  private errorRun = 0;
  private recheck?: Promise<void>;

  constructor(
    readonly settings: ZoneSettings,
    private readonly lookup: LookupSettings,
    private readonly resolver: Resolver,
    private readonly state: SharedState,
    private readonly log: Logger,
  ) {}

  get failing(): boolean {
    return this.failingSince !== undefined;
  }

  private async query(name: string): Promise<{ answers: string[]; ttl: number } | 'nxdomain'> {
    this.stats.queries++;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error(`no answer within ${this.lookup.timeoutMs} ms`), { code: 'ETIMEOUT' })), this.lookup.timeoutMs);
    });
    try {
      const records = await Promise.race([this.resolver.resolve4(name, { ttl: true }), timeout]);
      return { answers: records.map((r) => r.address), ttl: Math.min(...records.map((r) => r.ttl)) * 1000 };
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ENOTFOUND' || code === 'ENODATA') return 'nxdomain';
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private markFailing(why: string, fields: Record<string, unknown>): void {
    this.retryAt = Date.now() + this.lookup.retryMs;
    if (this.failing) return;
    this.failingSince = Date.now();
    this.stats.failures++;
    this.log.error({ zone: this.settings.zone, ...fields, retryInMs: this.lookup.retryMs }, `DNSBL zone failing (${why}): skipped, nobody is refused because of it; re-checked with its test entries later`);
  }

  /** RFC 5782 section 5: 127.0.0.2 must be listed, 127.0.0.1 must not. */
  private async recheckNow(): Promise<void> {
    try {
      const two = await this.query(queryName('127.0.0.2', this.settings.zone)!);
      const one = await this.query(queryName('127.0.0.1', this.settings.zone)!);
      const healthy = two !== 'nxdomain' && two.answers.every((a) => answerKind(a) === 'ok') && one === 'nxdomain';
      if (healthy) {
        this.log.warn({ zone: this.settings.zone, failedForMs: Date.now() - this.failingSince! }, 'DNSBL zone healthy again: its answers count again');
        this.failingSince = undefined;
        this.errorRun = 0;
        return;
      }
      this.log.error({ zone: this.settings.zone, testEntry2: two, testEntry1: one }, 'DNSBL zone still failing its test entries');
    } catch (err) {
      this.log.error({ zone: this.settings.zone, err: (err as Error).message }, 'DNSBL zone re-check got no answer');
    }
    this.retryAt = Date.now() + this.lookup.retryMs;
  }

  /** The zone's verdict on `ip`, from the cache when it has one. */
  async check(ip: string): Promise<ZoneResult> {
    if (this.failing) {
      if (Date.now() >= this.retryAt) this.recheck ??= this.recheckNow().finally(() => (this.recheck = undefined));
      // Never wait for the re-check: this client is not held up by a broken zone.
      if (this.failing) return { state: 'skipped' };
    }
    const name = queryName(ip, this.settings.zone);
    if (!name) return { state: 'error', error: 'not an IP address' };
    const cacheKey = `dnsbl:${this.settings.zone}:${ip}`;
    const cached = await this.state.get(cacheKey);
    if (cached !== undefined) {
      this.stats.cacheHits++;
      const answers = JSON.parse(cached) as string[];
      return this.classify(answers);
    }
    let result: Awaited<ReturnType<Zone['query']>>;
    try {
      result = await this.query(name);
    } catch (err) {
      this.stats.errors++;
      const code = (err as { code?: string }).code ?? (err as Error).message;
      if (++this.errorRun >= this.lookup.errorsInARow) this.markFailing(`${this.errorRun} lookups in a row failed`, { lastError: code });
      return { state: 'error', error: code };
    }
    this.errorRun = 0;
    if (result === 'nxdomain') {
      await this.state.set(cacheKey, '[]', this.lookup.negativeTtlMs);
      return { state: 'clear' };
    }
    const bad = result.answers.filter((a) => answerKind(a) === 'error');
    if (bad.length) {
      // Not cached: the answer says nothing about the client.
      this.markFailing(`answered ${bad.join(', ')}`, { client: ip, answers: result.answers });
      return { state: 'skipped' };
    }
    await this.state.set(cacheKey, JSON.stringify(result.answers), clamp(result.ttl, this.lookup.minTtlMs, this.lookup.maxTtlMs));
    return this.classify(result.answers);
  }

  private classify(answers: readonly string[]): ZoneResult {
    if (!answers.length) return { state: 'clear' };
    const counted = this.settings.filter ? answers.filter(this.settings.filter) : answers;
    if (!counted.length) return { state: 'clear' };
    this.stats.listed++;
    return { state: 'listed', answers: counted };
  }
}

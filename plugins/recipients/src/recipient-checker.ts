import type { Logger } from './source.js';
import type { AnswerCache } from './answer-cache.js';
import type { DomainPatterns } from './domain-patterns.js';
import type { RecipientAddress } from './recipient-address.js';
import { SourceUnavailable, type LookupContext, type RecipientSource } from './source.js';

/** The decision about one recipient, and how it was reached. */
export interface CheckResult {
  /** `unavailable`: a source could not answer and nothing else knew the address. */
  readonly outcome: 'known' | 'unknown' | 'unavailable' | 'not-hosted';
  readonly source?: string;
  /** The type of the source that decided or failed (`callout` failures answer 450 4.1.1). */
  readonly sourceType?: RecipientSource['type'];
  readonly detail: string;
  readonly cached?: boolean;
  readonly lastKnownGood?: boolean;
  /** Each source asked, in order, with its answer (for `portcullis recipients check`). */
  readonly trail: string[];
}

export interface CheckerMetrics {
  lookup(sourceType: string, result: 'known' | 'unknown' | 'error'): void;
  cache(result: 'hit' | 'miss'): void;
  lastKnownGood(): void;
}

/**
 * Asks a domain's sources in order. The first that knows the address decides "known"; sources
 * that do not know it pass to the next; an address no source knows is unknown, unless a source
 * could not answer (then: the last-known-good answer, or `unavailable`). Answers of the cached
 * sources (ldap, callout) are kept on the shared state; list sources are asked every time (memory).
 * Concurrent checks of one address share one lookup (one LDAP search, one callout probe).
 */
export class RecipientChecker {
  private readonly inflight = new Map<string, Promise<CheckResult>>();
  private readonly catchAllResults = new Map<string, CheckResult>();

  constructor(
    private readonly domains: DomainPatterns<readonly RecipientSource[]>,
    private readonly cache: AnswerCache,
    private readonly metrics: CheckerMetrics,
    private readonly log: Logger,
  ) {}

  hosted(domain: string): boolean {
    return this.domains.match(domain) !== undefined;
  }

  /**
   * The answer for an address this node already knows from memory (`AnswerCache.knownNow`), without
   * a promise: the RCPT hot path. Only where the domain's first source is a cached one (it would
   * consult that cache first, so the answer is the same); undefined means: ask `check`.
   */
  knownNow(addr: RecipientAddress): CheckResult | undefined {
    const sources = this.domains.match(addr.domain);
    if (!sources) return undefined;
    if (sources[0]?.cached) {
      const hit = this.cache.knownNow(addr.address);
      if (hit) {
        this.metrics.cache('hit');
        return { outcome: 'known', source: hit.source, detail: hit.detail, cached: true, trail: [`cache: known (from ${hit.source}: ${hit.detail})`] };
      }
    }
    // A domain whose next hop takes every address (the callout's catch-all flag, in memory): known,
    // whatever the sources before it would say (they could only make it known too, or fail).
    const catchAll = sources.find((s) => s.catchAllDomains);
    if (catchAll && this.cache.catchAllNow(addr.domain) === true) {
      this.metrics.lookup(catchAll.type, 'known');
      return this.catchAllResult(catchAll, addr.domain);
    }
    return undefined;
  }

  /** The (immutable) result for a catch-all domain, built once per domain: this runs for every RCPT. */
  private catchAllResult(source: RecipientSource, domain: string): CheckResult {
    const key = `${source.name}\0${domain}`;
    let r = this.catchAllResults.get(key);
    if (!r) {
      const detail = `${domain} is a catch-all (cached flag)`;
      r = { outcome: 'known', source: source.name, sourceType: source.type, detail, cached: true, trail: [`${source.name} (${source.type}): known: ${detail}`] };
      if (this.catchAllResults.size >= 1_000) this.catchAllResults.clear();
      this.catchAllResults.set(key, r);
    }
    return r;
  }

  check(addr: RecipientAddress, ctx: LookupContext, opts: { useCache?: boolean } = {}): Promise<CheckResult> {
    const key = `${opts.useCache === false ? 'fresh:' : ''}${addr.address}`;
    const running = this.inflight.get(key);
    if (running) return running;
    const p = this.run(addr, ctx, opts.useCache !== false).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private async run(addr: RecipientAddress, ctx: LookupContext, useCache: boolean): Promise<CheckResult> {
    const sources = this.domains.match(addr.domain);
    if (!sources) return { outcome: 'not-hosted', detail: `${addr.domain} is not a hosted domain: not checked`, trail: [] };
    const trail: string[] = [];
    const failures: Array<{ source: RecipientSource; message: string }> = [];
    let cachedLookedUp = false;
    let cachedSaidUnknown = false;
    let cachedAsked = false;
    for (const source of sources) {
      if (source.cached) {
        if (cachedSaidUnknown) continue;
        if (!cachedLookedUp && useCache) {
          cachedLookedUp = true;
          const hit = await this.cache.get(addr.address).catch(() => undefined);
          this.metrics.cache(hit ? 'hit' : 'miss');
          if (hit?.result === 'known') {
            trail.push(`cache: known (from ${hit.source}: ${hit.detail})`);
            return { outcome: 'known', source: hit.source, detail: hit.detail, cached: true, trail };
          }
          if (hit) {
            trail.push(`cache: unknown (from ${hit.source}: ${hit.detail})`);
            cachedSaidUnknown = true;
            continue;
          }
        }
        cachedAsked = true;
      }
      try {
        const answer = await source.lookup(addr, ctx);
        this.metrics.lookup(source.type, answer.result);
        trail.push(`${source.name} (${source.type}): ${answer.result}: ${answer.detail}`);
        if (answer.result === 'known') {
          // A catch-all answer is the domain's flag (and its last known good), not one key per address.
          if (source.cached && !answer.catchAll) await this.cache.put(addr.address, { result: 'known', source: source.name, detail: answer.detail }).catch(() => undefined);
          return { outcome: 'known', source: source.name, sourceType: source.type, detail: answer.detail, trail };
        }
      } catch (err) {
        if (!(err instanceof SourceUnavailable)) throw err;
        this.metrics.lookup(source.type, 'error');
        trail.push(`${source.name} (${source.type}): cannot answer: ${err.message}`);
        failures.push({ source, message: err.message });
      }
    }
    if (failures.length) {
      const lkg = await this.cache.lastKnownGood(addr.address).catch(() => undefined);
      if (lkg) {
        this.metrics.lastKnownGood();
        trail.push(`last known good: known (from ${lkg.source}: ${lkg.detail})`);
        this.log.info({ recipient: addr.address, failed: failures.map((f) => f.source.name) }, 'recipient source down: answered from the last known good answer');
        return { outcome: 'known', source: lkg.source, detail: lkg.detail, lastKnownGood: true, trail };
      }
      const first = failures[0]!;
      return { outcome: 'unavailable', source: first.source.name, sourceType: first.source.type, detail: first.message, trail };
    }
    if (cachedAsked) await this.cache.put(addr.address, { result: 'unknown', source: sources.filter((s) => s.cached).map((s) => s.name).join(','), detail: trail[trail.length - 1] ?? '' }).catch(() => undefined);
    if (cachedSaidUnknown) return { outcome: 'unknown', detail: 'cached unknown', cached: true, trail };
    return { outcome: 'unknown', detail: trail.join('; '), trail };
  }
}

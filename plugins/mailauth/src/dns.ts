import type { Resolver } from 'node:dns/promises';
import type { SharedState } from '@portcullis/core';

/** The resolver function mailauth calls: `(name, rrtype) → records`, errors with node:dns codes. */
export type MailauthResolver = (name: string, rrtype: string) => Promise<never>;

export interface DnsCacheOptions {
  /** How long an answer is kept. node:dns reports no TTL for TXT records, so this is fixed. */
  readonly ttlMs: number;
  /** How long "no such record" (NXDOMAIN, NODATA) is kept. */
  readonly negativeTtlMs: number;
}

const ANSWER_CODES = new Set(['ENOTFOUND', 'ENODATA']);

/**
 * Adapts the relay's shared node:dns Resolver (Tokens.Resolver, set to `dns.servers`) to mailauth.
 * node:dns reports NXDOMAIN as ENOTFOUND and NODATA as ENODATA, which mailauth reads as "no
 * record"; every other code (ETIMEOUT, ESERVFAIL, ECONNREFUSED, EREFUSED) becomes a temperror.
 *
 * EBADNAME (a name no DNS server could hold, e.g. from `From: <<<>>>`) is turned into ENOTFOUND:
 * it is not a DNS failure, and as a temperror it would make the relay answer 451 to that message
 * forever.
 *
 * With a cache (the relay's shared state: memory, or Redis shared by every node), answers and
 * "no record" are kept for a while; failures never are, so a DNS outage is retried at once when
 * it ends.
 */
export function mailauthResolver(resolver: Resolver, cache?: { state: SharedState; opts: DnsCacheOptions }): MailauthResolver {
  const lookup = async (name: string, rrtype: string): Promise<unknown> => {
    try {
      return await resolver.resolve(name, rrtype as 'TXT');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EBADNAME') throw Object.assign(new Error(`${name}: not a valid DNS name`), { code: 'ENOTFOUND' });
      throw err;
    }
  };
  if (!cache) return lookup as unknown as MailauthResolver;
  return (async (name: string, rrtype: string) => {
    const key = `mailauth:dns:${rrtype}:${name.toLowerCase()}`;
    const hit = await cache.state.get(key).catch(() => undefined);
    if (hit !== undefined) {
      const v = JSON.parse(hit) as { records?: unknown; code?: string };
      if (v.code) throw Object.assign(new Error(`${name} ${rrtype}: ${v.code} (cached)`), { code: v.code });
      return v.records;
    }
    try {
      const records = await lookup(name, rrtype);
      await cache.state.set(key, JSON.stringify({ records }), cache.opts.ttlMs).catch(() => undefined);
      return records;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code && ANSWER_CODES.has(code)) await cache.state.set(key, JSON.stringify({ code }), cache.opts.negativeTtlMs).catch(() => undefined);
      throw err;
    }
  }) as unknown as MailauthResolver;
}

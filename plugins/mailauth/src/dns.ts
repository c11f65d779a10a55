import type { Resolver } from 'node:dns/promises';

/** The resolver function mailauth calls: `(name, rrtype) → records`, errors with node:dns codes. */
export type MailauthResolver = (name: string, rrtype: string) => Promise<never>;

/**
 * Adapts the relay's shared node:dns Resolver (Tokens.Resolver, set to `dns.servers`) to mailauth.
 * node:dns reports NXDOMAIN as ENOTFOUND and NODATA as ENODATA, which mailauth reads as "no
 * record"; every other code (ETIMEOUT, ESERVFAIL, ECONNREFUSED, EREFUSED) becomes a temperror.
 *
 * EBADNAME (a name no DNS server could hold, e.g. from `From: <<<>>>`) is turned into ENOTFOUND:
 * it is not a DNS failure, and as a temperror it would make the relay answer 451 to that message
 * forever.
 */
export function mailauthResolver(resolver: Resolver): MailauthResolver {
  return (async (name: string, rrtype: string) => {
    try {
      return await resolver.resolve(name, rrtype as 'TXT');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EBADNAME') throw Object.assign(new Error(`${name}: not a valid DNS name`), { code: 'ENOTFOUND' });
      throw err;
    }
  }) as unknown as MailauthResolver;
}

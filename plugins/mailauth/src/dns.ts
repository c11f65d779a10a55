import type { Resolver } from 'node:dns/promises';

/** The resolver function mailauth calls: `(name, rrtype) → records`, errors with node:dns codes. */
export type MailauthResolver = (name: string, rrtype: string) => Promise<never>;

/**
 * Adapts the relay's shared node:dns Resolver (Tokens.Resolver, set to `dns.servers`) to mailauth.
 * node:dns reports NXDOMAIN as ENOTFOUND and NODATA as ENODATA, which mailauth reads as "no
 * record"; every other code (ETIMEOUT, ESERVFAIL, ECONNREFUSED, EREFUSED) becomes a temperror.
 */
export function mailauthResolver(resolver: Resolver): MailauthResolver {
  return ((name: string, rrtype: string) => resolver.resolve(name, rrtype as 'TXT')) as unknown as MailauthResolver;
}

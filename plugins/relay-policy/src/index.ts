import { definePlugin, hostAndPort, reject, accept, z, type NextHop } from '@portcullis/core';
import { inNetworks, parseCidr, type Cidr } from './networks.js';

const cidr = z.string().transform((v, ctx) => {
  try {
    return parseCidr(v);
  } catch {
    ctx.addIssue({ code: 'custom', message: `expected an IP network such as 10.0.0.0/8 or fd00::/8, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
});

const domainSchema = z.strictObject({
  /** Where this domain's mail goes: `host:port` (an IP literal, or a name from /etc/hosts). */
  nexthop: hostAndPort(),
  /** TLS towards the next hop. */
  tls: z.enum(['none', 'opportunistic', 'required']).default('opportunistic'),
  /** AUTH at the next hop. */
  auth: z.strictObject({ user: z.string().min(1), pass: z.string().min(1) }).optional(),
});

export const options = z.strictObject({
  /** Hosted domains: anyone may send to them; each goes to its next hop. */
  domains: z.record(z.string().min(1), domainSchema).default({}),
  /** Client networks that may relay to any domain (CIDR, IPv4 or IPv6). */
  trustedNetworks: z.array(cidr).default([]),
  /** Whether authenticated users may relay to any domain. */
  relayAuthenticated: z.boolean().default(true),
});

export type RelayPolicyOptions = z.input<typeof options>;

/** Lower-case, without a trailing dot. */
export function normaliseDomain(d: string): string {
  return d.trim().toLowerCase().replace(/\.$/, '');
}

/**
 * The relay decision. Runs in `rcpt`:
 *   hosted domain            → accept (inbound, anyone)
 *   client in trustedNetworks → accept (outbound)
 *   authenticated user        → accept (outbound)
 *   anything else             → 550 5.7.1 Unable to relay
 * and in `route`: a hosted domain goes to its configured next hop.
 */
export default definePlugin({
  name: 'relay-policy',
  options,
  setup(opts) {
    const domains = new Map<string, z.output<typeof domainSchema>>();
    for (const [name, d] of Object.entries(opts.domains)) domains.set(normaliseDomain(name), d);
    const trusted: Cidr[] = opts.trustedNetworks;
    return {
      rcpt(txn, to) {
        if (to.domain && domains.has(normaliseDomain(to.domain))) return accept();
        if (inNetworks(txn.session.remoteAddress, trusted)) return accept();
        if (opts.relayAuthenticated && txn.session.user) return accept();
        return reject(550, '5.7.1', 'Unable to relay');
      },
      route(domain): NextHop | undefined {
        const d = domains.get(normaliseDomain(domain));
        if (!d) return undefined;
        return { hosts: [d.nexthop], tls: d.tls, auth: d.auth, name: `static:${domain}` };
      },
    };
  },
});

import { Resolver } from 'node:dns/promises';
import { definePlugin, duration, hostAndPort, Tokens, z, type NextHop, type RelayConfig, type Verdict } from '@portcullis/core';
import { MxRouter, type ConfiguredHop, type DnsResolver } from './mx-router.js';
import { normaliseName } from './mx-order.js';
import { canonicalIp, OwnAddresses } from './own-addresses.js';
import { findStaticRoute } from './static-routes.js';

export { MxRouter, addressLiteral, type ConfiguredHop, type DnsResolver, type MxRouterOptions } from './mx-router.js';
export { orderMx, orderAddresses, shuffle, normaliseName, type MxRecord, type IpPreference, type Random } from './mx-order.js';
export { OwnAddresses, canonicalIp, splitHostPort } from './own-addresses.js';
export { classifyDnsError, type DnsFailure } from './dns-errors.js';
export { findStaticRoute } from './static-routes.js';

const tlsMode = z.enum(['none', 'opportunistic', 'required']);

const hopSchema = z.strictObject({
  nexthop: z.union([hostAndPort(), z.array(hostAndPort()).min(1)]).describe('`host:port` or a list of them, tried in order. A host is an IP literal or a name resolved by DNS (A/AAAA, not MX).'),
  tls: tlsMode.default('opportunistic').describe('TLS towards this next hop: `none`, `opportunistic` (STARTTLS when offered), `required`.'),
  auth: z.strictObject({ user: z.string().min(1).describe('Login name at the next hop.'), pass: z.string().min(1).describe('Its password.') }).optional().describe('AUTH at the next hop.'),
});

const ip = z.string().refine((v) => canonicalIp(v) !== undefined, { message: 'expected an IP address such as 192.0.2.1 or 2001:db8::1' });

export const options = z.strictObject({
  port: z.number().int().min(1).max(65535).default(25).describe('SMTP port of MX hosts. 25 on the Internet; tests use a high port.'),
  ipPreference: z.enum(['ipv4-first', 'ipv6-first', 'ipv4-only', 'ipv6-only']).default('ipv4-first').describe('Which address families to use for MX hosts, and which first.'),
  tls: tlsMode.default('opportunistic').describe('TLS towards MX hosts.'),
  dnsServers: z.array(z.string().min(1)).min(1).optional().describe('DNS servers for this plugin only (`127.0.0.1`, `127.0.0.1:5353`, `[::1]:53`); default: the relay\'s `dns.servers`.'),
  dnsTimeout: duration().optional().describe('Per-query timeout of this plugin\'s own resolver (only with `dnsServers`); default: the relay\'s `dns.timeout`.'),
  routes: z.record(z.string().min(1), hopSchema).default({}).describe('Per-domain routes, checked before MX. Keys: `example.com` (exact) or `.example.com` (its subdomains).'),
  smarthost: hopSchema.optional().describe('Every other domain goes here instead of to its MX hosts.'),
  ownAddresses: z.array(ip).default([]).describe('More addresses that reach this relay (e.g. a public IP NATed to it): never delivered to.'),
  maxMxHosts: z.number().int().min(1).max(100).default(10).describe('MX records considered per domain, most preferred first.'),
  maxAddresses: z.number().int().min(1).max(100).default(20).describe('Addresses tried per domain and attempt, in total.'),
});

export type MxRouterPluginOptions = z.input<typeof options>;

function toConfigured(h: z.output<typeof hopSchema>): ConfiguredHop {
  return { hosts: Array.isArray(h.nexthop) ? h.nexthop : [h.nexthop], tls: h.tls, auth: h.auth };
}

/**
 * The outbound router. Runs in `route`, after plugins that route hosted domains (put it last):
 *   static route for the domain → its next hop
 *   smart host configured       → the smart host
 *   otherwise                   → the domain's MX hosts (see MxRouter)
 */
export default definePlugin({
  name: 'mx-router',
  options,
  setup(opts, ctx) {
    const config = ctx.container.isRegistered(Tokens.Config, true) ? ctx.container.resolve<RelayConfig>(Tokens.Config) : undefined;
    let resolver: DnsResolver;
    if (opts.dnsServers) {
      const own = new Resolver({ timeout: opts.dnsTimeout ?? config?.dns.timeout ?? 5000, tries: 2 });
      own.setServers(opts.dnsServers);
      resolver = own;
    } else {
      resolver = ctx.container.resolve<Resolver>(Tokens.Resolver);
    }
    const listen = () => (ctx.container.isRegistered(Tokens.ListenAddresses, true) ? ctx.container.resolve<string[]>(Tokens.ListenAddresses) : []);
    if (listen().some((a) => a.endsWith(':0'))) ctx.log.debug('a listener has port 0: the mail-loop check cannot know its port and leaves it out');

    const router = new MxRouter(resolver, {
      port: opts.port,
      ipPreference: opts.ipPreference,
      tls: opts.tls,
      maxMxHosts: opts.maxMxHosts,
      maxAddresses: opts.maxAddresses,
      ownAddresses: () => new OwnAddresses(listen(), opts.ownAddresses),
    });
    const routes = new Map<string, ConfiguredHop>();
    for (const [key, hop] of Object.entries(opts.routes)) routes.set(key.startsWith('.') ? `.${normaliseName(key.slice(1))}` : normaliseName(key), toConfigured(hop));
    const smarthost = opts.smarthost ? toConfigured(opts.smarthost) : undefined;

    return {
      async route(domain): Promise<NextHop | Verdict> {
        const d = normaliseName(domain);
        const r = findStaticRoute(routes, d);
        const result = r
          ? await router.routeConfigured(d, r, `static:${d}`)
          : smarthost
            ? await router.routeConfigured(d, smarthost, 'smarthost')
            : await router.route(d);
        if ('kind' in result) ctx.log.info({ domain: d, reply: result.reply }, 'no next hop');
        else ctx.log.debug({ domain: d, hop: result.name, hosts: result.hosts }, 'routed');
        return result;
      },
    };
  },
});

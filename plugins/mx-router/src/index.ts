import { Resolver } from 'node:dns/promises';
import { definePlugin, duration, hostAndPort, Tokens, z, type NextHop, type RelayConfig, type Verdict } from '@portcullis/core';
import { MxRouter, type ConfiguredHop, type DnsResolver } from './mx-router.js';
import { normaliseName } from './mx-order.js';
import { canonicalIp, OwnAddresses } from './own-addresses.js';
import { findStaticRoute } from './static-routes.js';
import { MtaSts, mxAllowed } from './mta-sts.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';

export { MxRouter, addressLiteral, type ConfiguredHop, type DnsResolver, type MxRouterOptions } from './mx-router.js';
export { orderMx, orderAddresses, shuffle, normaliseName, type MxRecord, type IpPreference, type Random } from './mx-order.js';
export { OwnAddresses, canonicalIp, splitHostPort } from './own-addresses.js';
export { classifyDnsError, type DnsFailure } from './dns-errors.js';
export { findStaticRoute } from './static-routes.js';
export { MtaSts, mxAllowed, type CachedPolicy, type StsResultType } from './mta-sts.js';

/** Container token of the router's MtaSts (policy cache and TLS-RPT style counters). */
export const MtaStsToken = Symbol.for('portcullis.mx-router.mta-sts');

const tlsMode = z.enum(['none', 'opportunistic', 'required']);

const hopSchema = z.strictObject({
  /** `host:port` or a list of them, tried in order. A host is an IP literal or a name resolved by DNS (A/AAAA, not MX). */
  nexthop: z.union([hostAndPort(), z.array(hostAndPort()).min(1)]),
  tls: tlsMode.default('opportunistic'),
  /** AUTH at the next hop. */
  auth: z.strictObject({ user: z.string().min(1), pass: z.string().min(1) }).optional(),
});

const ip = z.string().refine((v) => canonicalIp(v) !== undefined, { message: 'expected an IP address such as 192.0.2.1 or 2001:db8::1' });

export const options = z.strictObject({
  /** SMTP port of MX hosts. 25 on the Internet; tests use a high port. */
  port: z.number().int().min(1).max(65535).default(25),
  /** Which address families to use for MX hosts, and which first. */
  ipPreference: z.enum(['ipv4-first', 'ipv6-first', 'ipv4-only', 'ipv6-only']).default('ipv4-first'),
  /** TLS towards MX hosts. */
  tls: tlsMode.default('opportunistic'),
  /** DNS servers for this plugin only (`127.0.0.1`, `127.0.0.1:5353`, `[::1]:53`); default: the relay's `dns.servers`. */
  dnsServers: z.array(z.string().min(1)).min(1).optional(),
  /** Per-query timeout of this plugin's own resolver (only with `dnsServers`); default: the relay's `dns.timeout`. */
  dnsTimeout: duration().optional(),
  /** Per-domain routes, checked before MX. Keys: `example.com` (exact) or `.example.com` (its subdomains). */
  routes: z.record(z.string().min(1), hopSchema).default({}),
  /** Every other domain goes here instead of to its MX hosts. */
  smarthost: hopSchema.optional(),
  /** More addresses that reach this relay (e.g. a public IP NATed to it): never delivered to. */
  ownAddresses: z.array(ip).default([]),
  /** MX records considered per domain, most preferred first. */
  maxMxHosts: z.number().int().min(1).max(100).default(10),
  /** Addresses tried per domain and attempt, in total. */
  maxAddresses: z.number().int().min(1).max(100).default(20),
  /** MTA-STS (RFC 8461) for MX delivery (not for static routes or the smart host). */
  mtaSts: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** PEM file of the CAs trusted for policy hosts and, in enforce mode, MX hosts; default Node's CA store. */
      ca: z.string().min(1).optional(),
      /** HTTPS port of the policy host; RFC 8461 says 443 (tests use a high port). */
      port: z.number().int().min(1).max(65535).default(443),
      fetchTimeout: duration().default(10_000),
      maxPolicySize: z.number().int().min(1024).max(1024 * 1024).default(64 * 1024),
      /** How often cached policies are fetched again (before they expire). */
      refreshInterval: duration().default(86_400_000),
      /** JSON file the policy cache survives restarts in (relative to the config file); default memory only. */
      cacheFile: z.string().min(1).optional(),
      /** How often the TLS-RPT style counters are logged. */
      reportInterval: duration().default(86_400_000),
    })
    .prefault({}),
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
  async setup(opts, ctx) {
    const stsResults = ctx.metrics.counter<'result'>({ name: 'mta_sts_results_total', help: 'Deliveries to domains with an MTA-STS policy by TLS-RPT result type (success, or the failure type); per-domain counts are in the log report', labelNames: ['result'] });
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

    const stsOpts = opts.mtaSts;
    let ca: string | undefined;
    if (stsOpts.ca) {
      const file = path.resolve(ctx.configDir, stsOpts.ca);
      try {
        ca = readFileSync(file, 'utf8');
      } catch (err) {
        throw new Error(`mtaSts.ca: cannot read ${file}: ${(err as Error).message}`);
      }
    }
    const sts = stsOpts.enabled
      ? new MtaSts(resolver as unknown as ConstructorParameters<typeof MtaSts>[0], {
          ca,
          port: stsOpts.port,
          fetchTimeout: stsOpts.fetchTimeout,
          maxPolicySize: stsOpts.maxPolicySize,
          refreshInterval: stsOpts.refreshInterval,
          cacheFile: stsOpts.cacheFile ? path.resolve(ctx.configDir, stsOpts.cacheFile) : undefined,
        }, ctx.log)
      : undefined;
    await sts?.start();
    if (sts) {
      ctx.container.registerInstance(MtaStsToken, sts);
      // Every TLS-RPT style count (policy fetch and MX validation too, not only delivery outcomes).
      sts.onCount = (_domain, type, n) => stsResults.inc({ result: type }, n);
    }
    const report = sts ? setInterval(() => ctx.log.info({ tlsReport: sts.report() }, 'MTA-STS: TLS report counters'), stsOpts.reportInterval) : undefined;
    report?.unref();
    /** Recipient domain → the policy mode its last route used, for the delivery observers. */
    const modeOf = (domain: string) => sts?.cached(domain)?.mode;

    /** MX routing under the domain's MTA-STS policy (RFC 8461 section 5). */
    const routeMx = async (d: string): Promise<NextHop | Verdict> => {
      const policy = sts && !d.startsWith('[') ? await sts.policyFor(d) : undefined;
      if (!policy || policy.mode === 'none') return router.route(d);
      if (policy.mode === 'enforce') {
        const result = await router.route(d, (mx) => mxAllowed(mx, policy));
        if ('kind' in result) {
          if (result.reply?.enhanced === '4.7.5') sts!.count(d, 'validation-failure');
          ctx.log.warn({ domain: d, policy: policy.mx, reply: result.reply }, 'MTA-STS enforce: no MX host matches the policy, deferred');
          return result;
        }
        // Only verified TLS to a host named in the policy: a failed check defers, never clear text.
        return { ...result, tls: 'verify', ca, name: `${result.name ?? `mx:${d}`} (mta-sts enforce)` };
      }
      // testing: deliver as without a policy, and report what enforce would have refused.
      const result = await router.route(d);
      if (!('kind' in result)) {
        const names = [...new Set(result.hosts.map((h) => h.name).filter((n): n is string => !!n))];
        const outside = names.filter((n) => !mxAllowed(n, policy));
        if (outside.length) {
          sts!.count(d, 'validation-failure');
          ctx.log.warn({ domain: d, mx: outside, policy: policy.mx }, 'MTA-STS testing: MX hosts outside the policy (delivered anyway; enforce would defer)');
        }
      }
      return result;
    };

    return {
      hooks: {
        async route(domain): Promise<NextHop | Verdict> {
          const d = normaliseName(domain);
          const r = findStaticRoute(routes, d);
          const result = r
            ? await router.routeConfigured(d, r, `static:${d}`)
            : smarthost
              ? await router.routeConfigured(d, smarthost, 'smarthost')
              : await routeMx(d);
          if ('kind' in result) ctx.log.info({ domain: d, reply: result.reply }, 'no next hop');
          else ctx.log.debug({ domain: d, hop: result.name, hosts: result.hosts }, 'routed');
          return result;
        },
        // TLS-RPT style outcomes (RFC 8460 result types) for domains with a policy.
        delivered(e) {
          const d = normaliseName(e.recipient.slice(e.recipient.lastIndexOf('@') + 1));
          if (sts && modeOf(d) && modeOf(d) !== 'none') {
            sts.count(d, 'success');
          }
        },
        deferred(e) {
          const d = normaliseName(e.recipient.slice(e.recipient.lastIndexOf('@') + 1));
          if (!sts || modeOf(d) !== 'enforce') return;
          const type = tlsFailureType(e.response);
          if (!type) return;
          sts.count(d, type);
          ctx.log.warn({ domain: d, rcpt: e.recipient, response: e.response, result: type }, 'MTA-STS enforce: TLS to the MX failed, deferred');
        },
      },
      close() {
        if (report) clearInterval(report);
        sts?.stop();
      },
    };
  },
});

/** The RFC 8460 result type of a failed delivery's response, when it is a TLS failure. */
function tlsFailureType(response: string): 'starttls-not-supported' | 'certificate-host-mismatch' | 'certificate-not-trusted' | undefined {
  if (/altnames|Hostname\/IP does not match|ERR_TLS_CERT_ALTNAME_INVALID/i.test(response)) return 'certificate-host-mismatch';
  if (/certificate|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|CERT_/i.test(response)) return 'certificate-not-trusted';
  if (/STARTTLS|ETLS/i.test(response)) return 'starttls-not-supported';
  return undefined;
}

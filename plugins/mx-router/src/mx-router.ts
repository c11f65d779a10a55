import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import { reject, tempfail, type NextHop, type Verdict } from '@portcullis/core';
import { classifyDnsError, describeDnsCode } from './dns-errors.js';
import { normaliseName, orderAddresses, orderMx, type IpPreference, type MxRecord, type Random } from './mx-order.js';
import type { OwnAddresses } from './own-addresses.js';

/** The part of node:dns/promises' Resolver the router uses. */
export interface DnsResolver {
  resolveMx(name: string): Promise<MxRecord[]>;
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
}

/** A configured next hop: `host` is an IP literal or a name resolved through the router's resolver. */
export interface ConfiguredHop {
  readonly hosts: ReadonlyArray<{ readonly host: string; readonly port: number }>;
  readonly tls: 'none' | 'opportunistic' | 'required';
  readonly auth?: { readonly user: string; readonly pass: string };
}

export interface MxRouterOptions {
  /** SMTP port of MX hosts (25 in production). */
  readonly port: number;
  readonly ipPreference: IpPreference;
  /** TLS towards MX hosts. */
  readonly tls: 'none' | 'opportunistic' | 'required';
  /** MX records considered per domain, most preferred first. */
  readonly maxMxHosts: number;
  /** Addresses handed to the SMTP client per domain, in total. */
  readonly maxAddresses: number;
  /** Where we listen, read at each lookup. */
  readonly ownAddresses: () => OwnAddresses;
  readonly random?: Random;
}

interface HostAddresses {
  readonly addresses: string[];
  /** The DNS code of a temporary failure, if one family failed temporarily. */
  readonly temporary?: string;
}

const LOOP_TEXT = (domain: string) => `Mail for ${domain} loops back to myself (all remaining next hops are my own addresses)`;

/**
 * Resolves a recipient domain to a next hop of IP literals (RFC 5321 section 5.1):
 *
 *   [ip] literal            → that address
 *   MX records              → hosts by preference (equal ones shuffled) → A/AAAA of each
 *   null MX (RFC 7505)      → 556 5.1.10, bounce
 *   no MX (NODATA)          → implicit MX: A/AAAA of the domain itself
 *   NXDOMAIN                → 550 5.1.2, bounce
 *   SERVFAIL, timeout, ...  → 451 4.4.3, retried later
 *   every host is us        → 554 5.4.6 (mail loop), bounce
 */
export class MxRouter {
  constructor(
    private readonly resolver: DnsResolver,
    private readonly opts: MxRouterOptions,
  ) {}

  /**
   * Routes a domain by DNS. `allowMx`, when given (an MTA-STS policy in enforce mode), keeps only
   * the MX hosts it accepts; when it accepts none the recipient is deferred, never sent elsewhere.
   */
  async route(rawDomain: string, allowMx?: (exchange: string) => boolean): Promise<NextHop | Verdict> {
    const domain = normaliseName(rawDomain);
    const literal = addressLiteral(domain);
    if (literal !== undefined) {
      if (!literal) return reject(550, '5.1.2', `Invalid address literal ${rawDomain}`);
      return this.finish(domain, [{ host: literal, port: this.opts.port }], 'literal');
    }
    // An internationalised domain is looked up by its A-label (RFC 5890); `domainToASCII` gives ''
    // for a name that cannot be one.
    const ascii = /^[\x00-\x7f]*$/.test(domain) ? domain : domainToASCII(domain);
    if (!ascii || !/^[a-z0-9_.-]+$/.test(ascii) || ascii.includes('..') || ascii.startsWith('.')) {
      return reject(550, '5.1.2', `Invalid recipient domain ${JSON.stringify(rawDomain)}`);
    }
    return this.routeByDns(ascii, allowMx);
  }

  private async routeByDns(domain: string, allowMx?: (exchange: string) => boolean): Promise<NextHop | Verdict> {
    let records: MxRecord[];
    try {
      records = await this.resolver.resolveMx(domain);
    } catch (err) {
      const f = classifyDnsError(err);
      if (f.kind === 'nxdomain') return reject(550, '5.1.2', `Domain ${domain} does not exist (DNS: NXDOMAIN)`);
      if (f.kind === 'temporary') return tempfail(451, '4.4.3', `MX lookup for ${domain} failed (DNS: ${describeDnsCode(f.code)}), will retry`);
      return this.implicitMx(domain, allowMx);
    }
    if (!records.length) return this.implicitMx(domain, allowMx);

    // RFC 7505: a single MX with the root as exchange says the domain takes no mail. A null MX
    // mixed with real ones is a misconfiguration; the real ones are used.
    const real = records.filter((r) => normaliseName(r.exchange) !== '');
    if (!real.length) return reject(556, '5.1.10', `Domain ${domain} accepts no mail (null MX, RFC 7505)`);

    const allowed = allowMx ? real.filter((r) => allowMx(normaliseName(r.exchange))) : real;
    if (!allowed.length) {
      return tempfail(451, '4.7.5', `MTA-STS policy of ${domain} allows none of its MX hosts (${real.map((r) => normaliseName(r.exchange)).join(', ')}), will retry`);
    }
    const ordered = orderMx(allowed, this.opts.random).slice(0, this.opts.maxMxHosts);
    const resolved = await Promise.all(ordered.map((mx) => this.addressesOf(mx.exchange)));
    const own = this.opts.ownAddresses();

    // RFC 5321 section 5.1: if we are one of the MX hosts, only more preferred hosts may be used.
    let cutoff = Infinity;
    ordered.forEach((mx, i) => {
      if (resolved[i]!.addresses.some((a) => own.has(a, this.opts.port))) cutoff = Math.min(cutoff, mx.priority);
    });
    const hosts: Array<{ host: string; port: number; name?: string }> = [];
    let temporary: string | undefined;
    ordered.forEach((mx, i) => {
      if (mx.priority >= cutoff) return;
      const r = resolved[i]!;
      temporary ??= r.temporary;
      for (const host of r.addresses) hosts.push({ host, port: this.opts.port, name: normaliseName(mx.exchange) });
    });
    if (!hosts.length) {
      if (temporary) return tempfail(451, '4.4.3', `Address lookup for the MX hosts of ${domain} failed (DNS: ${describeDnsCode(temporary)}), will retry`);
      if (cutoff !== Infinity) return reject(554, '5.4.6', LOOP_TEXT(domain));
      return reject(550, '5.4.4', `No ${this.familyText()} address found for any MX host of ${domain}`);
    }
    return this.finish(domain, hosts, 'mx');
  }

  /** A static route or smart host: names are resolved here, since the SMTP client takes IP literals only. */
  async routeConfigured(domain: string, hop: ConfiguredHop, name: string): Promise<NextHop | Verdict> {
    const hosts: Array<{ host: string; port: number }> = [];
    let failure: string | undefined;
    for (const h of hop.hosts) {
      const ip = ipLiteral(h.host);
      if (ip) {
        hosts.push({ host: ip, port: h.port });
        continue;
      }
      const r = await this.addressesOf(h.host);
      if (!r.addresses.length) failure ??= `${h.host}: ${r.temporary ? describeDnsCode(r.temporary) : `no ${this.familyText()} address`}`;
      for (const a of r.addresses) hosts.push({ host: a, port: h.port });
    }
    const own = this.opts.ownAddresses();
    const kept = dedupe(hosts).filter((h) => !own.has(h.host, h.port));
    if (!kept.length && hosts.length) return reject(554, '5.4.6', LOOP_TEXT(domain));
    // A broken static route is the operator's to fix: defer rather than bounce the sender's mail.
    if (!kept.length) return tempfail(451, '4.4.3', `Cannot resolve the configured next hop for ${domain} (${failure ?? 'no hosts'}), will retry`);
    return { hosts: kept.slice(0, this.opts.maxAddresses), tls: hop.tls, auth: hop.auth, name };
  }

  /** A and/or AAAA records of a host, in preference order. */
  async addressesOf(rawName: string): Promise<HostAddresses> {
    const name = normaliseName(rawName);
    const literal = ipLiteral(name);
    if (literal) return { addresses: [literal] }; // an IP as MX exchange is wrong (RFC 5321 5.1), but unambiguous
    const pref = this.opts.ipPreference;
    const [v4, v6] = await Promise.allSettled([
      pref === 'ipv6-only' ? Promise.resolve([]) : this.resolver.resolve4(name),
      pref === 'ipv4-only' ? Promise.resolve([]) : this.resolver.resolve6(name),
    ]);
    let temporary: string | undefined;
    const pick = (r: PromiseSettledResult<string[]>): string[] => {
      if (r.status === 'fulfilled') return r.value;
      const f = classifyDnsError(r.reason);
      if (f.kind === 'temporary') temporary ??= f.code;
      return [];
    };
    const addresses = orderAddresses(pick(v4), pick(v6), pref).map((a) => ipLiteral(a)).filter((a): a is string => !!a);
    return { addresses, temporary };
  }

  private async implicitMx(domain: string, allowMx?: (exchange: string) => boolean): Promise<NextHop | Verdict> {
    // RFC 5321 section 5.1: no MX records, the domain's own address is an implicit MX of preference 0.
    if (allowMx && !allowMx(domain)) return tempfail(451, '4.7.5', `MTA-STS policy of ${domain} does not allow its implicit MX ${domain}, will retry`);
    const r = await this.addressesOf(domain);
    if (!r.addresses.length) {
      if (r.temporary) return tempfail(451, '4.4.3', `Address lookup for ${domain} failed (DNS: ${describeDnsCode(r.temporary)}), will retry`);
      return reject(550, '5.1.2', `Domain ${domain} has no MX and no ${this.familyText()} address record`);
    }
    return this.finish(domain, r.addresses.map((host) => ({ host, port: this.opts.port, name: domain })), 'mx');
  }

  private finish(domain: string, hosts: Array<{ host: string; port: number; name?: string }>, kind: string): NextHop | Verdict {
    const own = this.opts.ownAddresses();
    const kept = dedupe(hosts).filter((h) => !own.has(h.host, h.port));
    if (!kept.length) return reject(554, '5.4.6', LOOP_TEXT(domain));
    return { hosts: kept.slice(0, this.opts.maxAddresses), tls: this.opts.tls, name: `${kind}:${domain}` };
  }

  private familyText(): string {
    return this.opts.ipPreference === 'ipv4-only' ? 'IPv4' : this.opts.ipPreference === 'ipv6-only' ? 'IPv6' : 'IPv4 or IPv6';
  }
}

/** The IP inside `[1.2.3.4]` / `[IPv6:::1]`; '' when bracketed but invalid; undefined when not a literal. */
export function addressLiteral(domain: string): string | undefined {
  const m = /^\[(.*)\]$/.exec(domain);
  if (!m) return undefined;
  const inner = m[1]!.replace(/^ipv6:/i, '');
  const ip = ipLiteral(inner);
  if (!ip) return '';
  if (isIP(ip) === 6 && !/^ipv6:/i.test(m[1]!)) return ''; // RFC 5321 4.1.3: IPv6 literals carry the tag
  return ip;
}

function ipLiteral(text: string): string | undefined {
  const bare = text.replace(/^\[|\]$/g, '');
  return isIP(bare) ? bare.toLowerCase() : undefined;
}

function dedupe<T extends { host: string; port: number }>(hosts: T[]): T[] {
  const seen = new Set<string>();
  return hosts.filter((h) => {
    const k = `${h.host} ${h.port}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

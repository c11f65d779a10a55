import ipaddr from 'ipaddr.js';
import { z } from 'zod';

/**
 * A list of client networks, parsed strictly: full IPv4 / IPv6 addresses or CIDRs only, no
 * shorthand (`192.168.1/24`), no host bits (`10.0.0.5/8`). Kept in this one small function so
 * it can be swapped for core's shared network parser.
 */
export interface NetworkMatcher {
  readonly networks: readonly string[];
  matches(ip: string): boolean;
}

export function parseNetwork(text: string): [ipaddr.IPv4 | ipaddr.IPv6, number] | string {
  const [addr, bits, extra] = text.split('/');
  if (extra !== undefined || !addr) return `expected an address or a CIDR such as 10.0.0.0/8, got ${JSON.stringify(text)}`;
  const v4 = ipaddr.IPv4.isValidFourPartDecimal(addr);
  if (!v4 && !(addr.includes(':') && ipaddr.IPv6.isValid(addr))) return `expected a full IPv4 or IPv6 address, got ${JSON.stringify(text)}`;
  const ip = ipaddr.parse(addr);
  const max = ip.kind() === 'ipv4' ? 32 : 128;
  const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return `expected a prefix length 0-${max}, got ${JSON.stringify(text)}`;
  const base = ip.kind() === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(`${addr}/${prefix}`) : ipaddr.IPv6.networkAddressFromCIDR(`${addr}/${prefix}`);
  if (base.toString() !== ip.toString()) return `host bits set in ${JSON.stringify(text)}: did you mean ${base.toString()}/${prefix}?`;
  return [ip, prefix];
}

export function networkMatcher(list: readonly string[]): NetworkMatcher {
  const parsed = list.map((n) => {
    const p = parseNetwork(n);
    if (typeof p === 'string') throw new TypeError(p);
    return p;
  });
  return {
    networks: list,
    matches(ip: string) {
      if (!parsed.length || !ipaddr.isValid(ip)) return false;
      let a = ipaddr.parse(ip);
      if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) a = (a as ipaddr.IPv6).toIPv4Address();
      return parsed.some(([net, bits]) => net.kind() === a.kind() && a.match(net, bits));
    },
  };
}

/** zod: an array of networks, each checked by parseNetwork (the error names the index). */
export const networkList = () =>
  z.array(
    z.string().superRefine((v, ctx) => {
      const p = parseNetwork(v);
      if (typeof p === 'string') ctx.addIssue({ code: 'custom', message: p });
    }),
  );

import ipaddr from 'ipaddr.js';

/*
 * Trusted-network matching, kept in one small function so it can give way to core's shared
 * network parser once that exists (DESIGN: trust parsing is core's job).
 */
export type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** Parses `10.0.0.0/8`, `::1/128` or a single address; throws a message naming the value. */
export function parseNetwork(value: string): Cidr {
  const v = value.trim();
  try {
    if (v.includes('/')) return ipaddr.parseCIDR(v);
    const addr = ipaddr.parse(v);
    return [addr, addr.kind() === 'ipv4' ? 32 : 128];
  } catch {
    throw new Error(`${JSON.stringify(value)} is not a network (10.0.0.0/8, ::1/128 or a single address)`);
  }
}

/** Whether `ip` lies in one of `nets`; an IPv4-mapped IPv6 address counts as its IPv4 address. */
export function inNetworks(ip: string, nets: readonly Cidr[]): boolean {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.process(ip);
  } catch {
    return false;
  }
  return nets.some(([net, bits]) => net.kind() === addr.kind() && addr.match([net, bits] as never));
}

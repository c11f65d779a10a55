// Same matcher as @portcullis/relay-policy (copied: a plugin must install alone).
import ipaddr from 'ipaddr.js';

export type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** Parses `10.0.0.0/8`, `::1/128`, or a bare address (a /32 or /128). Throws with the bad value. */
export function parseCidr(value: string): Cidr {
  const v = value.trim();
  if (v.includes('/')) return ipaddr.parseCIDR(v);
  const addr = ipaddr.parse(v);
  return [addr, addr.kind() === 'ipv4' ? 32 : 128];
}

/** Whether `ip` lies in any of `nets`. IPv4-mapped IPv6 (`::ffff:10.1.2.3`) counts as its IPv4. */
export function inNetworks(ip: string, nets: readonly Cidr[]): boolean {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.process(ip);
  } catch {
    return false;
  }
  return nets.some(([net, bits]) => {
    let candidate = addr;
    if (net.kind() !== candidate.kind()) {
      if (net.kind() === 'ipv6' && candidate.kind() === 'ipv4') candidate = (candidate as ipaddr.IPv4).toIPv4MappedAddress();
      else return false;
    }
    return candidate.match([net, bits] as Parameters<typeof candidate.match>[0]);
  });
}

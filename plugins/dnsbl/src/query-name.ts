import ipaddr from 'ipaddr.js';

/**
 * The DNSBL query name for a client (RFC 5782): IPv4 octets reversed (`2.0.0.127.zone`); IPv6 as
 * 32 reversed nibbles (`1.0.0.0.[...].ip6 order`.zone). IPv4-mapped IPv6 clients are queried as IPv4.
 */
export function queryName(ip: string, zone: string): string | undefined {
  let a: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    a = ipaddr.process(ip);
  } catch {
    return undefined;
  }
  if (a.kind() === 'ipv4') return `${[...(a as ipaddr.IPv4).octets].reverse().join('.')}.${zone}`;
  const hex = (a as ipaddr.IPv6).toNormalizedString().split(':').map((g) => g.padStart(4, '0')).join('');
  return `${[...hex].reverse().join('.')}.${zone}`;
}

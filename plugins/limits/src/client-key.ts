import ipaddr from 'ipaddr.js';

/**
 * The key a client is counted under: its IPv4 address (IPv4-mapped IPv6 read as IPv4), or its IPv6
 * /prefix, since one subscriber usually gets a whole /64 and could otherwise rotate addresses.
 */
export function clientKey(ip: string, ipv6Prefix: number): string {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.process(ip);
  } catch {
    return ip;
  }
  if (addr.kind() === 'ipv4') return addr.toString();
  return `${ipaddr.IPv6.networkAddressFromCIDR(`${addr.toString()}/${ipv6Prefix}`).toString()}/${ipv6Prefix}`;
}

import ipaddr from 'ipaddr.js';

/**
 * The network a client is greylisted under: its IPv4 /`v4` (a sender's pool of outgoing servers
 * usually sits in one /24, and may retry from another of them) or its IPv6 /`v6` (one site's
 * range). IPv4-mapped IPv6 counts as IPv4. An address that does not parse is its own key.
 */
export function clientNetwork(ip: string, v4: number, v6: number): string {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.process(ip);
  } catch {
    return ip;
  }
  const bits = addr.kind() === 'ipv4' ? v4 : v6;
  const net = addr.kind() === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(`${addr.toString()}/${bits}`) : ipaddr.IPv6.networkAddressFromCIDR(`${addr.toString()}/${bits}`);
  return `${net.toString()}/${bits}`;
}

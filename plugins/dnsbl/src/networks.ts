import ipaddr from 'ipaddr.js';

/**
 * The one place this plugin parses networks. Kept small on purpose: it is swapped for core's strict
 * network parser once that is exported (same contract: a full CIDR or a bare address, no host bits).
 */
export type Network = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** `10.0.0.0/8`, `fd00::/8` or a bare address. Throws on shorthand (`10/8`) or host bits (`10.0.0.1/8`). */
export function parseNetwork(value: string): Network {
  const v = value.trim();
  const [text, bitsText] = v.split('/', 2) as [string, string | undefined];
  const v4 = /^\d{1,3}(\.\d{1,3}){3}$/.test(text);
  if (!v4 && !(text.includes(':') && ipaddr.IPv6.isValid(text))) throw new Error(`not an IP address: ${text}`);
  const addr = ipaddr.parse(text);
  const max = addr.kind() === 'ipv4' ? 32 : 128;
  const bits = bitsText === undefined ? max : /^\d{1,3}$/.test(bitsText) ? Number(bitsText) : NaN;
  if (!(bits >= 0 && bits <= max)) throw new Error(`bad prefix length in ${v}`);
  const base = addr.kind() === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(`${text}/${bits}`) : ipaddr.IPv6.networkAddressFromCIDR(`${text}/${bits}`);
  if (base.toString() !== addr.toString()) throw new Error(`host bits set in ${v} (the network is ${base.toString()}/${bits})`);
  return [addr, bits];
}

/** The client address, IPv4-mapped IPv6 (`::ffff:10.1.2.3`) read as IPv4; undefined when unparsable. */
export function clientAddress(ip: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  try {
    return ipaddr.process(ip);
  } catch {
    return undefined;
  }
}

export function inNetworks(ip: string, nets: readonly Network[]): boolean {
  const addr = clientAddress(ip);
  if (!addr) return false;
  return nets.some(([net, bits]) => net.kind() === addr.kind() && addr.match([net, bits] as Parameters<typeof addr.match>[0]));
}

/** The key a client is counted under: its IPv4 address, or its IPv6 /prefix (one subscriber's range). */
export function clientKey(ip: string, ipv6Prefix: number): string {
  const addr = clientAddress(ip);
  if (!addr) return ip;
  if (addr.kind() === 'ipv4') return addr.toString();
  return `${ipaddr.IPv6.networkAddressFromCIDR(`${addr.toString()}/${ipv6Prefix}`).toString()}/${ipv6Prefix}`;
}

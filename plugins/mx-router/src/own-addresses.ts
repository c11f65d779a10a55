import os from 'node:os';
import ipaddr from 'ipaddr.js';

/** An IP in canonical text (IPv4-mapped IPv6 becomes IPv4), or undefined when not an IP. */
export function canonicalIp(text: string): string | undefined {
  const bare = text.replace(/^\[|\]$/g, '');
  if (!ipaddr.isValid(bare)) return undefined;
  const a = ipaddr.parse(bare);
  if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) return (a as ipaddr.IPv6).toIPv4Address().toString();
  return a.toString();
}

/** Splits `host:port` / `[v6]:port` / `v6:port` (as core writes listen addresses) at the last colon. */
export function splitHostPort(entry: string): { host: string; port: number } | undefined {
  const i = entry.lastIndexOf(':');
  if (i <= 0) return undefined;
  const port = Number(entry.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) return undefined;
  return { host: entry.slice(0, i).replace(/^\[|\]$/g, ''), port };
}

function localInterfaceAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(os.networkInterfaces())) for (const i of list ?? []) {
    const ip = canonicalIp(i.address.replace(/%.*$/, ''));
    if (ip) out.push(ip);
  }
  return out;
}

function isLoopback(ip: string): boolean {
  return ipaddr.parse(ip).range() === 'loopback';
}

/**
 * The addresses at which this relay itself accepts mail: delivering there would be a mail loop
 * (RFC 5321 section 5.1). Built from the listeners (`host:port`) plus addresses the operator names
 * (`ownAddresses`, e.g. a public IP that NAT maps to us), which count for every listening port.
 * A wildcard listener (`0.0.0.0`, `::`) stands for every interface address and all of 127.0.0.0/8.
 * A listener on port 0 (any free port, tests only) cannot be matched and is left out.
 */
export class OwnAddresses {
  private readonly exact = new Set<string>();
  private readonly wildcardPorts = new Map<number, 'ipv4' | 'any'>();
  private readonly extra = new Set<string>();
  private readonly ports = new Set<number>();
  private readonly interfaces: Set<string>;

  constructor(listen: readonly string[], extra: readonly string[] = [], interfaces: readonly string[] = localInterfaceAddresses()) {
    this.interfaces = new Set(interfaces.map((a) => canonicalIp(a)).filter((a): a is string => !!a));
    for (const entry of listen) {
      const hp = splitHostPort(entry);
      if (!hp || hp.port === 0) continue;
      this.ports.add(hp.port);
      if (hp.host === '0.0.0.0') {
        if (this.wildcardPorts.get(hp.port) !== 'any') this.wildcardPorts.set(hp.port, 'ipv4');
      } else if (hp.host === '::') {
        this.wildcardPorts.set(hp.port, 'any');
      } else if (hp.host === 'localhost') {
        this.exact.add(`127.0.0.1 ${hp.port}`).add(`::1 ${hp.port}`);
      } else {
        const ip = canonicalIp(hp.host);
        if (ip) this.exact.add(`${ip} ${hp.port}`);
      }
    }
    for (const a of extra) {
      const ip = canonicalIp(a);
      if (ip) this.extra.add(ip);
    }
  }

  /** True when `ip:port` reaches this relay. */
  has(address: string, port: number): boolean {
    const ip = canonicalIp(address);
    if (!ip) return false;
    if (this.exact.has(`${ip} ${port}`)) return true;
    if (this.extra.has(ip) && this.ports.has(port)) return true;
    const wildcard = this.wildcardPorts.get(port);
    if (wildcard && (this.interfaces.has(ip) || isLoopback(ip))) return wildcard === 'any' || ipaddr.parse(ip).kind() === 'ipv4';
    return false;
  }
}

import ipaddr from 'ipaddr.js';
import { z } from 'zod';

/**
 * The one parser for every option that grants trust or routes by address (relay-policy's
 * trustedNetworks, attachments' trustedNetworks, listener proxy peers, and every plugin to come),
 * so that no two parts of the relay can read the same text as different networks.
 *
 * Strict on purpose. Accepted: a full dotted-quad IPv4 address (`192.0.2.7`), a full IPv6
 * address (`2001:db8::7`), or either with a prefix length (`10.0.0.0/8`, `fd00::/8`) whose host
 * bits are zero. Everything a reader could take two ways is refused with the canonical form:
 *   - inet_aton shorthand (`192.168.1/24`, `127.1`, `10`): ipaddr.js and the C library read
 *     `192.168.1` as 192.168.0.1, not 192.168.1.0; the operator almost surely meant the latter;
 *   - host bits set (`10.0.0.5/8`): the network (10.0.0.0/8) or the one address (10.0.0.5/32)?
 *   - leading zeros (`010.0.0.1`: octal to some parsers, decimal to others), hex parts, zone ids
 *     (`fe80::1%eth0`), IPv4-mapped IPv6 (`::ffff:10.0.0.1`: write the IPv4 network);
 *   - wildcards (`*`, `any`): `0.0.0.0/0` and `::/0` say "everyone" explicitly.
 * Numbers (YAML reads an unquoted `127.1` as the number 127.1) get a hint to quote the value.
 */

/** One parsed network: `10.0.0.0/8`. A single address is a /32 or /128. */
export interface Network {
  readonly address: ipaddr.IPv4 | ipaddr.IPv6;
  readonly prefix: number;
  readonly kind: 'ipv4' | 'ipv6';
  /** Canonical text, always with the prefix: `10.0.0.0/8`, `2001:db8::7/128`. */
  readonly text: string;
}

/** A value that is not a network; the message shows what to write instead. */
export class NetworkSyntaxError extends Error {
  constructor(
    readonly value: unknown,
    message: string,
  ) {
    super(message);
    this.name = 'NetworkSyntaxError';
  }
}

const EXAMPLES = 'a network such as 10.0.0.0/8 or fd00::/8, or one address such as 192.0.2.7';
const DECIMAL_OCTET = /^(0|[1-9]\d{0,2})$/;
const PREFIX = /^(0|[1-9]\d{0,2})$/;

function fail(value: unknown, why: string): never {
  throw new NetworkSyntaxError(value, why);
}

/** What inet_aton (and ipaddr.js) would make of a shorthand IPv4 address, for the error text. */
function inetAtonReading(addr: string): string | undefined {
  try {
    return ipaddr.IPv4.parse(addr).toString();
  } catch {
    return undefined;
  }
}

/** `192.168.1` → `192.168.1.0`: the zero-padded reading an operator usually means. */
function paddedReading(addr: string): string | undefined {
  const parts = addr.split('.');
  if (parts.length < 1 || parts.length > 3 || !parts.every((p) => DECIMAL_OCTET.test(p) && Number(p) <= 255)) return undefined;
  while (parts.length < 4) parts.push('0');
  return parts.join('.');
}

function parseIPv4(addr: string, original: string, prefix: string | undefined): ipaddr.IPv4 {
  const parts = addr.split('.');
  const shown = JSON.stringify(original);
  if (parts.length === 4 && parts.every((p) => /^\d+$/.test(p))) {
    const bad = parts.find((p) => !DECIMAL_OCTET.test(p) || Number(p) > 255);
    if (bad !== undefined) {
      if (/^0\d/.test(bad) && Number(bad) <= 255) {
        const fixed = parts.map((p) => String(Number(p))).join('.') + (prefix !== undefined ? `/${prefix}` : '');
        fail(original, `${shown} has a part with a leading zero, which some software reads as octal; write ${fixed}`);
      }
      fail(original, `${shown} is not an IPv4 address: each of the four parts must be 0-255; expected ${EXAMPLES}`);
    }
    return ipaddr.IPv4.parse(parts.map(Number).join('.'));
  }
  if (/^[\d.]+$/.test(addr) && parts.length < 4 && parts.every((p) => p !== '')) {
    const padded = paddedReading(addr);
    const aton = inetAtonReading(addr);
    if (prefix !== undefined) {
      const read = aton && aton !== padded ? ` (inet_aton and ipaddr.js read it as ${aton}/${prefix}, not ${padded}/${prefix})` : '';
      fail(original, `${shown} is shorthand, which different software reads differently${read}; write all four parts${padded ? `, e.g. ${padded}/${prefix}` : ''}`);
    }
    const alt = padded ? ` or the network ${padded}/${parts.length * 8}` : '';
    fail(original, `${shown} is shorthand, which different software reads differently; write all four parts: the address ${aton ?? '?'} (as inet_aton reads it)${alt}`);
  }
  if (/^(0x[0-9a-f]+|\d+)(\.(0x[0-9a-f]+|\d+))*$/i.test(addr)) {
    const aton = inetAtonReading(addr);
    fail(original, `${shown} uses hexadecimal or non-decimal parts; write four decimal parts${aton ? `, e.g. ${aton}${prefix !== undefined ? `/${prefix}` : ''}` : ''}`);
  }
  fail(original, `${shown} is not an IP address; expected ${EXAMPLES}`);
}

function parseIPv6(addr: string, original: string): ipaddr.IPv6 {
  const shown = JSON.stringify(original);
  if (addr.includes('%')) fail(original, `${shown} has a zone id (%...), which has no meaning in a network list; write the address without it, e.g. ${addr.slice(0, addr.indexOf('%'))}`);
  if (!ipaddr.IPv6.isValid(addr)) fail(original, `${shown} is not an IPv6 address; expected ${EXAMPLES}`);
  const a = ipaddr.IPv6.parse(addr);
  if (a.isIPv4MappedAddress()) {
    fail(original, `${shown} is an IPv4-mapped IPv6 address; write the IPv4 form (${a.toIPv4Address().toString()}), which also matches IPv4 clients of a dual-stack listener`);
  }
  // An embedded dotted quad in another position (`::10.0.0.1`) is legal but rarely meant.
  if (addr.includes('.')) fail(original, `${shown} embeds an IPv4 address in IPv6; write it as ${a.toString()} or as the IPv4 address`);
  return a;
}

/**
 * Parses one network. Throws NetworkSyntaxError with a message that shows the canonical form.
 * The message does not name the key: callers (the zod helpers below) add the key path.
 */
export function parseNetwork(value: unknown): Network {
  if (typeof value === 'number') {
    fail(value, `got the number ${value}: YAML reads an unquoted value like 127.1 or 10 as a number; write the full address in quotes, e.g. "127.0.0.1" or "10.0.0.0/8"`);
  }
  if (typeof value !== 'string') fail(value, `expected ${EXAMPLES} as a string, got ${value === null ? 'null' : typeof value}`);
  const v = value.trim();
  if (v === '') fail(value, `empty value; expected ${EXAMPLES}`);
  if (/^(\*|any|all|everyone|0\/0)$/i.test(v)) {
    fail(value, `${JSON.stringify(value)} is not accepted: there is no wildcard; to mean every address, write 0.0.0.0/0 (and ::/0 for IPv6)`);
  }
  const slash = v.indexOf('/');
  const addrText = slash >= 0 ? v.slice(0, slash) : v;
  const prefixText = slash >= 0 ? v.slice(slash + 1) : undefined;
  const isV6 = addrText.includes(':');
  const address = isV6 ? parseIPv6(addrText, value) : parseIPv4(addrText, value, prefixText);
  const max = isV6 ? 128 : 32;
  let prefix = max;
  if (prefixText !== undefined) {
    if (!PREFIX.test(prefixText) || Number(prefixText) > max) {
      fail(value, `${JSON.stringify(value)} has a bad prefix length "/${prefixText}": expected a whole number 0-${max} without leading zeros`);
    }
    prefix = Number(prefixText);
  }
  const kind = address.kind();
  const netAddr = kind === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(`${address.toString()}/${prefix}`) : ipaddr.IPv6.networkAddressFromCIDR(`${address.toString()}/${prefix}`);
  if (netAddr.toString() !== address.toString()) {
    fail(value, `${JSON.stringify(value)} has host bits set: write the network ${netAddr.toString()}/${prefix}, or the one address ${address.toString()}/${max}`);
  }
  return { address, prefix, kind, text: `${address.toString()}/${prefix}` };
}

/**
 * A parsed list of networks, matched against client addresses. IPv4-mapped IPv6 client addresses
 * (`::ffff:10.1.2.3`, as a dual-stack listener reports IPv4 peers) match their IPv4 networks.
 */
export class NetworkList {
  readonly networks: readonly Network[];
  constructor(networks: readonly Network[]) {
    this.networks = Object.freeze([...networks]);
  }

  /** Parses every entry; throws NetworkSyntaxError naming the entry's position (`[2]: ...`). */
  static parse(values: readonly unknown[]): NetworkList {
    return new NetworkList(
      values.map((v, i) => {
        try {
          return parseNetwork(v);
        } catch (err) {
          if (err instanceof NetworkSyntaxError) throw new NetworkSyntaxError(v, `[${i}]: ${err.message}`);
          throw err;
        }
      }),
    );
  }

  get size(): number {
    return this.networks.length;
  }

  /** True when the list trusts every IPv4 or every IPv6 address (0.0.0.0/0 or ::/0). */
  get everything(): boolean {
    return this.networks.some((n) => n.prefix === 0);
  }

  /** Whether `ip` (as a socket reports it) lies in one of the networks. Not an IP: false. */
  contains(ip: string): boolean {
    if (!this.networks.length) return false;
    const addr = clientAddress(ip);
    if (!addr) return false;
    return this.networks.some((n) => {
      let candidate = addr;
      if (n.kind !== candidate.kind()) {
        if (n.kind === 'ipv6' && candidate.kind() === 'ipv4') candidate = (candidate as ipaddr.IPv4).toIPv4MappedAddress();
        else return false;
      }
      return candidate.match([n.address, n.prefix] as Parameters<typeof candidate.match>[0]);
    });
  }

  /** Canonical texts, e.g. `['10.0.0.0/8', '::1/128']`. */
  toStrings(): string[] {
    return this.networks.map((n) => n.text);
  }

  toString(): string {
    return this.toStrings().join(', ');
  }

  toJSON(): string[] {
    return this.toStrings();
  }
}

/**
 * Client addresses as parsed for `contains`, by the text the socket gave. One client's address is
 * checked against several lists in every session (trusted networks, the disk guard's privileged
 * clients, `bareLineEndings.normalize`, the plugins' own lists), and ipaddr.js parses with regular
 * expressions each time: 1.4 KB of garbage a message on the benchmark's path. Parsed addresses are
 * never changed (`match` and `toIPv4MappedAddress` only read), so one parse serves every list. Bounded:
 * the map is emptied when it reaches CLIENT_CACHE_MAX entries (a scan from many addresses only parses
 * again). A text that is not an address is remembered as null.
 */
const clientCache = new Map<string, ipaddr.IPv4 | ipaddr.IPv6 | null>();
const CLIENT_CACHE_MAX = 4096;

function clientAddress(ip: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  const key = String(ip);
  let addr = clientCache.get(key);
  if (addr !== undefined) return addr;
  try {
    addr = ipaddr.process(key.trim());
  } catch {
    addr = null;
  }
  if (clientCache.size >= CLIENT_CACHE_MAX) clientCache.clear();
  clientCache.set(key, addr);
  return addr;
}

/** Whether a value is a NetworkList (also across two copies of core: checks the shape). */
export function isNetworkList(value: unknown): value is NetworkList {
  return value instanceof NetworkList || (!!value && typeof value === 'object' && typeof (value as NetworkList).contains === 'function' && Array.isArray((value as NetworkList).networks) && typeof (value as NetworkList).toStrings === 'function');
}

/** zod schema for one network option; errors carry the key path from zod, the text from parseNetwork. */
export const network = () =>
  z.unknown().transform((v, ctx): Network => {
    try {
      return parseNetwork(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  }).meta({ docType: 'network' });

/**
 * zod schema for a list of networks (the shape every trust option uses): each bad entry is one
 * problem at its own index (`trustedNetworks[1]: "192.168.1/24" is shorthand ...`). Defaults to empty.
 */
export const networkList = () =>
  z
    .array(network(), { error: (issue) => (issue.input === undefined ? undefined : `expected a list of networks, e.g. [10.0.0.0/8, "fd00::/8"], got ${typeof issue.input === 'string' ? JSON.stringify(issue.input) + ' (a single value: put it in a list)' : typeof issue.input}`) })
    .default([])
    .transform((list) => new NetworkList(list));

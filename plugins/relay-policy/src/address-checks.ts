import { domainToASCII } from 'node:url';
import { isIP } from 'node:net';

/**
 * Why an address is sender-specified routing, or undefined. These are never relayed, whoever the
 * client is and whatever the domain: `%` hack (user%third@hosted), bang paths (third!user@hosted),
 * source routes (@a:user@b), quoted local parts hiding `@`, `%` or `!`, and address literals or bare
 * IPs as the domain (unless allowed).
 */
export function routingTrick(address: string, local: string, domain: string, allowAddressLiterals: boolean): string | undefined {
  if (address.startsWith('@') || /^@[^:]*:/.test(address)) return 'source route';
  if (local.startsWith('"')) return /[@%!]/.test(local) ? 'quoted local part with routing characters' : undefined;
  if (local.includes('%')) return '% hack';
  if (local.includes('!')) return 'bang path';
  if (local.includes('@') || local.includes(':')) return 'source route';
  if (!allowAddressLiterals) {
    if (domain.startsWith('[')) return 'address literal';
    if (isIP(domain)) return 'bare IP address as domain';
  }
  if (!domain) return 'no domain';
  return undefined;
}

/** ASCII (punycode), lower-case, without a trailing dot; '' for a name that is not a valid domain. */
export function normaliseDomain(d: string): string {
  const bare = d.trim().replace(/\.$/, '');
  const wildcard = bare.startsWith('*.');
  const ascii = domainToASCII(wildcard ? bare.slice(2) : bare).toLowerCase();
  return ascii ? (wildcard ? `*.${ascii}` : ascii) : '';
}

/**
 * Looks a recipient domain up among hosted domains: exact names first, then `*.parent` entries for
 * subdomains (the most specific wins). `*.example.com` does not include `example.com` itself.
 */
export function findDomain<T>(domains: ReadonlyMap<string, T>, domain: string): T | undefined {
  const d = normaliseDomain(domain);
  if (!d) return undefined;
  const exact = domains.get(d);
  if (exact) return exact;
  for (let i = d.indexOf('.'); i >= 0; i = d.indexOf('.', i + 1)) {
    const hit = domains.get(`*.${d.slice(i + 1)}`);
    if (hit) return hit;
  }
  return undefined;
}

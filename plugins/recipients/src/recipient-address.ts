import { domainToASCII } from 'node:url';

/** A recipient as every source sees it: lower-cased, the domain in its ASCII (A-label) form. */
export interface RecipientAddress {
  /** `local@domain`, lower-cased, domain in ASCII. The cache key. */
  readonly address: string;
  readonly local: string;
  readonly domain: string;
  /** `user@domain` for `user+tag@domain` (the delimiter configurable), when the local part has a sub-address. */
  readonly base?: string;
}

/**
 * Normalises a domain to its ASCII form: `Bücher.Example` → `xn--bcher-kva.example`. Returns
 * undefined for a name that is not a valid IDN (it cannot be hosted).
 */
export function asciiDomain(domain: string): string | undefined {
  const known = asciiSeen.get(domain);
  if (known !== undefined) return known || undefined;
  const d = domain.trim().replace(/\.$/, '').toLowerCase();
  const a = d ? domainToASCII(d) : '';
  // Bounded: a client naming endless random domains empties it rather than growing it.
  if (asciiSeen.size >= ASCII_SEEN_MAX) asciiSeen.clear();
  asciiSeen.set(domain, a);
  return a || undefined;
}

/**
 * Domains as given → their ASCII form ('' when invalid). Every RCPT names a domain, nearly always
 * one of a few: domainToASCII was the larger part of the plugin's own time per RCPT.
 */
const asciiSeen = new Map<string, string>();
const ASCII_SEEN_MAX = 1_000;

/**
 * Local parts are compared case-insensitively (RFC 5321 lets the receiving server decide; every
 * directory and mailbox server a relay fronts treats them so).
 */
export function recipientAddress(local: string, domain: string, delimiters: string): RecipientAddress | undefined {
  const d = asciiDomain(domain);
  if (!d) return undefined;
  const l = unquote(local).toLowerCase();
  let base: string | undefined;
  if (delimiters) {
    // The first delimiter, not at the start (a plain loop: this runs for every RCPT).
    let i = -1;
    for (const c of delimiters) {
      const at = l.indexOf(c);
      if (at > 0 && (i < 0 || at < i)) i = at;
    }
    if (i > 0) base = `${l.slice(0, i)}@${d}`;
  }
  return { address: `${l}@${d}`, local: l, domain: d, ...(base ? { base } : {}) };
}

/** `"john doe"` → `john doe` (RFC 5321 quoted-string, backslash escapes removed): the same mailbox. */
export function unquote(local: string): string {
  return local.length >= 2 && local.startsWith('"') && local.endsWith('"') ? local.slice(1, -1).replace(/\\(.)/g, '$1') : local;
}

/** Parses `user@domain` or `@domain` from a list or the command line. */
export function parseListEntry(entry: string): { address?: string; domain?: string } | undefined {
  const e = entry.trim();
  const at = e.lastIndexOf('@');
  if (at < 0) return undefined;
  const d = asciiDomain(e.slice(at + 1));
  if (!d) return undefined;
  if (at === 0) return { domain: d };
  return { address: `${e.slice(0, at).toLowerCase()}@${d}` };
}

import { domainToASCII } from 'node:url';
import type { Address } from '../api/types.js';

/**
 * Builds an Address from what smtp-server parsed out of MAIL FROM / RCPT TO. smtp-server turns
 * punycode domains into Unicode; the domain is put back into ASCII (punycode) here, so policy,
 * routing and the next hop only ever see ASCII domains.
 */
export function toAddress(raw: string, args: Record<string, string | boolean> | false | undefined): Address {
  const at = raw.lastIndexOf('@');
  const local = at >= 0 ? raw.slice(0, at) : raw;
  const given = at >= 0 ? raw.slice(at + 1) : '';
  const ascii = given && !given.startsWith('[') ? asciiDomain(given) : given;
  const domain = ascii.toLowerCase().replace(/\.$/, '');
  const address = at >= 0 ? `${local}@${ascii}` : raw;
  const normalisedArgs: Record<string, string | true> = {};
  if (args) for (const [k, v] of Object.entries(args)) normalisedArgs[k.toUpperCase()] = v === true ? true : String(v);
  return { address, local, domain, args: normalisedArgs };
}

/**
 * `domainToASCII(d) || d`, remembered: a relay sees the same few domains in every transaction, and the
 * conversion (IDNA plus IPv4 number forms) is a native call per address. Bounded: cleared when full.
 */
const asciiDomains = new Map<string, string>();
const ASCII_DOMAINS_MAX = 4096;
function asciiDomain(given: string): string {
  let ascii = asciiDomains.get(given);
  if (ascii === undefined) {
    ascii = domainToASCII(given) || given;
    if (asciiDomains.size >= ASCII_DOMAINS_MAX) asciiDomains.clear();
    asciiDomains.set(given, ascii);
  }
  return ascii;
}

/** The domain part of an address (lower-case, no trailing dot); '' when there is none. */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at >= 0 ? address.slice(at + 1).toLowerCase().replace(/\.$/, '') : '';
}

/**
 * SMTPUTF8 is not offered, so a local part must be ASCII (RFC 6531 section 3.5). Domains are
 * checked after IDN conversion (smtp-server decodes punycode; toAddress re-encodes it).
 */
export function nonAscii(address: string): boolean {
  const at = address.lastIndexOf('@');
  if (/[^\x00-\x7f]/.test(at >= 0 ? address.slice(0, at) : address)) return true;
  const domain = at >= 0 ? address.slice(at + 1) : '';
  return /[^\x00-\x7f]/.test(domain) && !domainToASCII(domain);
}

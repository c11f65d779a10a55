import { Filter } from 'ldapts';
import type { RecipientAddress } from './recipient-address.js';

/**
 * Fills a Postfix-style filter template: `%s` the address, `%u` the local part, `%d` the domain,
 * `%%` a percent sign. Every value is escaped per RFC 4515 (ldapts' Filter.escape: `*` `(` `)` `\`
 * NUL become `\2a` `\28` `\29` `\5c` `\00`), so a local part such as `*)(mail=*` can only ever be
 * compared as a literal value, never change the filter's structure (LDAP injection).
 */
export function ldapFilter(template: string, address: string): string {
  const at = address.lastIndexOf('@');
  const values: Record<string, string> = { s: address, u: address.slice(0, at), d: address.slice(at + 1) };
  return template.replace(/%([sud%])/g, (_, k: string) => (k === '%' ? '%' : Filter.escape(values[k]!)));
}

/** The filters a lookup sends for an address: the address itself, then its base without the sub-address. */
export function lookupAddresses(addr: RecipientAddress): string[] {
  return addr.base ? [addr.address, addr.base] : [addr.address];
}

import type { Address } from './types.js';

/** Builds an Address from what smtp-server parsed out of MAIL FROM / RCPT TO. */
export function toAddress(address: string, args: Record<string, string | boolean> | false | undefined): Address {
  const at = address.lastIndexOf('@');
  const local = at >= 0 ? address.slice(0, at) : address;
  const domain = at >= 0 ? address.slice(at + 1).toLowerCase().replace(/\.$/, '') : '';
  const normalisedArgs: Record<string, string | true> = {};
  if (args) for (const [k, v] of Object.entries(args)) normalisedArgs[k.toUpperCase()] = v === true ? true : String(v);
  return { address, local, domain, args: normalisedArgs };
}

/** The domain part of an address (lower-case, no trailing dot); '' when there is none. */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at >= 0 ? address.slice(at + 1).toLowerCase().replace(/\.$/, '') : '';
}

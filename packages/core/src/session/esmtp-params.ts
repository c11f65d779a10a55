import type { Reply } from '../api/verdicts.js';

/**
 * ESMTP parameters a client may use: only those of extensions we advertise (RFC 5321 section
 * 4.1.1.11: a server must not accept a parameter it did not offer; Postfix answers `555 5.5.4`).
 * Advertised: SIZE and 8BITMIME (BODY=7BIT|8BITMIME) on MAIL, AUTH (the MAIL `AUTH=` parameter,
 * RFC 4954) where AUTH is offered. Not advertised, so refused: SMTPUTF8, REQUIRETLS, DSN's RET,
 * ENVID (MAIL) and NOTIFY, ORCPT (RCPT), and anything else.
 */
const MAIL_PARAMS = new Set(['SIZE', 'BODY']);

export function unsupportedParameter(param: string): Reply {
  return { code: 555, enhanced: '5.5.4', text: `Unsupported parameter ${param.slice(0, 40).replace(/[^\x21-\x7e]/g, '?')} (not advertised)` };
}

/** The first parameter of MAIL FROM / RCPT TO that was not advertised, as a 555 reply; else undefined. */
export function unadvertisedParameter(command: 'MAIL' | 'RCPT', args: Record<string, unknown> | false | undefined, authOffered: boolean): Reply | undefined {
  if (!args) return undefined;
  for (const key of Object.keys(args)) {
    const k = key.toUpperCase();
    if (command === 'MAIL' && (MAIL_PARAMS.has(k) || (k === 'AUTH' && authOffered))) continue;
    return unsupportedParameter(k);
  }
  return undefined;
}

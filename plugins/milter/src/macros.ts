import type { Address, Session, Transaction } from '@portcullis/core';
import type { Stage } from './protocol.js';

/**
 * The macros sent before each stage by default: Postfix's `milter_*_macros` defaults, plus
 * `{client_addr}`/`{client_name}`/`{client_port}` at connect and `{auth_authen}` at MAIL (what
 * OpenDKIM, clamav-milter and most milters read). A milter that asks for its own lists in the
 * negotiation (SMFIR_SETSYMLIST, version 6) gets those instead, as in Postfix.
 */
export const DEFAULT_MACROS: Readonly<Record<Stage, readonly string[]>> = {
  connect: ['j', '{daemon_name}', '{daemon_addr}', '{daemon_port}', 'v', '_', '{client_addr}', '{client_name}', '{client_port}', '{client_ptr}'],
  helo: ['{tls_version}', '{cipher}', '{cipher_bits}', '{cert_subject}', '{cert_issuer}'],
  mail: ['i', '{auth_type}', '{auth_authen}', '{auth_author}', '{mail_addr}', '{mail_host}', '{mail_mailer}'],
  rcpt: ['{rcpt_addr}', '{rcpt_host}', '{rcpt_mailer}'],
  data: ['i'],
  eoh: ['i'],
  eom: ['i'],
};

/** What the relay knows at a stage, for the macro values. */
export interface MacroContext {
  readonly hostname: string;
  readonly session: Session;
  readonly txn?: Transaction;
  readonly rcpt?: Address;
  /** The milter's fixed extra macros (`macros.values`). */
  readonly extra: Readonly<Record<string, string>>;
}

/**
 * A macro's value, or undefined when we do not know it (then it is not sent, as Postfix does for
 * an undefined macro): TLS macros only on an encrypted connection, AUTH macros after AUTH.
 */
export function macroValue(name: string, c: MacroContext): string | undefined {
  if (name in c.extra) return c.extra[name];
  const s = c.session;
  const domainOf = (a: string) => (a.includes('@') ? a.slice(a.lastIndexOf('@') + 1) : '');
  switch (name) {
    case 'j':
      return c.hostname;
    case '{daemon_name}':
      return s.listener.name;
    case '{daemon_addr}':
      return s.localAddress;
    case '{daemon_port}':
      return String(s.localPort);
    case 'v':
      return 'Portcullis';
    case '_':
      return `unknown [${s.remoteAddress}]`;
    case '{client_addr}':
      return s.remoteAddress;
    case '{client_port}':
      return String(s.remotePort);
    case '{client_name}':
    case '{client_ptr}':
      // No reverse lookup is made for milters: Postfix's value for an unresolved client.
      return 'unknown';
    case '{auth_authen}':
      return s.user;
    case '{auth_type}':
      return s.user ? s.authMethod : undefined;
    case '{tls_version}':
      return s.tls?.protocol;
    case '{cipher}':
      return s.tls?.cipher;
    case '{cipher_bits}':
      return s.tls?.bits === undefined ? undefined : String(s.tls.bits);
    case 'i':
      return c.txn?.id;
    case '{mail_addr}':
      return c.txn?.mailFrom.address;
    case '{mail_host}':
      return c.txn ? domainOf(c.txn.mailFrom.address) || undefined : undefined;
    case '{mail_mailer}':
    case '{rcpt_mailer}':
      return c.txn ? 'smtp' : undefined;
    case '{rcpt_addr}':
      return c.rcpt?.address;
    case '{rcpt_host}':
      return c.rcpt ? c.rcpt.domain || undefined : undefined;
    default:
      return undefined;
  }
}

/** name/value pairs of the macros in `names` that have a value. */
export function macroPairs(names: readonly string[], c: MacroContext): string[] {
  const out: string[] = [];
  for (const n of names) {
    const v = macroValue(n, c);
    if (v !== undefined) out.push(n, v);
  }
  return out;
}

import type { Address, Session, Transaction } from '@portcullis/core';
import type { ReplyContext } from './actions.js';

/** The SMTP stages a policy service can be asked at, by Postfix's `protocol_state` name. */
export const STAGES = ['connect', 'helo', 'mail', 'rcpt', 'data', 'end-of-message'] as const;
export type Stage = (typeof STAGES)[number];

const PROTOCOL_STATE: Record<Stage, string> = {
  connect: 'CONNECT',
  // smtp-server does not say whether the client sent HELO or EHLO; Portcullis always offers ESMTP.
  helo: 'EHLO',
  mail: 'MAIL',
  rcpt: 'RCPT',
  data: 'DATA',
  'end-of-message': 'END-OF-MESSAGE',
};

/** The client's names as Postfix sends them: `unknown` when not known. */
export interface ClientNames {
  /** Forward-confirmed reverse name (`client_name`). */
  readonly name: string;
  /** Whatever the PTR says (`reverse_client_name`). */
  readonly reverse: string;
}

export interface RequestInput {
  readonly stage: Stage;
  readonly session: Session;
  readonly txn?: Transaction;
  /** The recipient being decided (rcpt), or the only accepted one (data, end-of-message). */
  readonly recipient?: Address;
  /** Message size: MAIL FROM's SIZE= before DATA, the received size at end-of-message. */
  readonly size?: number;
  readonly names: ClientNames;
  /** Our instance id for this transaction (same for every request of one message). */
  readonly instance: string;
  readonly policyContext?: string;
}

/**
 * The attributes Postfix's smtpd sends (SMTPD_POLICY_README, Postfix 3.x), in its order. Values
 * Portcullis cannot know (the TLS client certificate, the SASL mechanism, TLS details the core's
 * Session does not expose) go out empty, as Postfix sends them when they do not apply.
 */
export function buildRequest(i: RequestInput): Array<[string, string]> {
  const s = i.session;
  const t = i.txn;
  const state = PROTOCOL_STATE[i.stage];
  const afterData = i.stage === 'data' || i.stage === 'end-of-message';
  return [
    ['request', 'smtpd_access_policy'],
    ['protocol_state', state],
    ['protocol_name', s.helo ? 'ESMTP' : 'SMTP'],
    ['helo_name', s.helo ?? ''],
    ['queue_id', t?.id ?? ''],
    ['sender', t?.mailFrom.address ?? ''],
    ['recipient', i.recipient?.address ?? ''],
    // Postfix: non-zero only from DATA on (the number of accepted recipients).
    ['recipient_count', afterData && t ? String(t.recipients.length) : '0'],
    ['client_address', s.remoteAddress],
    ['client_name', i.names.name],
    ['client_port', String(s.remotePort)],
    ['reverse_client_name', i.names.reverse],
    ['instance', i.instance],
    ['sasl_method', s.user ? (s.authMethod ?? '') : ''],
    ['sasl_username', s.user ?? ''],
    ['sasl_sender', ''],
    ['size', i.size !== undefined ? String(i.size) : '0'],
    ['ccert_subject', ''],
    ['ccert_issuer', ''],
    ['ccert_fingerprint', ''],
    ['ccert_pubkey_fingerprint', ''],
    // From the core's Session.tls: the protocol in use (`TLSv1.3`), the OpenSSL cipher name and its key size.
    ['encryption_protocol', s.secure ? (s.tls?.protocol ?? 'TLS') : ''],
    ['encryption_cipher', s.secure ? (s.tls?.cipher ?? '') : ''],
    ['encryption_keysize', s.secure && s.tls?.bits ? String(s.tls.bits) : '0'],
    // Postfix 2.3+ always sends etrn_domain; postgrey picks the 4.2.0 status for its greylisting reply by its presence.
    ['etrn_domain', ''],
    ['stress', ''],
    ['server_address', s.localAddress],
    ['server_port', String(s.localPort)],
    ['policy_context', i.policyContext ?? ''],
  ];
}

/** What Postfix names in its reply text for each stage: `<name>: Class rejected: text`. */
export function replyContext(i: { stage: Stage; session: Session; txn?: Transaction; recipient?: Address; names: ClientNames }): ReplyContext {
  switch (i.stage) {
    case 'connect':
      return { name: `${i.names.name}[${i.session.remoteAddress}]`, class: 'Client host' };
    case 'helo':
      return { name: i.session.helo ?? '', class: 'Helo command' };
    case 'mail':
      return { name: i.txn?.mailFrom.address ?? '', class: 'Sender address' };
    case 'rcpt':
      return { name: i.recipient?.address ?? '', class: 'Recipient address' };
    case 'data':
      return { name: 'DATA', class: 'Data command' };
    case 'end-of-message':
      return { name: 'END-OF-MESSAGE', class: 'End-of-data' };
  }
}

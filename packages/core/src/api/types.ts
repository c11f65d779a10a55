import type { DependencyContainer } from 'tsyringe';
import type { Logger } from 'pino';
import type { MessageHeaders } from './message-headers.js';

/** A mailbox as given in MAIL FROM or RCPT TO. `address` is empty for the null sender `<>`. */
export interface Address {
  /** The address as the client gave it, without angle brackets. */
  readonly address: string;
  /** Part before the last `@` (as given). */
  readonly local: string;
  /** Part after the last `@`, lower-cased, without a trailing dot. Empty for the null sender. */
  readonly domain: string;
  /** ESMTP parameters (SIZE, BODY, ...), upper-case keys. */
  readonly args: Readonly<Record<string, string | true>>;
}

/** How a listener treats TLS: none, STARTTLS offered, or TLS from the first byte (port 465). */
export type TlsMode = 'none' | 'starttls' | 'implicit';
/** Whether a listener offers SMTP AUTH, and whether it requires it before MAIL. */
export type AuthMode = 'off' | 'optional' | 'required';

/** One SMTP connection. Created before `connect`, gone after `disconnect`. */
export interface Session {
  readonly id: string;
  /**
   * The client's address, the one policy trusts: the TCP peer, or what a listed proxy said (PROXY
   * header, XCLIENT). Never XFORWARD's word (that is in `forwarded`).
   */
  readonly remoteAddress: string;
  /** The TCP peer; differs from remoteAddress when `proxied` is set. */
  readonly peerAddress?: string;
  /** How remoteAddress was learnt when not from the TCP peer. */
  readonly proxied?: 'proxy' | 'xclient';
  /** The original client as a listed XFORWARD peer described it: recorded (logs, Received), never trusted. */
  readonly forwarded?: { readonly addr?: string; readonly name?: string; readonly helo?: string; readonly port?: number };
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** The listener this client connected to. */
  readonly listener: { readonly name: string; readonly port: number; readonly tls: TlsMode; readonly auth: AuthMode };
  /** True once the connection is encrypted (implicit TLS or after STARTTLS). */
  readonly secure: boolean;
  /** Name given in HELO/EHLO; set once the client has greeted. Never a source of trust. */
  readonly helo?: string;
  /** The login name after a successful AUTH, otherwise undefined. */
  readonly user?: string;
  /** The SASL mechanism of that AUTH (`PLAIN`, `LOGIN`, ...), set with `user`. */
  readonly authMethod?: string;
  /**
   * Once the connection is encrypted: the TLS protocol (`TLSv1.3`), the cipher (OpenSSL name) and
   * its symmetric key size when the name tells it. For Received-style records and milter macros.
   */
  readonly tls?: { readonly protocol?: string; readonly cipher: string; readonly bits?: number };
  /** Child container of this connection: resolve services, register per-connection ones. */
  readonly container: DependencyContainer;
  /** Logger bound to this session's id. */
  readonly log: Logger;
  /** Free-form per-connection results plugins record for each other, keyed by plugin name. */
  readonly notes: Record<string, unknown>;
}

/** One mail transaction: from MAIL FROM until the reply after DATA (or RSET). */
export interface Transaction {
  /** Queue id this message will have in the spool. */
  readonly id: string;
  readonly session: Session;
  /** The envelope sender; `address` is '' for the null sender. */
  readonly mailFrom: Address;
  /** Recipients accepted so far, in order. During `rcpt`, the one being decided is not yet in it. */
  readonly recipients: readonly Address[];
  /** Free-form per-transaction results, keyed by plugin name. */
  readonly notes: Record<string, unknown>;
  /**
   * The message's top-level header section, parsed and decoded beside its raw form. Set during
   * DATA as soon as the header section has arrived (so part screeners' `done()` can read it too);
   * always set by the time `message` runs; undefined before DATA.
   */
  readonly headers?: MessageHeaders;
  /**
   * Adds a header at the top of the message as it is spooled (like Received). Only
   * effective from the `data` hook until `message` returns.
   */
  addHeader(name: string, value: string): void;
  /**
   * Changes to the message and its envelope, applied when the message is committed (after `message`
   * returns with no verdict, after part replacements), in call order. Usable from the `data` hook
   * (raw readers' promises, part screeners' `done`) until the `message` hook returns; later calls
   * throw. See MessageEdits.
   */
  readonly edits: MessageEdits;
}

/**
 * Edits of the message at end of data: what a milter's modifications, or a subject rewrite, need.
 * Recorded as plugins call them (each call is validated at once and throws a TypeError on a bad
 * name, value or address, which fails the calling hook closed) and applied in call order when the
 * message is committed: the envelope the spool stores (and delivery uses) and the stored bytes,
 * by one streamed copy of the spooled file, never holding the body in memory. Header edits work on
 * the top-level header section as stored (fields a `dropHeader` predicate removed are not in it);
 * the Received line and `addHeader` fields stay on top of it, untouched. The transaction log line
 * lists the edits by plugin (`edits`). Values are folded: a line break becomes a fold, so no value
 * can start a field of its own or end the header section.
 */
export interface MessageEdits {
  /** Appends a field at the end of the top-level header section. */
  appendHeader(name: string, value: string): void;
  /**
   * Inserts a field before the index-th field (0 = first) of the header section as received (milter
   * SMFIR_INSHEADER); edits apply in call order, so an earlier insert or removal shifts the count,
   * as in libmilter's header list. An index past the end appends.
   */
  insertHeader(index: number, name: string, value: string): void;
  /**
   * Changes the n-th (1-based) field named `name` (case-insensitive); `undefined` deletes it
   * (SMFIR_CHGHEADER). The field keeps its name as written. As libmilter's smfi_chgheader, changing
   * an occurrence that is not there appends the field; deleting one that is not there does nothing.
   */
  changeHeader(name: string, occurrence: number, value: string | undefined): void;
  /** Removes every field named `name`. */
  removeHeader(name: string): void;
  /**
   * Adds an envelope recipient (no-op when already there, compared case-insensitively). ESMTP
   * `args` are validated and logged; the spool stores addresses only, as for every recipient.
   */
  addRecipient(address: string, args?: Readonly<Record<string, string | true>>): void;
  /** Removes an envelope recipient (case-insensitive). A message left without recipients is accepted and dropped (logged). */
  removeRecipient(address: string): void;
  /** Changes the envelope sender; `''` is the null sender. */
  setSender(address: string, args?: Readonly<Record<string, string | true>>): void;
  /** Replaces the body (everything after the header section) with these bytes (CRLF lines); streamed to a temp file. */
  replaceBody(body: NodeJS.ReadableStream | Buffer): Promise<void> | void;
  /** Quarantine: the message is committed held in the queue (as `portcullis queue hold`), with this reason. */
  hold(reason: string): void;
}

/** Where mail for one recipient domain goes. Returned by the `route` hook. */
export interface NextHop {
  /**
   * Tried in order, every address of each, before the delivery is deferred. `name` is the host
   * name the address was found for (an MX name): the TLS server name, checked against the
   * certificate with `tls: 'verify'`.
   */
  readonly hosts: ReadonlyArray<{ readonly host: string; readonly port: number; readonly name?: string }>;
  /**
   * `opportunistic` (default) upgrades with STARTTLS when offered; `required` fails without; `none`
   * never; `verify` requires STARTTLS and a certificate that chains to a trusted CA (`ca`, else
   * Node's CA store) and matches the host's `name` (MTA-STS, RFC 8461 section 4.2), else the
   * delivery is deferred: never sent in clear.
   */
  readonly tls?: 'none' | 'opportunistic' | 'required' | 'verify';
  /** With `tls: 'verify'`: PEM of the CAs to trust instead of Node's store. */
  readonly ca?: string;
  /** Credentials for AUTH at the next hop. */
  readonly auth?: { readonly user: string; readonly pass: string };
  /** Name for logs, e.g. `static:example.com` or `mx:example.org`. */
  readonly name?: string;
}

/** A queued message as the delivery side sees it. */
export interface QueuedMessage {
  readonly id: string;
  readonly mailFrom: string;
  readonly recipients: readonly string[];
  readonly receivedAt: number;
  readonly size: number;
}

/** What observers learn after a delivery attempt for one recipient. */
export interface DeliveryEvent {
  readonly message: QueuedMessage;
  readonly recipient: string;
  /** The next hop host:port that answered, when one did. */
  readonly host?: string;
  /** The reply that decided it (from the next hop, or a local reason). */
  readonly response: string;
  readonly attempts: number;
}

import type { Readable } from 'node:stream';
import type { Verdict } from './verdicts.js';
import type { MessageHeaders } from './message-headers.js';
import type { HeaderField } from './header-filter.js';
import type { Address, DeliveryEvent, NextHop, QueuedMessage, Session, Transaction } from './types.js';

type MaybePromise<T> = T | Promise<T>;

/** Credentials a client presented with AUTH. */
export interface AuthAttempt {
  readonly method: 'PLAIN' | 'LOGIN' | string;
  readonly username: string;
  readonly password: string;
  /** PLAIN's authorization identity when the client sent one (else undefined). */
  readonly authzid?: string;
}

/** A leaf MIME part, as the streaming pass reaches its headers. */
export interface MimePart {
  /** Position in the MIME tree, `1`, `1.2`, ...; stable between passes. */
  readonly path: string;
  /** Index of this node in document order (0 = the message root). */
  readonly index: number;
  /** Lower-case MIME type as declared, e.g. `application/pdf`. */
  readonly contentType: string;
  /** Declared Content-Disposition type, or undefined. */
  readonly disposition?: string;
  /** File name decoded from Content-Disposition `filename` (RFC 2231/2047), if any. */
  readonly filename?: string;
  /** Name decoded from Content-Type `name`, if any. */
  readonly name?: string;
  /** Content-Transfer-Encoding as declared, lower-case. */
  readonly transferEncoding?: string;
  /** True when this part lies inside an attached message/rfc822. */
  readonly nested: boolean;
  /** All values of a header, raw (unfolded) text after the colon. */
  header(name: string): string[];
}

/**
 * What a part screener decides once it has seen the whole part:
 * keep it (undefined), replace it with a short text notice, or give a verdict for the whole message.
 */
export type PartDecision =
  | undefined
  | { action: 'keep' }
  | { action: 'replace'; notice: string }
  | { action: 'verdict'; verdict: Verdict };

/**
 * Sees one part's decoded content, chunk by chunk, like a hash: `update` for each chunk (synchronous:
 * keep memory bounded; write to a temp file for anything large), then `done` once.
 */
export interface PartScreener {
  update?(chunk: Buffer): void;
  done(): MaybePromise<PartDecision>;
}

/** What a plugin's `data` hook hands back: the ways it wants to see the message stream. */
export interface DataHandlers {
  /**
   * Reads the raw message bytes (as received, CRLF, before our added headers). Must consume the
   * stream to its end (backpressure is honoured: a slow reader slows the client); the promise's
   * verdict (or nothing) is awaited before the message verdict. The reader may call `txn.edits`
   * until its promise settles (a milter applies its end-of-message modifications there).
   */
  raw?(stream: Readable): Promise<Verdict | undefined | void>;
  /** Called at each leaf MIME part; return a screener to see its decoded content. */
  part?(part: MimePart): PartScreener | undefined;
  /**
   * Called for each field of the top-level header as it streams by (`name` as written, `value`
   * unfolded). `true` leaves the field out of the spooled message, e.g. an Authentication-Results
   * field that claims to come from this relay. Raw readers and part screeners still see it. Must be
   * synchronous; a throw fails the message with 451 4.3.0.
   */
  dropHeader?(field: HeaderField): boolean;
}

/** What the core knows about a message once DATA has ended. */
export interface MessageInfo {
  /** Bytes received (without our added headers). */
  readonly size: number;
  /** Parts replaced by screeners, by path. */
  readonly replacedParts: readonly string[];
  /** The top-level header section, parsed and decoded (RFC 2047 words, RFC 2231 parameters, address lists), with the raw text. */
  readonly headers: MessageHeaders;
  /**
   * The message as it lies in the spool before the 250: the bytes received, without the header
   * fields a `dropHeader` removed, before part replacement and before the header lines the relay
   * adds (Received, `addHeader`). For backends that need the length before the bytes (spamd's
   * Content-length): `size` is that length, `open()` a fresh stream over the bytes on each call
   * (from memory for a small message, from the spool's tmp file for a large one), so no plugin
   * buffers a whole message. Read it before the hook's promise settles.
   */
  readonly spooled: SpooledBytes;
}

/** See MessageInfo.spooled. */
export interface SpooledBytes {
  /** Byte length of what `open()` streams. */
  readonly size: number;
  /** A new stream over the bytes, from the start. Give it an 'error' listener. */
  open(): Readable;
}

/**
 * Every hook a plugin may implement, in the order the code calls them, each with the file under
 * packages/core/src that calls it (docs/hooks.md lists every stage with its refusals;
 * test/hook-order.test.ts proves the order):
 *
 *   connect    session/sessions.ts, before the greeting (the gate before it: listen/connections.ts)
 *   [auth]     session/sessions.ts, at AUTH (TLS only)
 *   helo       session/sessions.ts, at the first MAIL FROM, after AUTH (smtp-server has no EHLO callback)
 *   mail       session/sessions.ts
 *   rcpt       session/sessions.ts (× n)
 *   data       intake/data-phase.ts → intake/message-intake.ts, after the 354: raw readers start,
 *              then part screeners per leaf part (intake/mime-walker.ts)
 *   message    intake/message-intake.ts, then the spool commit (spool/spool.ts) and the 250
 *   route → delivered | deferred | bounced   delivery/queue.ts, from the commit on (per domain, per recipient)
 *   disconnect session/sessions.ts, when the connection closes (independent of the delivery)
 *
 * Refusals that come before or instead of a hook:
 *   MAIL FROM, before helo, in order: 530 5.7.0 (auth required), 555 5.5.4 (unadvertised parameter:
 *     session/esmtp-params.ts), the XCLIENT re-judge (connect runs again for a new client:
 *     session/sessions.ts), 452 4.3.1 (spool/disk-guard.ts); after helo 553 5.6.7 (non-ASCII:
 *     session/address.ts), then mail.
 *   RCPT: 503 5.5.1, 555 5.5.4, 452 4.5.3, <postmaster> (no hook: session/postmaster.ts), 553 5.6.7,
 *     then rcpt; no accept is 550 5.7.1.
 *   DATA: content sent before the 354 is 554 5.5.0 improper pipelining and close
 *     (session/pipelining-guard.ts, fed by the taps of adapter/smtp-server.ts).
 *   Delivery: a recipient still deferred after delivery.delayWarning gets one delay DSN
 *     (delivery/queue.ts decides, delivery/dsn.ts writes it).
 */
export interface HookSignatures {
  /** A client connected (before the 220 greeting). Verdict hook. */
  connect(session: Session): MaybePromise<Verdict | undefined>;
  /** AUTH credentials. `accept` logs the user in; no verdict from any plugin means 535. Verdict hook. */
  auth(session: Session, attempt: AuthAttempt): MaybePromise<Verdict | undefined>;
  /** The client's HELO/EHLO name; runs at its first MAIL FROM, after AUTH (smtp-server has no HELO callback). Verdict hook. */
  helo(session: Session, hostname: string): MaybePromise<Verdict | undefined>;
  /** MAIL FROM. No verdict means accepted. Verdict hook. */
  mail(txn: Transaction, from: Address): MaybePromise<Verdict | undefined>;
  /** RCPT TO. Deny by default: no `accept` from any plugin means `550 5.7.1 Unable to relay`. */
  rcpt(txn: Transaction, to: Address): MaybePromise<Verdict | undefined>;
  /** DATA started: return the stream handlers this plugin wants. Transform hook, all plugins run. */
  data(txn: Transaction): MaybePromise<DataHandlers | undefined>;
  /**
   * End of data, every screener finished. No verdict means accepted. Verdict hook. The last moment
   * for `txn.edits` (MessageEdits): they are applied when it returns, before the spool commit.
   */
  message(txn: Transaction, info: MessageInfo): MaybePromise<Verdict | undefined>;
  /**
   * Where mail for `domain` goes. First plugin returning a NextHop decides; a `reject` bounces the
   * recipient, a `tempfail` defers it.
   */
  route(domain: string, message: QueuedMessage): MaybePromise<NextHop | Verdict | undefined>;
  /** Observer: the connection closed. */
  disconnect(session: Session): MaybePromise<void>;
  /** Observer: the next hop accepted the message for a recipient. */
  delivered(event: DeliveryEvent): MaybePromise<void>;
  /** Observer: a temporary failure; the recipient will be retried. */
  deferred(event: DeliveryEvent & { readonly retryAt: number }): MaybePromise<void>;
  /** Observer: a permanent failure or expiry; a bounce goes to the sender (unless null). */
  bounced(event: DeliveryEvent): MaybePromise<void>;
}

export type HookName = keyof HookSignatures;

/**
 * How each hook is dispatched, declared once: adding a hook to HookSignatures without a kind here
 * fails the build.
 * - verdict: in order, the first plugin to return a verdict decides.
 * - transform: every plugin runs; results are collected.
 * - route: in order, the first plugin to return a next hop (or verdict) decides.
 * - observer: every plugin runs, in parallel; errors are logged, never change the outcome.
 */
export const HOOK_KINDS = {
  connect: 'verdict',
  auth: 'verdict',
  helo: 'verdict',
  mail: 'verdict',
  rcpt: 'verdict',
  data: 'transform',
  message: 'verdict',
  route: 'route',
  disconnect: 'observer',
  delivered: 'observer',
  deferred: 'observer',
  bounced: 'observer',
} as const satisfies Record<HookName, 'verdict' | 'transform' | 'route' | 'observer'>;

export type HookKind = (typeof HOOK_KINDS)[HookName];

export const HOOK_NAMES = Object.keys(HOOK_KINDS) as HookName[];

export type PluginHooks = { [K in HookName]?: HookSignatures[K] };

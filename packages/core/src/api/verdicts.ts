/**
 * Typed SMTP replies and verdicts. Policy decisions are values, never thrown errors: a thrown
 * error is a bug in a plugin and becomes `451 4.3.0` (see plugin-driver.ts).
 */

/** One SMTP reply as the client sees it: `550 5.7.1 Unable to relay`. */
export interface Reply {
  /** Three-digit basic status code. */
  code: number;
  /** RFC 3463 enhanced status code, e.g. `5.7.1`. Written once by Portcullis, never doubled. */
  enhanced: string;
  text: string;
}

/**
 * What a verdict hook returns. `undefined` means "no opinion": the next plugin is asked.
 * - `accept`: decides in favour (for rcpt: the recipient is accepted).
 * - `reject`: permanent failure, a 5xx reply.
 * - `tempfail`: temporary failure, a 4xx reply; the client should retry.
 * - `disconnect`: reply (421 by default) and close the connection.
 */
export type Verdict =
  | { kind: 'accept'; reply?: Reply }
  | { kind: 'reject'; reply: Reply }
  | { kind: 'tempfail'; reply: Reply; readonly when?: TempfailCondition }
  | { kind: 'disconnect'; reply: Reply };

/**
 * A tempfail that holds only for one final decision of its hook (Postfix's `DEFER_IF_PERMIT` and
 * `DEFER_IF_REJECT`). Verdict hooks are first-verdict-wins, so the driver does not stop at such a
 * verdict: it keeps asking the later plugins of the same hook, then
 * - `'permit'` (defer if permit): the tempfail is the answer when the final decision is a permit (a
 *   later `accept`, or no verdict where no verdict means accepted: every hook but `rcpt` and
 *   `auth`); a later reject, tempfail or disconnect is the answer instead.
 * - `'reject'` (defer if reject): the tempfail replaces a later `reject` (or the implicit
 *   `550 5.7.1 Unable to relay` of `rcpt`, `535` of `auth`); a later accept is the answer instead.
 * The first conditional verdict of each kind counts. A consumer that does not know the field sees
 * a plain tempfail: never an accept.
 */
export type TempfailCondition = 'permit' | 'reject';

export type VerdictKind = Verdict['kind'];

function reply(code: number, enhanced: string, text: string, range: [number, number], fn: string): Reply {
  if (!Number.isInteger(code) || code < range[0] || code > range[1]) {
    throw new RangeError(`${fn}(): code ${code} is outside ${range[0]}-${range[1]}`);
  }
  if (!/^[245]\.\d{1,3}\.\d{1,3}$/.test(enhanced) || enhanced[0] !== String(code)[0]) {
    throw new RangeError(`${fn}(): enhanced code "${enhanced}" does not match reply code ${code}`);
  }
  return { code, enhanced, text: text.replace(/[\r\n]+/g, ' ') };
}

export function accept(text?: string): Verdict {
  return text === undefined ? { kind: 'accept' } : { kind: 'accept', reply: { code: 250, enhanced: '2.0.0', text } };
}

export function reject(code: number, enhanced: string, text: string): Verdict {
  return { kind: 'reject', reply: reply(code, enhanced, text, [500, 599], 'reject') };
}

export function tempfail(code: number, enhanced: string, text: string): Verdict {
  return { kind: 'tempfail', reply: reply(code, enhanced, text, [400, 499], 'tempfail') };
}

/** Tempfail unless a later plugin of the same hook rejects (Postfix `DEFER_IF_PERMIT`): see TempfailCondition. */
export function deferIfPermit(code: number, enhanced: string, text: string): Verdict {
  return { kind: 'tempfail', reply: reply(code, enhanced, text, [400, 499], 'deferIfPermit'), when: 'permit' };
}

/** Tempfail instead of a later plugin's reject (Postfix `DEFER_IF_REJECT`): see TempfailCondition. */
export function deferIfReject(code: number, enhanced: string, text: string): Verdict {
  return { kind: 'tempfail', reply: reply(code, enhanced, text, [400, 499], 'deferIfReject'), when: 'reject' };
}

export function disconnect(code = 421, enhanced = '4.7.0', text = 'Closing connection'): Verdict {
  return { kind: 'disconnect', reply: reply(code, enhanced, text, [400, 599], 'disconnect') };
}

export function isVerdict(value: unknown): value is Verdict {
  if (!value || typeof value !== 'object') return false;
  const kind = (value as { kind?: unknown }).kind;
  return kind === 'accept' || kind === 'reject' || kind === 'tempfail' || kind === 'disconnect';
}

/** The one line a client sees, e.g. `550 5.7.1 Unable to relay`. */
export function formatReply(r: Reply): string {
  return `${r.code} ${r.enhanced} ${r.text}`;
}

/** Replies the core itself gives. Kept in one place so tests and docs can cite them. */
export const Replies = {
  unableToRelay: { code: 550, enhanced: '5.7.1', text: 'Unable to relay' },
  pluginFailure: { code: 451, enhanced: '4.3.0', text: 'Temporary local problem, try again later' },
  tooManyRecipients: { code: 452, enhanced: '4.5.3', text: 'Too many recipients' },
  messageTooBig: { code: 552, enhanced: '5.3.4', text: 'Message size exceeds fixed limit' },
  bareLineEnding: { code: 550, enhanced: '5.6.0', text: 'Message contains bare CR, bare LF or NUL; lines must end with CRLF' },
  tooManyConnections: { code: 421, enhanced: '4.7.0', text: 'Too many connections from your address, try again later' },
  sessionTimeout: { code: 421, enhanced: '4.4.2', text: 'Session time limit exceeded, closing connection' },
  spoolFailure: { code: 451, enhanced: '4.3.0', text: 'Could not queue message, try again later' },
  authFailed: { code: 535, enhanced: '5.7.8', text: 'Authentication credentials invalid' },
  nonAsciiAddress: { code: 553, enhanced: '5.6.7', text: 'Non-ASCII addresses need SMTPUTF8, which this server does not offer' },
  headerTooLarge: { code: 552, enhanced: '5.3.4', text: 'Message header exceeds the size or field-count limit' },
  tooManyHops: { code: 554, enhanced: '5.4.6', text: 'Too many Received headers: mail loop?' },
  tooSlow: { code: 421, enhanced: '4.4.2', text: 'Data rate too low, closing connection' },
  shuttingDown: { code: 421, enhanced: '4.3.2', text: 'Service shutting down, try again later' },
  improperPipelining: { code: 554, enhanced: '5.5.0', text: 'Improper use of SMTP command pipelining: message content sent before the 354 reply' },
  /** The spool's file system is short of space (disk guard at MAIL FROM; ENOSPC while receiving). */
  insufficientStorage: { code: 452, enhanced: '4.3.1', text: 'Insufficient system storage' },
  /** Every untrusted slot is taken; the rest is kept for trusted networks and submission. */
  serverBusy: { code: 421, enhanced: '4.7.0', text: 'Too many connections, try again later' },
  commandTimeout: { code: 421, enhanced: '4.4.2', text: 'Command timeout, closing connection' },
  tooManyErrors: { code: 421, enhanced: '4.7.0', text: 'Too many errors, closing connection' },
  tooManyUnknownCommands: { code: 421, enhanced: '4.7.0', text: 'Too many unrecognized commands, closing connection' },
  tooManyTransactions: { code: 421, enhanced: '4.7.0', text: 'Too many transactions in one session, closing connection' },
  mimeTooManyParts: { code: 552, enhanced: '5.3.4', text: 'Message has too many MIME parts' },
  mimeTooDeep: { code: 554, enhanced: '5.6.0', text: 'MIME parts are nested too deeply' },
  mimePartHeaders: { code: 552, enhanced: '5.3.4', text: 'A MIME part header has too many fields or is too large' },
} as const satisfies Record<string, Reply>;

/** smtp-server signals a reply through an Error carrying `responseCode`. */
export function replyError(r: Reply): Error & { responseCode: number } {
  const err = new Error(`${r.enhanced} ${r.text}`) as Error & { responseCode: number };
  err.responseCode = r.code;
  return err;
}

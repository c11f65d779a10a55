import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { sourceHash } from './source-hash.js';
import { PINS, type SendTap } from './smtp-server.js';
import { Replies, type Reply } from '../api/verdicts.js';

/**
 * Every reply in our wording with one enhanced status code (RFC 2034/3463), including the ones
 * smtp-server writes itself (`500 Error: command not recognized`, `421 Timeout - closing connection`,
 * `501 Error: Bad recipient address syntax`, ...).
 *
 * Mechanism: SMTPConnection#send(code, data, context) is the library's single write site for
 * replies. Each connection's one `send` wrapper (installConnectionTaps, adapter/smtp-server.ts) runs
 * `replyCodesTap` last, which rewrites the reply and calls the library's with context `false` (which makes the library add no enhanced code of its own, so codes are never
 * doubled, whatever its ENHANCEDSTATUSCODES setting). Replies that already carry a code (ours, from
 * verdicts and `replyError`) pass unchanged. Library texts are looked up in the table below; a
 * library text the table does not know (a new one after an upgrade) still gets a class code
 * (`5.0.0`) and loses its `Error: ` prefix, and the test `reply-codes.test.ts` fails: it scans the
 * installed library for every literal reply and checks the table covers it. The `send` source is
 * pinned by hash too (`PINNED_SEND_SHA256`); on another library version the relay does not install
 * this (it keeps the library's replies and hides ENHANCEDSTATUSCODES) and logs a warning.
 *
 * Not given a code, as RFC 2034 and Postfix do: the 220 greeting, the replies to EHLO/HELO, and 3xx
 * intermediate replies (354, 334 SASL challenges).
 */
export const PINNED_SEND_SHA256: string = PINS['SMTPConnection#send'];

type Mapped = { code: number; enhanced: string; text: string };
const r = (code: number, enhanced: string, text: string): Mapped => ({ code, enhanced, text });
const fromReply = (x: Reply): Mapped => ({ code: x.code, enhanced: x.enhanced, text: x.text });
const notRecognized = r(500, '5.5.2', 'Command not recognized');
const unsupported = (param: string) => r(555, '5.5.4', `Unsupported parameter ${param} (not advertised)`);

/** Library reply texts, exactly, keyed by `code text`. */
const EXACT: Record<string, Mapped> = {
  '421 Timeout - closing connection': r(421, '4.4.2', 'Timeout waiting for a command, closing connection'),
  '421 Server shutting down': fromReply(Replies.shuttingDown),
  '421 HTTP requests not allowed': r(421, '4.5.0', 'HTTP requests are not SMTP, closing connection'),
  '421 Error: too many unrecognized commands': r(421, '4.7.0', 'Too many unrecognized commands, closing connection'),
  '421 Error: too many unauthenticated commands': r(421, '4.7.0', 'Too many commands without authentication, closing connection'),
  '500 Error: command not recognized': notRecognized,
  '503 Error: send HELO/EHLO first': r(503, '5.5.1', 'Send HELO or EHLO first'),
  '503 Error: send LHLO first': r(503, '5.5.1', 'Send LHLO first'),
  '530 Error: authentication Required': r(530, '5.7.0', 'Authentication required'),
  '451 Error: internal server error': fromReply(Replies.pluginFailure),
  '501 Error: syntax: EHLO hostname': r(501, '5.5.4', 'Syntax: EHLO hostname'),
  '501 Error: syntax: LHLO hostname': r(501, '5.5.4', 'Syntax: LHLO hostname'),
  '501 Error: Syntax: HELO hostname': r(501, '5.5.4', 'Syntax: HELO hostname'),
  '501 Error: Bad hostname syntax': r(501, '5.5.4', 'Bad hostname syntax'),
  '221 Bye': r(221, '2.0.0', 'Bye'),
  '250 OK': r(250, '2.0.0', 'OK'),
  '250 Flushed': r(250, '2.0.0', 'OK'),
  '214 See https://tools.ietf.org/html/rfc5321 for details': r(214, '2.0.0', 'Commands are described in RFC 5321'),
  '501 Error: Syntax: VRFY address': r(501, '5.5.4', 'Syntax: VRFY address'),
  '252 Try to send something. No promises though': r(252, '2.5.2', 'Cannot verify the address; send the message and delivery will be attempted'),
  '550 Error: Not allowed': r(550, '5.7.0', 'Command not allowed from your address'),
  '503 Error: Mail transaction in progress': r(503, '5.5.1', 'Not allowed during a mail transaction'),
  '501 Error: Bad command parameter syntax': r(501, '5.5.4', 'Bad command parameter syntax'),
  '501 Error: Bad command parameter syntax. Invalid address': r(501, '5.5.4', 'Bad command parameter syntax: invalid address'),
  '501 Error: Bad command parameter syntax. Invalid hostname': r(501, '5.5.4', 'Bad command parameter syntax: invalid hostname'),
  '501 Error: syntax: STARTTLS': r(501, '5.5.4', 'Syntax: STARTTLS (no parameters)'),
  '503 Error: TLS already active': r(503, '5.5.1', 'TLS already active'),
  '220 Ready to start TLS': r(220, '2.0.0', 'Ready to start TLS'),
  '538 Error: Must issue a STARTTLS command first': r(538, '5.7.11', 'Encryption required: issue STARTTLS first'),
  '503 Error: No identity changes permitted': r(503, '5.5.1', 'Already authenticated'),
  '504 Error: Unrecognized authentication type': r(504, '5.5.4', 'Unrecognized authentication type'),
  '501 Error: Bad sender address syntax': r(501, '5.1.7', 'Bad sender address syntax'),
  '503 Error: nested MAIL command': r(503, '5.5.1', 'Sender already given (nested MAIL command)'),
  '501 Error: Bad message size syntax': r(501, '5.5.4', 'Bad SIZE parameter syntax'),
  '501 Invalid BODY parameter value. Must be 7BIT or 8BITMIME': r(501, '5.5.4', 'BODY must be 7BIT or 8BITMIME'),
  // SMTPUTF8, REQUIRETLS and DSN are not advertised: any use of them is an unadvertised parameter.
  '501 Invalid SMTPUTF8 parameter. This flag does not accept a value': unsupported('SMTPUTF8'),
  '530 REQUIRETLS not permitted on non-TLS connections': unsupported('REQUIRETLS'),
  '501 Invalid REQUIRETLS parameter. This flag does not accept a value': unsupported('REQUIRETLS'),
  '501 Invalid RET parameter value. Must be FULL or HDRS': unsupported('RET'),
  '501 Error: NOTIFY parameter must be NEVER, SUCCESS, FAILURE, or DELAY': unsupported('NOTIFY'),
  '501 Error: NOTIFY=NEVER cannot be combined with other values': unsupported('NOTIFY'),
  '501 Error: Bad ORCPT parameter syntax': unsupported('ORCPT'),
  '501 Error: Bad recipient address syntax': r(501, '5.1.3', 'Bad recipient address syntax'),
  '503 Error: need MAIL command': r(503, '5.5.1', 'Need MAIL command first'),
  '452 Error: too many recipients': fromReply(Replies.tooManyRecipients),
  '503 Error: need RCPT command': r(503, '5.5.1', 'Need RCPT command first'),
  '250 OK: message accepted': r(250, '2.0.0', 'Ok: queued'),
  '250 OK: message queued': r(250, '2.0.0', 'Ok: queued'),
  // sendmail jokes the library answers: nothing to see here.
  '500 You are no wizard!': notRecognized,
  '200 Please pass, oh mighty wizard': notRecognized,
  '500 Mere mortals must not mutter that mantra': notRecognized,
  '500 Error: Invoking shell is not allowed. This incident will be reported.': notRecognized,
  '500 Can not kill Mom': notRecognized,
  // SASL (sasl.js)
  '501 Authentication aborted': r(501, '5.7.0', 'Authentication aborted'),
  '501 Error: invalid userdata': r(501, '5.5.2', 'Cannot decode the authentication data'),
  '501 Error: missing username': r(501, '5.5.2', 'Missing user name'),
  '535 Error: Authentication credentials invalid': fromReply(Replies.authFailed),
  '535 Error: Username and Password not accepted': fromReply(Replies.authFailed),
  '235 Authentication successful': r(235, '2.7.0', 'Authentication successful'),
};

/** Library texts built at run time (a name, a number or a parameter inside). */
const PATTERNS: Array<{ code: number; re: RegExp; map: (m: RegExpExecArray, name: string) => Mapped }> = [
  { code: 421, re: /^.* Too many connected clients, try again in a moment$/, map: (_m, name) => r(421, '4.3.2', `${name} Too many connected clients, try again later`) },
  { code: 421, re: /^.* You talk too soon$/, map: (_m, name) => r(421, '4.5.0', `${name} Commands sent before the greeting, closing connection`) },
  { code: 552, re: /^Error: message exceeds fixed maximum message size \d+$/, map: () => fromReply(Replies.messageTooBig) },
  { code: 501, re: /^Error: duplicate (\S+) parameter$/, map: (m) => r(501, '5.5.4', `Duplicate ${m[1]} parameter`) },
  { code: 501, re: /^Error: (\S+) parameter requires a value$/, map: (m) => r(501, '5.5.4', `${m[1]} parameter requires a value`) },
  { code: 501, re: /^Error: syntax: AUTH (\S+)(?: token)?$/, map: (m) => r(501, '5.5.4', `Syntax: AUTH ${m[1]} [initial-response]`) },
  { code: 500, re: /^Error: (\S+) not allowed in LMTP server$/, map: (m) => r(500, '5.5.1', `${m[1]} is not allowed in LMTP`) },
  // A socket error while a command was being answered (the client will rarely see it).
  { code: 421, re: /^Error: /, map: () => r(421, '4.4.2', 'Connection error, closing connection') },
];

const HAS_CODE = /^[245]\.\d{1,3}\.\d{1,3}(?: |$)/;

/**
 * The reply for one library `send(code, data, context)`, or undefined to send as is (greeting,
 * EHLO/HELO, 3xx). `name` is our hostname (the library prefixes some texts with it).
 */
export function ourReply(code: number, data: unknown, context: unknown, name: string): Mapped | undefined {
  if (code >= 300 && code < 400) return undefined;
  if (Array.isArray(data)) return undefined; // only EHLO answers with several lines
  const text = data === undefined || data === null ? '' : String(data);
  if (HAS_CODE.test(text)) return undefined;
  if (code === 220 && text !== 'Ready to start TLS') return undefined; // the greeting
  if (code === 250 && text.startsWith(`${name} `) && context === false) return undefined; // HELO
  if (code === 250 && text === 'Accepted') return context === 'RCPT_TO_OK' ? r(250, '2.1.5', 'Recipient OK') : r(250, '2.1.0', 'Sender OK');
  const exact = EXACT[`${code} ${text}`];
  if (exact) return exact;
  for (const p of PATTERNS) {
    const m = p.code === code ? p.re.exec(text) : null;
    if (m) return p.map(m, name);
  }
  return fallback(code, text);
}

/** Whether the table (not the fallback) answers this library reply: what the pin test checks. */
export function isMapped(code: number, text: string, name = 'relay.test', context?: unknown): boolean {
  if (code >= 300 && code < 400) return true;
  if (code === 250 && text === 'Accepted') return true;
  if (EXACT[`${code} ${text}`]) return true;
  return PATTERNS.some((p) => p.code === code && p.re.test(text)) || ourReply(code, text, context, name) === undefined;
}

function fallback(code: number, text: string): Mapped {
  const cls = Math.floor(code / 100);
  return r(code, `${cls >= 2 && cls <= 5 ? cls : 5}.0.0`, text.replace(/^Error:\s*/, '') || 'Error');
}

interface SendingConnection {
  name: string;
  send(code: number, data: unknown, context?: unknown): void;
}

/** Hash of the installed SMTPConnection#send (whitespace-normalised source). */
export function librarySendHash(): string {
  return sourceHash((SMTPConnection.prototype as unknown as SendingConnection).send);
}

/** True when the installed smtp-server's `send` is the one this module wraps. */
export function canRewriteReplies(): boolean {
  return librarySendHash() === PINNED_SEND_SHA256;
}

/** The send tap that writes every reply of one connection in our wording with one enhanced code (the last before the library). */
export function replyCodesTap(connection: unknown): SendTap {
  const conn = connection as SendingConnection;
  return (code, data, context, next) => {
    const mapped = ourReply(code, data, context, conn.name);
    if (!mapped) return next(code, data, false);
    return next(mapped.code, `${mapped.enhanced} ${mapped.text}`, false);
  };
}

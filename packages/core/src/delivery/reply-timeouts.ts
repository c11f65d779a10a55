import type { Readable } from 'node:stream';
import type SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import { setSocketTimeout, tapSentCommands } from '../adapter/nodemailer.js';

/**
 * How long the delivery client waits for each reply of a next hop: RFC 5321 section 4.5.3.2's
 * minimums by default. A final-dot timeout shorter than the next hop's processing time is the
 * classic duplicate factory (the next hop queues the message, we never hear its 250, we retry).
 */
export interface ReplyTimeouts {
  readonly greeting: number;
  readonly mail: number;
  readonly rcpt: number;
  /** The 354 after DATA. */
  readonly data: number;
  /** Each block of message data (the socket may not stall longer while we write). */
  readonly dataBlock: number;
  /** The reply after the final dot. */
  readonly finalDot: number;
}

export const RFC5321_TIMEOUTS: ReplyTimeouts = { greeting: 300_000, mail: 300_000, rcpt: 300_000, data: 120_000, dataBlock: 180_000, finalDot: 600_000 };

type Conn = InstanceType<typeof SMTPConnection>;

/** Where one transaction got to; `finalDotSent` without a reply means the next hop may have the message. */
export interface TransactionProgress {
  finalDotSent: boolean;
}

/**
 * Runs one transaction with per-phase timeouts. nodemailer has a single inactivity timeout
 * (socketTimeout) on its socket; this sets that socket's timeout as each command goes out (MAIL,
 * RCPT, DATA), while the message streams (dataBlock) and once all of it is handed over (finalDot),
 * and puts `idle` back afterwards. nodemailer's socket 'timeout' handler stays the one that fires.
 */
export function sendWithTimeouts(conn: Conn, t: ReplyTimeouts, idle: number, from: string, to: readonly string[], message: Readable, progress: TransactionProgress): Promise<SMTPConnection.SentMessageInfo> {
  const set = (ms: number) => setSocketTimeout(conn, ms);
  const restore = tapSentCommands(conn, (str) => {
    const cmd = typeof str === 'string' ? str.slice(0, 5).toUpperCase() : '';
    if (cmd.startsWith('MAIL ')) set(t.mail);
    else if (cmd.startsWith('RCPT ')) set(t.rcpt);
    else if (cmd === 'DATA') set(t.data);
    else if (cmd === '.') set(t.finalDot);
  });
  // The message goes to nodemailer as it is (no pass-through stream of ours per delivery):
  // 'resume' is when the library's pipe starts the flow (a listener for it, unlike one for
  // 'data', does not start the flow itself), 'end' when the library has read all of it and adds
  // the terminating dot. nodemailer's send() puts its own 'error' listener on the message.
  message.once('resume', () => set(t.dataBlock));
  message.once('end', () => {
    progress.finalDotSent = true;
    set(t.finalDot);
  });
  return new Promise<SMTPConnection.SentMessageInfo>((resolve, reject) => {
    conn.send({ from, to: [...to] }, message, (err, info) => {
      restore();
      set(idle);
      if (err) reject(err);
      else resolve(info);
    });
  });
}

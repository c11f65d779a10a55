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
 *
 * With PIPELINING (RFC 2920) nodemailer writes MAIL, every RCPT and DATA in one go and then reads
 * their replies in order, so one inactivity timeout covers all of those waits: it is the longest
 * of theirs, never the last command's alone (which would cut a slow MAIL reply short at DATA's 2
 * minutes where the RFC asks for 5). Commands written in one synchronous run are such a batch: a
 * command sent after a reply comes from a later I/O callback.
 */
export function sendWithTimeouts(conn: Conn, t: ReplyTimeouts, idle: number, from: string, to: readonly string[], message: Readable, progress: TransactionProgress): Promise<SMTPConnection.SentMessageInfo> {
  // Node's socket.setTimeout makes a new timer on every call; a value already set is left alone
  // (MAIL then RCPT with the RFC's 5 minutes each, the final dot's after the message's end): the
  // command's own write restarts the socket's inactivity countdown, so the deadline is the same.
  let current: number | undefined;
  const set = (ms: number) => {
    if (ms === current) return;
    current = ms;
    setSocketTimeout(conn, ms);
  };
  let batch = false; // a command of this synchronous run has set the timeout already
  const command = (ms: number) => {
    if (batch) return set(Math.max(current ?? 0, ms));
    batch = true;
    queueMicrotask(() => (batch = false));
    set(ms);
  };
  const restore = tapSentCommands(conn, (str) => {
    const cmd = typeof str === 'string' ? str.slice(0, 5).toUpperCase() : '';
    if (cmd.startsWith('MAIL ')) command(t.mail);
    else if (cmd.startsWith('RCPT ')) command(t.rcpt);
    else if (cmd === 'DATA') command(t.data);
    else if (cmd === '.') command(t.finalDot);
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

import { RawSmtp } from './raw-smtp.js';

export interface RawSendOptions {
  readonly from?: string;
  readonly rcpt?: string;
  readonly localAddress?: string;
  /** Split the message into writes of this many bytes (default: one write). */
  readonly chunk?: number;
  /** Write the last `tail` bytes of the message separately, after a pause (a small final write). */
  readonly tail?: number;
  readonly timeoutMs?: number;
}

export interface RawSendResult {
  /** The reply that ended the transaction: to the final dot, or the first refusal of MAIL, RCPT or DATA. */
  readonly reply: string;
  /** Milliseconds from the first message byte written to the reply (0 when refused before DATA). */
  readonly ms: number;
  /** Still open: the test reads or sends more, then closes it. */
  readonly client: RawSmtp;
}

/**
 * One whole transaction over a raw socket: EHLO, MAIL, RCPT, DATA, the message bytes (dot-stuffed
 * here, so a test sends exactly the bytes it means otherwise), the final dot. Returns the reply to
 * the final dot (or the first refusal); throws if none came within the timeout.
 */
export async function rawSend(port: number, message: string | Buffer, opts: RawSendOptions = {}): Promise<RawSendResult> {
  const c = await RawSmtp.connect(port, '127.0.0.1', opts.localAddress ?? '127.0.0.7');
  try {
    await c.read();
    return await rawTransaction(c, message, opts);
  } catch (err) {
    c.close();
    throw err;
  }
}

/**
 * `rawSend`'s transaction on a connection already open and greeted (a test that opens its
 * connections first, e.g. with `RawSmtp.openMany`, to have them open at once). `localAddress` does
 * not apply; the connection stays open, as with `rawSend`.
 */
export async function rawTransaction(c: RawSmtp, message: string | Buffer, opts: Omit<RawSendOptions, 'localAddress'> = {}): Promise<RawSendResult> {
  await c.cmd('EHLO client.test');
  const mail = await c.cmd(`MAIL FROM:<${opts.from ?? 'alice@remote.test'}>`);
  if (!mail.startsWith('250')) return { reply: mail, ms: 0, client: c };
  const rcpt = await c.cmd(`RCPT TO:<${opts.rcpt ?? 'bob@example.com'}>`);
  if (!rcpt.startsWith('250')) return { reply: rcpt, ms: 0, client: c };
  const data = await c.cmd('DATA');
  if (!data.startsWith('354')) return { reply: data, ms: 0, client: c };
  const buf = Buffer.isBuffer(message) ? message : Buffer.from(message, 'latin1');
  const stuffed = Buffer.from(buf.toString('latin1').replace(/(^|\r\n)\./g, '$1..'), 'latin1');
  const all = Buffer.concat([stuffed, Buffer.from(stuffed.subarray(-2).toString() === '\r\n' ? '.\r\n' : '\r\n.\r\n')]);
  const t0 = Date.now();
  const cut = opts.tail ? all.length - opts.tail : all.length;
  const step = opts.chunk ?? cut;
  for (let i = 0; i < cut; i += step) c.write(all.subarray(i, Math.min(cut, i + step)));
  if (opts.tail) {
    await new Promise((r) => setTimeout(r, 50));
    c.write(all.subarray(cut));
  }
  const reply = await c.read(opts.timeoutMs ?? 10_000);
  return { reply, ms: Date.now() - t0, client: c };
}

export interface RcptRepliesOptions {
  readonly localAddress?: string;
  readonly from?: string;
}

/**
 * One session: EHLO, MAIL FROM, then RCPT TO for each address (stopping after a 421, when the relay
 * closes); returns each RCPT reply and the time it took. Throws if the greeting or MAIL is refused.
 */
export async function rcptReplies(port: number, recipients: readonly string[], opts: RcptRepliesOptions = {}): Promise<Array<{ reply: string; ms: number }>> {
  const c = await RawSmtp.connect(port, '127.0.0.1', opts.localAddress);
  const out: Array<{ reply: string; ms: number }> = [];
  try {
    const greeting = await c.read();
    if (!greeting.startsWith('220 ')) throw new Error(`greeting: ${greeting}`);
    await c.cmd('EHLO client.test');
    const mail = await c.cmd(`MAIL FROM:<${opts.from ?? 'sender@outside.test'}>`);
    if (!mail.startsWith('250 ')) throw new Error(`MAIL FROM: ${mail}`);
    for (const r of recipients) {
      const t0 = performance.now();
      const reply = await c.cmd(`RCPT TO:<${r}>`);
      out.push({ reply, ms: performance.now() - t0 });
      if (reply.startsWith('421 ')) break;
    }
    return out;
  } finally {
    c.close();
  }
}

/** The reply to one RCPT TO. */
export async function rcptReply(port: number, recipient: string, localAddress?: string): Promise<string> {
  return (await rcptReplies(port, [recipient], { localAddress }))[0]!.reply;
}

import { RawSmtp } from '@portcullis/testkit';

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

/**
 * One whole transaction over a raw socket: EHLO, MAIL, RCPT, DATA, the message bytes (dot-stuffed),
 * the final dot. Returns the reply to the final dot (or throws if none came within the timeout).
 */
export async function rawSend(port: number, message: string | Buffer, opts: RawSendOptions = {}): Promise<{ reply: string; ms: number; client: RawSmtp }> {
  const c = await RawSmtp.connect(port, '127.0.0.1', opts.localAddress ?? '127.0.0.7');
  try {
    await c.read();
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
  } catch (err) {
    c.close();
    throw err;
  }
}

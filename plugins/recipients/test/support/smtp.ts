import { RawSmtp } from '@portcullis/testkit';

/**
 * One session: EHLO, MAIL FROM, then RCPT TO for each address (stopping if the relay closes);
 * returns each RCPT reply and the time it took.
 */
export async function rcptReplies(port: number, recipients: readonly string[], opts: { localAddress?: string; from?: string } = {}): Promise<Array<{ reply: string; ms: number }>> {
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

/** The reply to one RCPT TO (first line). */
export async function rcptReply(port: number, recipient: string, localAddress?: string): Promise<string> {
  return (await rcptReplies(port, [recipient], { localAddress }))[0]!.reply;
}

import net from 'node:net';

/** One reply: its code and its text lines joined. */
export interface ProbeReply {
  readonly code: number;
  readonly text: string;
}

export interface ProbeOptions {
  readonly host: string;
  readonly port: number;
  readonly helo: string;
  /** MAIL FROM address ('' for `<>`). */
  readonly from: string;
  /** RCPT TO addresses, asked in order in one transaction. */
  readonly recipients: readonly string[];
  readonly timeoutMs: number;
  /** Ask no further RCPT once the first is accepted (the catch-all probe: then the rest is known). */
  readonly stopIfFirstAccepted?: boolean;
  /** Aborts the probe (the plugin is closing). */
  readonly signal?: AbortSignal;
}

export interface ProbeResult {
  /** The reply to each RCPT, in order; shorter than `recipients` when the server stopped answering (or `stopIfFirstAccepted`). */
  readonly rcpt: ProbeReply[];
  /** Set when the probe could not reach the RCPT stage (connection refused, greeting 4xx/5xx, MAIL refused). */
  readonly failed?: string;
}

/**
 * Address verification over one SMTP connection: EHLO (HELO if refused), MAIL FROM, one RCPT TO per
 * address, then RSET and QUIT, so nothing is ever sent. Written here rather than with nodemailer's
 * SMTPConnection because that one only offers whole-message sends (MAIL, RCPT and DATA together):
 * a probe must stop before DATA and read each RCPT reply on its own. Bounded by `timeoutMs` in total;
 * every socket error ends the probe, never the process.
 */
export function smtpProbe(opts: ProbeOptions): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: opts.host, port: opts.port });
    let buffer = '';
    let lines: string[] = [];
    let waiter: ((r: ProbeReply) => void) | undefined;
    const queue: ProbeReply[] = [];
    const rcpt: ProbeReply[] = [];
    let done = false;
    const finish = (failed?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      // Let the dialogue below run to its end (it stops writing once done is set).
      waiter?.({ code: 0, text: failed ?? 'closed' });
      waiter = undefined;
      socket.destroy();
      resolve(failed ? { rcpt, failed } : { rcpt });
    };
    const onAbort = () => finish('the probe was aborted (shutting down)');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => finish(`no answer from ${opts.host}:${opts.port} within ${opts.timeoutMs} ms`), opts.timeoutMs);
    socket.setNoDelay(true);
    // Once every RCPT has its reply, how the connection ends (QUIT, a reset) changes nothing.
    let answered = false;
    socket.on('error', (err) => finish(answered ? undefined : `${opts.host}:${opts.port}: ${err.message}`));
    socket.on('close', () => finish(answered ? undefined : `${opts.host}:${opts.port} closed the connection`));
    socket.on('data', (d: Buffer) => {
      buffer += d.toString('latin1');
      if (buffer.length > 64 * 1024) return finish(`${opts.host}:${opts.port}: reply too long`);
      let i: number;
      while ((i = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, i).replace(/\r$/, '');
        buffer = buffer.slice(i + 1);
        lines.push(line.slice(4));
        if (line.length < 4 || line[3] !== '-') {
          const reply = { code: Number(line.slice(0, 3)) || 0, text: lines.join(' ').trim() };
          lines = [];
          if (waiter) {
            const w = waiter;
            waiter = undefined;
            w(reply);
          } else queue.push(reply);
        }
      }
    });
    const read = () => new Promise<ProbeReply>((r) => (done ? r({ code: 0, text: 'probe ended' }) : queue.length ? r(queue.shift()!) : (waiter = r)));
    const cmd = (line: string): Promise<ProbeReply> => {
      if (done) return Promise.resolve({ code: 0, text: 'probe ended' });
      socket.write(line + '\r\n');
      return read();
    };
    void (async () => {
      const greeting = await read();
      if (greeting.code !== 220) return finish(`${opts.host}:${opts.port} greeted with ${greeting.code} ${greeting.text}`);
      let hello = await cmd(`EHLO ${opts.helo}`);
      if (hello.code !== 250) hello = await cmd(`HELO ${opts.helo}`);
      if (hello.code !== 250) return finish(`${opts.host}:${opts.port} refused HELO: ${hello.code} ${hello.text}`);
      const mail = await cmd(`MAIL FROM:<${opts.from}>`);
      if (mail.code !== 250) return finish(`${opts.host}:${opts.port} refused MAIL FROM:<${opts.from}>: ${mail.code} ${mail.text}`);
      for (const r of opts.recipients) {
        const reply = await cmd(`RCPT TO:<${r}>`);
        if (done) return;
        rcpt.push(reply);
        if (opts.stopIfFirstAccepted && rcpt.length === 1 && reply.code >= 200 && reply.code < 300) break;
      }
      answered = true;
      await cmd('RSET');
      socket.write('QUIT\r\n');
      await read().catch(() => undefined);
      finish();
    })().catch((err: Error) => finish(err.message));
  });
}

import nodemailer, { type SendMailOptions, type TransportOptions } from 'nodemailer';

export interface SendOptions {
  readonly port: number;
  readonly host?: string;
  /** Source address to bind: the client the relay sees. */
  readonly localAddress?: string;
  readonly from: string;
  readonly to: string | string[];
  /** A full RFC 5322 message; or subject/text/attachments to let nodemailer build one. */
  readonly raw?: string | Buffer;
  readonly subject?: string;
  readonly text?: string;
  readonly attachments?: SendMailOptions['attachments'];
  readonly messageId?: string;
  readonly auth?: { user: string; pass: string };
  readonly secure?: boolean;
  readonly ignoreTLS?: boolean;
}

export interface SendResult {
  readonly ok: boolean;
  /** The reply that decided (e.g. `250 2.0.0 Ok: queued as X` or `550 5.7.1 Unable to relay`). */
  readonly response: string;
  readonly code?: number;
}

/** Sends one message with nodemailer's SMTP transport; failures are returned, not thrown. */
export async function sendMail(o: SendOptions): Promise<SendResult> {
  const transport = nodemailer.createTransport({
    host: o.host ?? '127.0.0.1',
    port: o.port,
    secure: o.secure ?? false,
    ignoreTLS: o.ignoreTLS ?? !o.auth,
    localAddress: o.localAddress,
    auth: o.auth,
    tls: { rejectUnauthorized: false },
    name: 'client.test',
    connectionTimeout: 10_000,
    socketTimeout: 20_000,
  } as TransportOptions);
  try {
    const info = await transport.sendMail({
      envelope: { from: o.from, to: o.to },
      ...(o.raw !== undefined ? { raw: o.raw } : { from: o.from, to: o.to, subject: o.subject ?? 'test', text: o.text ?? 'hello', attachments: o.attachments, messageId: o.messageId }),
    });
    return { ok: true, response: String(info.response), code: Number(String(info.response).slice(0, 3)) };
  } catch (err) {
    const e = err as { response?: string; responseCode?: number; message: string };
    return { ok: false, response: e.response ?? e.message, code: e.responseCode };
  } finally {
    transport.close();
  }
}

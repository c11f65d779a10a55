import MailComposer from 'nodemailer/lib/mail-composer/index.js';

/** An attachment for `buildMessage`. */
export interface MessageAttachment {
  readonly filename?: string;
  readonly content: string | Buffer;
  readonly contentType?: string;
  /** `attachment` (default) or `inline`. */
  readonly contentDisposition?: 'attachment' | 'inline';
  /** Force a transfer encoding (`base64`, `quoted-printable`, `7bit`). */
  readonly encoding?: string;
}

export interface MessageSpec {
  readonly from?: string;
  readonly to?: string | readonly string[];
  readonly cc?: string | readonly string[];
  readonly replyTo?: string;
  /** Non-ASCII text is written as RFC 2047 encoded words, as a mail client would. */
  readonly subject?: string;
  readonly text?: string;
  readonly html?: string;
  readonly attachments?: readonly MessageAttachment[];
  /** Extra header fields; values are encoded when needed. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Header fields written exactly as given (for encoded words or folding a test wants verbatim). */
  readonly rawHeaders?: Readonly<Record<string, string>>;
  readonly date?: Date;
  readonly messageId?: string;
  /** A whole message/rfc822 to attach (nested screening). */
  readonly attachMessage?: Buffer;
}

/**
 * Builds a MIME message (CRLF line ends, ready for DATA) with nodemailer's MailComposer, the same
 * composer nodemailer uses to send: multipart/mixed when there are attachments, encoded words for
 * non-ASCII headers, RFC 2231 file names.
 */
export function buildMessage(spec: MessageSpec = {}): Promise<Buffer> {
  const list = (v: string | readonly string[] | undefined) => (v === undefined ? undefined : typeof v === 'string' ? v : [...v]);
  const headers: Record<string, string | { prepared: boolean; value: string }> = { ...(spec.headers ?? {}) };
  for (const [k, v] of Object.entries(spec.rawHeaders ?? {})) headers[k] = { prepared: true, value: v };
  const attachments: Array<Record<string, unknown>> = (spec.attachments ?? []).map((a) => ({ ...a }));
  if (spec.attachMessage) attachments.push({ content: spec.attachMessage, contentType: 'message/rfc822', filename: 'attached.eml' });
  const composer = new MailComposer({
    from: spec.from ?? 'Sender <sender@example.org>',
    to: list(spec.to) ?? 'rcpt@example.com',
    cc: list(spec.cc),
    replyTo: spec.replyTo,
    subject: spec.subject ?? 'Test message',
    // MailComposer keeps a 7bit body's line ends as given; DATA needs CRLF.
    text: crlf(spec.text ?? (spec.html ? undefined : 'Hello.\n')),
    html: crlf(spec.html),
    attachments,
    headers,
    date: spec.date ?? new Date(Date.UTC(2026, 0, 1, 12, 0, 0)),
    messageId: spec.messageId ?? '<test@testkit.portcullis>',
  } as ConstructorParameters<typeof MailComposer>[0]);
  return new Promise<Buffer>((resolve, reject) => composer.compile().build((err, message) => (err ? reject(err) : resolve(message))));
}

function crlf(text: string | undefined): string | undefined {
  return text?.replace(/\r?\n/g, '\r\n');
}

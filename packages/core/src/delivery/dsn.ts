import { randomBytes } from 'node:crypto';
import type { SpoolMeta } from '../spool/spool.js';

export interface BounceFailure {
  readonly recipient: string;
  /** Enhanced status, e.g. `5.1.1`. */
  readonly status: string;
  /** The reply that decided it, e.g. `550 5.1.1 No such user`. */
  readonly diagnostic: string;
  readonly remoteMta?: string;
}

function rfc2822Date(d: Date): string {
  return d.toUTCString().replace(/GMT$/, '+0000');
}

/** Extracts `5.1.1` from a reply, or derives `5.0.0` / `4.0.0` from its basic code. */
export function enhancedStatusOf(response: string, permanent: boolean): string {
  const m = /\b([245]\.\d{1,3}\.\d{1,3})\b/.exec(response);
  if (m) return m[1]!;
  return permanent ? '5.0.0' : '4.0.0';
}

/**
 * An RFC 3464 delivery status notification: multipart/report with a human part, a
 * message/delivery-status part (per-message and per-recipient fields) and the original headers as
 * text/rfc822-headers. Sent from the null sender so that it can never bounce back.
 */
export function buildBounce(opts: { hostname: string; original: SpoolMeta; originalHeaders: string; failures: readonly BounceFailure[]; now?: Date; delayed?: { retryUntil: Date } }): Buffer {
  const delayed = opts.delayed;
  const now = opts.now ?? new Date();
  const boundary = `=_portcullis_${randomBytes(12).toString('hex')}`;
  const id = `${Date.now().toString(36)}.${randomBytes(6).toString('hex')}@${opts.hostname}`;
  const human = [
    `This is the mail system at host ${opts.hostname}.`,
    '',
    delayed
      ? `Your message has not been delivered yet to the recipients below. Delivery will be retried until ${rfc2822Date(delayed.retryUntil)}; you do not need to resend it.`
      : 'Your message could not be delivered to one or more recipients.',
    'Its headers are attached below.',
    '',
    ...opts.failures.map((f) => `<${f.recipient}>: ${f.diagnostic}`),
    '',
  ].join('\r\n');
  const perMessage = [`Reporting-MTA: dns; ${opts.hostname}`, `X-Portcullis-Queue-ID: ${opts.original.id}`, `Arrival-Date: ${rfc2822Date(new Date(opts.original.receivedAt))}`].join('\r\n');
  const perRecipient = opts.failures
    .map((f) =>
      [
        `Final-Recipient: rfc822; ${f.recipient}`,
        `Action: ${delayed ? 'delayed' : 'failed'}`,
        `Status: ${f.status}`,
        ...(f.remoteMta ? [`Remote-MTA: dns; ${f.remoteMta}`] : []),
        `Diagnostic-Code: smtp; ${f.diagnostic.replace(/[\r\n]+/g, ' ')}`,
        ...(delayed ? [`Will-Retry-Until: ${rfc2822Date(delayed.retryUntil)}`] : []),
      ].join('\r\n'),
    )
    .join('\r\n\r\n');
  const headers = opts.originalHeaders.replace(/\r?\n/g, '\r\n').replace(/(\r\n)*$/, '\r\n');
  const text = [
    `From: Mail Delivery System <MAILER-DAEMON@${opts.hostname}>`,
    `To: <${opts.original.mailFrom}>`,
    `Subject: ${delayed ? 'Delayed Mail (still being retried)' : 'Undelivered Mail Returned to Sender'}`,
    `Date: ${rfc2822Date(now)}`,
    `Message-ID: <${id}>`,
    `Auto-Submitted: auto-replied`,
    `MIME-Version: 1.0`,
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    'This is a MIME-encapsulated message.',
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=us-ascii',
    'Content-Description: Notification',
    '',
    human,
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    'Content-Description: Delivery report',
    '',
    perMessage,
    '',
    perRecipient,
    '',
    `--${boundary}`,
    'Content-Type: text/rfc822-headers',
    'Content-Description: Undelivered Message Headers',
    '',
    headers,
    `--${boundary}--`,
    '',
  ].join('\r\n');
  return Buffer.from(text, 'utf8');
}

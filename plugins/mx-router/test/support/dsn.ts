import { simpleParser } from 'mailparser';

/** An RFC 3464 report, parsed: the per-message and per-recipient fields of its delivery-status part. */
export interface ParsedDsn {
  readonly contentType: string;
  readonly reportType: string;
  readonly humanText: string;
  readonly perMessage: Record<string, string>;
  readonly recipients: Array<Record<string, string>>;
  readonly originalHeaders: string;
}

function fields(block: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of block.replace(/\r\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
    if (m) out[m[1]!.toLowerCase()] = m[2]!.trim();
  }
  return out;
}

/** Parses a DSN with mailparser; throws when a required part is missing. */
export async function parseDsn(raw: Buffer): Promise<ParsedDsn> {
  const mail = await simpleParser(raw, { keepDeliveryStatus: true });
  const ct = mail.headers.get('content-type') as { value: string; params: Record<string, string> } | undefined;
  const status = mail.attachments.find((a) => a.contentType === 'message/delivery-status');
  const headers = mail.attachments.find((a) => a.contentType === 'text/rfc822-headers');
  if (!status) throw new Error(`no message/delivery-status part in:\n${raw.toString()}`);
  const groups = status.content.toString().split(/\r?\n\r?\n/).filter((g) => g.trim());
  return {
    contentType: ct?.value ?? '',
    reportType: ct?.params['report-type'] ?? '',
    humanText: mail.text ?? '',
    perMessage: fields(groups[0] ?? ''),
    recipients: groups.slice(1).map(fields),
    originalHeaders: headers?.content.toString() ?? '',
  };
}

import yazl from 'yazl';
import { eicar } from './clamd.js';

/** Test messages, built at run time (CRLF line endings). */
const CRLF = '\r\n';

function head(subject: string, extra: string[] = []): string[] {
  return ['From: alice@remote.test', 'To: bob@example.com', `Subject: ${subject}`, 'Message-ID: <' + Math.random().toString(36).slice(2) + '@remote.test>', 'MIME-Version: 1.0', ...extra];
}

function b64lines(buf: Buffer): string {
  return (buf.toString('base64').match(/.{1,76}/g) ?? []).join(CRLF);
}

/** multipart/mixed: a text part and one attachment. */
export function withAttachment(subject: string, attachment: { filename: string; type: string; encoding: string; body: string }): string {
  const b = 'b-' + Math.random().toString(36).slice(2);
  return [
    ...head(subject, [`Content-Type: multipart/mixed; boundary="${b}"`]),
    '',
    `--${b}`,
    'Content-Type: text/plain; charset=utf-8',
    '',
    'See the attachment.',
    `--${b}`,
    `Content-Type: ${attachment.type}; name="${attachment.filename}"`,
    `Content-Disposition: attachment; filename="${attachment.filename}"`,
    `Content-Transfer-Encoding: ${attachment.encoding}`,
    '',
    attachment.body,
    `--${b}--`,
    '',
  ].join(CRLF);
}

export function eicarBase64(): string {
  return withAttachment('base64', { filename: 'eicar.com', type: 'application/octet-stream', encoding: 'base64', body: b64lines(Buffer.from(eicar(), 'latin1')) });
}

/** Quoted-printable with a soft line break every 10 characters, so no line holds the signature. */
export function eicarQuotedPrintable(): string {
  const qp = eicar().replace(/=/g, '=3D');
  const lines = qp.match(/.{1,10}/g)!;
  return withAttachment('quoted-printable', { filename: 'eicar.txt', type: 'text/plain', encoding: 'quoted-printable', body: lines.join('=' + CRLF) });
}

export function zip(files: Array<{ name: string; data: Buffer }>): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const z = new yazl.ZipFile();
    for (const f of files) z.addBuffer(f.data, f.name);
    z.end();
    const chunks: Buffer[] = [];
    z.outputStream.on('data', (c: Buffer) => chunks.push(c));
    z.outputStream.on('end', () => resolve(Buffer.concat(chunks)));
    z.outputStream.on('error', reject);
  });
}

export async function eicarZip(depth: number): Promise<string> {
  let data: Buffer = Buffer.from(eicar(), 'latin1');
  let name = 'eicar.com';
  for (let i = 0; i < depth; i++) {
    data = await zip([{ name, data }, { name: 'readme.txt', data: Buffer.from('nothing to see\n') }]);
    name = `layer${i + 1}.zip`;
  }
  return withAttachment(`zip depth ${depth}`, { filename: 'files.zip', type: 'application/zip', encoding: 'base64', body: b64lines(data) });
}

/** A message with the base64 EICAR message attached as message/rfc822. */
export function eicarInAttachedMessage(): string {
  const b = 'outer-' + Math.random().toString(36).slice(2);
  return [
    ...head('forwarded', [`Content-Type: multipart/mixed; boundary="${b}"`]),
    '',
    `--${b}`,
    'Content-Type: text/plain',
    '',
    'Forwarded message below.',
    `--${b}`,
    'Content-Type: message/rfc822',
    'Content-Disposition: attachment; filename="fwd.eml"',
    '',
    eicarBase64(),
    `--${b}--`,
    '',
  ].join(CRLF);
}

/** A clean message of about `bytes` bytes, with a base64 attachment of random-looking data. */
export function cleanMessage(subject: string, bytes = 2_000): string {
  const data = Buffer.alloc(Math.max(0, Math.floor((bytes - 600) * 0.74)));
  for (let i = 0; i < data.length; i++) data[i] = (i * 7919 + (i >> 8) * 31) & 0xff;
  return withAttachment(subject, { filename: 'data.bin', type: 'application/octet-stream', encoding: 'base64', body: b64lines(data) });
}

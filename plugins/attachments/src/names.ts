import libmime from 'libmime';
import type { Finding } from './findings.js';

/** Bidirectional-text controls: they make `invoice\u202Efdp.exe` display as `invoiceexe.pdf`. */
const BIDI = /[\u200E\u200F\u202A-\u202E\u2066-\u2069\u061C]/g;
/** C0/C1 controls (including NUL, which truncates names in some clients). */
const CONTROL = /[\u0000-\u001F\u007F-\u009F]/g;
/** A COM class id: on Windows `{...}` as an extension decides the handler, not what the user sees. */
const CLSID = /\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}/i;

/** What the rules need to know about names: compiled once per rule. */
export interface NameRules {
  readonly denyExtensions: ReadonlySet<string>;
  /** When set, an extension outside this list is a finding (allow-list mode). */
  readonly allowExtensions?: ReadonlySet<string>;
  readonly maxNameLength: number;
}

/**
 * Every way a client might read one name: as given; with bidi and control characters removed;
 * cut at the first NUL or control character (C string handling); with the trailing dots and
 * spaces Windows drops. Lower-cased: extension matching is case-insensitive.
 */
export function readings(name: string): string[] {
  const base = name.normalize('NFC');
  const out = new Set<string>();
  const add = (s: string) => {
    const v = s.toLowerCase();
    out.add(v);
    out.add(v.replace(/[. ]+$/, ''));
  };
  add(base);
  add(base.replace(BIDI, '').replace(CONTROL, ''));
  const cut = base.search(CONTROL);
  if (cut > 0) add(base.slice(0, cut));
  // Windows keeps only the last path component of a name like `..\\evil.exe` or `a/b.js`.
  for (const v of [...out]) {
    const last = v.split(/[\\/]/).pop();
    if (last) out.add(last);
  }
  out.delete('');
  return [...out];
}

/** The extensions of a name, last first: `a.pdf.exe` → [`exe`, `pdf`]. */
export function extensionsOf(reading: string): string[] {
  const parts = reading.split('.');
  if (parts.length < 2) return [];
  return parts.slice(1).reverse().map((p) => p.trim()).filter((p) => p.length > 0);
}

/** Checks one file name against the rules; every finding, not only the first. */
export function checkName(name: string, rules: NameRules, label = `attachment "${displayName(name)}"`): Finding[] {
  const findings: Finding[] = [];
  if (BIDI.test(name)) findings.push({ kind: 'name-disguise', reason: `${label} contains a right-to-left override or other bidi control` });
  BIDI.lastIndex = 0;
  if (CONTROL.test(name)) findings.push({ kind: 'name-disguise', reason: `${label} contains control characters` });
  CONTROL.lastIndex = 0;
  if (/[. ]$/.test(name)) findings.push({ kind: 'name-disguise', reason: `${label} ends with a dot or space` });
  if (CLSID.test(name)) findings.push({ kind: 'name-disguise', reason: `${label} contains a CLSID` });
  if ([...name].length > rules.maxNameLength) findings.push({ kind: 'long-name', reason: `${label} has a name longer than ${rules.maxNameLength} characters` });

  for (const r of readings(name)) {
    const exts = extensionsOf(r);
    const last = exts[0];
    if (last !== undefined) {
      if (rules.denyExtensions.has(last)) {
        const double = exts.length >= 2;
        findings.push({
          kind: double ? 'double-extension' : 'extension',
          reason: double ? `${label} has a double extension ending in .${last}` : `${label} has a forbidden extension .${last}`,
        });
      } else if (rules.allowExtensions && !rules.allowExtensions.has(last)) {
        findings.push({ kind: 'extension', reason: `${label} has extension .${last}, which is not allowed` });
      }
    } else if (rules.allowExtensions) {
      findings.push({ kind: 'extension', reason: `${label} has no extension, and only listed extensions are allowed` });
    }
    // `x.exe.txt` hides nothing from Windows, but `x.exe .txt`-style tricks and the bare
    // `x.exe` inside `x.exe.` are covered by the readings; a denied inner extension is worth
    // flagging only as a double extension when the visible one is harmless-looking.
    if (exts.length >= 2 && !rules.denyExtensions.has(last!) && rules.denyExtensions.has(exts[1]!) && exts[1] !== last) {
      findings.push({ kind: 'double-extension', reason: `${label} hides extension .${exts[1]} behind .${last}` });
    }
  }
  return dedupe(findings);
}

function dedupe(findings: Finding[]): Finding[] {
  const seen = new Set<string>();
  return findings.filter((f) => (seen.has(f.reason) ? false : (seen.add(f.reason), true)));
}

/** A name as it may appear in an SMTP reply or a notice: printable, bounded. */
export function displayName(name: string, max = 80): string {
  let s = name.replace(BIDI, '').replace(CONTROL, '?').replace(/"/g, "'");
  if ([...s].length > max) s = [...s].slice(0, max - 3).join('') + '...';
  return s;
}

/** ASCII only, for SMTP replies (no SMTPUTF8 in replies). */
export function asciiText(text: string): string {
  return text.replace(/[^\x20-\x7E]/g, '?');
}

/**
 * Every name a part carries, decoded every way a client might: the core's decoded Content-Disposition
 * `filename` and Content-Type `name`, and our own reading of the raw headers (plain and RFC 2231
 * parameters separately, RFC 2047 words decoded), so that a `filename` and a `filename*` that
 * disagree are both screened.
 */
export function candidateNames(given: Array<string | undefined>, rawHeaders: { contentType: string[]; contentDisposition: string[] }): string[] {
  const out = new Set<string>();
  for (const g of given) if (g) out.add(g);
  const fromHeader = (value: string, key: string) => {
    for (const v of rawParams(value, key)) if (v) out.add(v);
  };
  for (const h of rawHeaders.contentDisposition) fromHeader(h, 'filename');
  for (const h of rawHeaders.contentType) fromHeader(h, 'name');
  return [...out];
}

/**
 * The values of one parameter in a raw header value: the plain `key=` form, the RFC 2231
 * `key*=` / `key*0*=`... form (continuations joined, charset applied), and each with RFC 2047
 * encoded words decoded.
 */
export function rawParams(value: string, key: string): string[] {
  const params = splitParams(value);
  const out: string[] = [];
  const plain = params.get(key);
  if (plain !== undefined) {
    out.push(plain);
    out.push(decodeWords(plain));
  }
  // RFC 2231: key*=charset'lang'pct-encoded, or key*0=..., key*1*=...
  const star = params.get(key + '*');
  const pieces: Array<{ n: number; v: string; enc: boolean }> = [];
  if (star !== undefined) pieces.push({ n: 0, v: star, enc: true });
  for (const [k, v] of params) {
    const m = new RegExp(`^${key}\\*(\\d+)(\\*)?$`).exec(k);
    if (m) pieces.push({ n: Number(m[1]), v, enc: !!m[2] });
  }
  if (pieces.length) {
    pieces.sort((a, b) => a.n - b.n);
    let charset = 'utf-8';
    const bytes: Buffer[] = [];
    pieces.forEach((p, i) => {
      let v = p.v;
      if (p.enc && i === 0) {
        const m = /^([^']*)'[^']*'(.*)$/.exec(v);
        if (m) {
          charset = m[1] || 'utf-8';
          v = m[2]!;
        }
      }
      bytes.push(p.enc ? percentDecode(v) : Buffer.from(v, 'latin1'));
    });
    const joined = Buffer.concat(bytes);
    try {
      out.push(libmime.decodeWord(charset, 'B', joined.toString('base64')));
    } catch {
      out.push(joined.toString('latin1')); // unknown charset: the bytes as they are
    }
  }
  return [...new Set(out.filter((v) => v.length > 0))];
}

function decodeWords(v: string): string {
  try {
    return libmime.decodeWords(v);
  } catch {
    return v;
  }
}

function percentDecode(v: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < v.length; i++) {
    const c = v[i]!;
    if (c === '%' && /^[0-9a-f]{2}$/i.test(v.slice(i + 1, i + 3))) {
      out.push(parseInt(v.slice(i + 1, i + 3), 16));
      i += 2;
    } else out.push(v.charCodeAt(i) & 0xff);
  }
  return Buffer.from(out);
}

/** `type/sub; a=1; b="x;y"` → Map(a→1, b→x;y), keys lower-cased. */
function splitParams(value: string): Map<string, string> {
  const map = new Map<string, string>();
  let i = value.indexOf(';');
  if (i < 0) return map;
  const s = value;
  while (i >= 0 && i < s.length) {
    i++; // past ';'
    while (i < s.length && /\s/.test(s[i]!)) i++;
    const eq = s.indexOf('=', i);
    if (eq < 0) break;
    const k = s.slice(i, eq).trim().toLowerCase();
    let j = eq + 1;
    while (j < s.length && /\s/.test(s[j]!)) j++;
    let v = '';
    if (s[j] === '"') {
      j++;
      while (j < s.length && s[j] !== '"') {
        if (s[j] === '\\' && j + 1 < s.length) j++;
        v += s[j];
        j++;
      }
      j++; // closing quote
      const semi = s.indexOf(';', j);
      i = semi;
    } else {
      const semi = s.indexOf(';', j);
      v = (semi < 0 ? s.slice(j) : s.slice(j, semi)).trim();
      i = semi;
    }
    if (k && !map.has(k)) map.set(k, v);
  }
  return map;
}

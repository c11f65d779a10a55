import { fileTypeFromBuffer } from 'file-type';
import type { CheckKind } from './findings.js';

/** What the first bytes of a file say it is. */
export interface Sniffed {
  /** Short type name (file-type's `ext`, or ours: `iso`, `vhd`, `vhdx`, `script`). */
  readonly type?: string;
  /** The finding kind this type raises, if any. */
  readonly kind?: CheckKind;
  /** An archive we open ourselves. */
  readonly container?: 'zip' | 'tar' | 'gzip';
  /** An OLE compound file (old Office, MSI): scanned for VBA storage names. */
  readonly ole?: boolean;
}

const EXECUTABLE = new Set(['exe', 'elf', 'macho', 'class', 'jar', 'apk', 'crx', 'xpi', 'lnk', 'chm', 'deb', 'rpm', 'wasm']);
const SCRIPT = new Set(['reg']);
const MACRO = new Set(['docm', 'dotm', 'xlsm', 'xltm', 'pptm', 'potm', 'ppsm']);
const DISK = new Set(['dmg', 'iso', 'vhd', 'vhdx']);
/** Archives no well-kept pure-JS library reads for us here: their members cannot be screened. */
const OPAQUE = new Set(['7z', 'rar', 'cab', 'arj', 'lzh', 'ace', 'cpio', 'ar', 'bz2', 'xz', 'zst', 'lz', 'lz4', 'lzma']);

const OLE_MAGIC = Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]);

/** Bytes needed before the spool decision (zip/gzip at 0, tar's `ustar` at 257). */
export const DECISION_BYTES = 512;

export function looksLikeZip(b: Buffer): boolean {
  // Local file header, or an empty archive's end record; a spanned archive's marker.
  return b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && ((b[2] === 3 && b[3] === 4) || (b[2] === 5 && b[3] === 6) || (b[2] === 7 && b[3] === 8));
}

export function looksLikeGzip(b: Buffer): boolean {
  return b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;
}

export function looksLikeTar(b: Buffer): boolean {
  return hasAt(b, 257, USTAR);
}

const USTAR = Buffer.from('ustar', 'latin1');
const CD001 = Buffer.from('CD001', 'latin1');
const ISO_OFFSETS = [0x8001, 0x8801, 0x9001];
const VHD = Buffer.from('conectix', 'latin1');
const VHDX = Buffer.from('vhdxfile', 'latin1');

/** `bytes` at `at` in `b` (no string made). */
function hasAt(b: Buffer, at: number, bytes: Buffer): boolean {
  return b.length >= at + bytes.length && b.compare(bytes, 0, bytes.length, at, at + bytes.length) === 0;
}

/** The OneNote revision-store file format's GUID {7B5C52E4-D88C-4DA7-AEB1-5378D02996D3}, as stored (MS-ONESTORE). */
const ONENOTE_MAGIC = Buffer.from('e4525c7b8cd8a74daeb15378d02996d3', 'hex');

/** Needs random access (zip) or a streamed pass of its own (tar, gzip): written to a temp file. */
export function needsContainerPass(prefix: Buffer): boolean {
  return looksLikeZip(prefix) || looksLikeGzip(prefix) || looksLikeTar(prefix);
}

/** The types file-type reports that raise a finding here (outside the zip branch, which always asks it). */
export function kindOfType(type: string): CheckKind | undefined {
  if (EXECUTABLE.has(type)) return 'executable';
  if (SCRIPT.has(type)) return 'script';
  if (MACRO.has(type)) return 'macro';
  if (DISK.has(type)) return 'disk-image';
  if (OPAQUE.has(type)) return 'opaque-archive';
  return undefined;
}

/**
 * One condition file-type checks before it reports a type we act on: `bytes` at offset `at` (a
 * string is latin1). Read from file-type 21.3.4's detectors (`core.js`, `detectConfident` and
 * `detectImprecise`): each entry is the first part of the test file-type makes before it returns one
 * of `types`, so a prefix that matches no entry cannot come back as any of them. `test/gate.test.ts`
 * holds file-type to this list (a sample per entry, a sweep of the first two bytes, and a digest of
 * `core.js`: another file-type fails the test until this list is read against it again).
 */
export interface FileTypeMark {
  readonly at: number;
  readonly bytes: Buffer;
  readonly types: readonly string[];
}

const mark = (at: number, bytes: string | number[], ...types: string[]): FileTypeMark => ({ at, bytes: typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : Buffer.from(bytes), types });

export const FILE_TYPE_MARKS: readonly FileTypeMark[] = [
  mark(0, 'MZ', 'exe'),
  mark(0, [0x78, 0x01], 'dmg'),
  mark(0, [0x60, 0xea], 'arj'),
  mark(0, [0xc7, 0x71], 'cpio'),
  mark(0, '070707', 'cpio'),
  mark(0, 'BZh', 'bz2'),
  mark(0, 'LZIP', 'lz'),
  mark(0, [0x00, 0x61, 0x73, 0x6d], 'wasm'),
  mark(0, 'Cr24', 'crx'),
  mark(0, 'MSCF', 'cab'),
  mark(0, 'ISc(', 'cab'),
  mark(0, [0xed, 0xab, 0xee, 0xdb], 'rpm'),
  mark(0, [0x28, 0xb5, 0x2f, 0xfd], 'zst'),
  mark(0, [0x7f, 0x45, 0x4c, 0x46], 'elf'),
  mark(0, [0xfe, 0xed, 0xfa, 0xce], 'macho'),
  mark(0, [0xfe, 0xed, 0xfa, 0xcf], 'macho'),
  mark(0, [0xce, 0xfa, 0xed, 0xfe], 'macho'),
  mark(0, [0xcf, 0xfa, 0xed, 0xfe], 'macho'),
  mark(0, [0xca, 0xfe, 0xba, 0xbe], 'macho', 'class'),
  mark(0, [0x04, 0x22, 0x4d, 0x18], 'lz4'),
  mark(2, '-l', 'lzh'), // -lh0- … -lh7-, -lzs-, -lz4-, -lz5-, -lhd- at offset 2
  mark(0, 'ITSF', 'chm'),
  mark(0, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], 'xz'),
  mark(0, [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c], '7z'),
  mark(0, [0x52, 0x61, 0x72, 0x21, 0x1a, 0x07], 'rar'),
  mark(0, '!<arch>', 'deb', 'ar'),
  mark(0, 'REGEDIT4\r\n', 'reg'),
  mark(0, [0xff, 0xfe, 0x57, 0x00], 'reg'), // UTF-16LE BOM, "Windows Registry Editor Version 5.00"
  mark(7, '**ACE', 'ace'),
  mark(0, [0x4c, 0x00, 0x00, 0x00, 0x01, 0x14, 0x02, 0x00], 'lnk'),
  // Only after a UTF-8 BOM or an ID3 tag here (the zip branch of sniff asks file-type itself).
  mark(0, [0x50, 0x4b, 0x03, 0x04], 'jar', 'apk', 'xpi', 'docm', 'dotm', 'xlsm', 'xltm', 'pptm', 'potm', 'ppsm'),
];

const MARKS_AT = FILE_TYPE_MARKS.map((m) => ({ at: m.at, bytes: m.bytes, first: m.bytes[0]! }));

/**
 * False when file-type cannot report, for these first bytes, any type that raises a finding here:
 * then it need not run (its checks make a string and an array for every signature it tries, the
 * largest share of the bytes a plain text message allocates in the relay). file-type sees the bytes
 * past the end of a short prefix as zeros, and so does this. It skips a UTF-8 BOM and looks again
 * (so does this), and an ID3 tag of any length (anything may follow: always true).
 */
export function fileTypeMayFlag(prefix: Uint8Array): boolean {
  for (let start = 0; ; start += 3) {
    const b0 = byteAt(prefix, start);
    if (b0 === 0xef && byteAt(prefix, start + 1) === 0xbb && byteAt(prefix, start + 2) === 0xbf) {
      if (prefix.length - start <= 3) return false; // nothing left to look at
      continue;
    }
    if (b0 === 0x49 && byteAt(prefix, start + 1) === 0x44 && byteAt(prefix, start + 2) === 0x33) return true; // ID3
    for (const m of MARKS_AT) {
      if (byteAt(prefix, start + m.at) !== m.first) continue;
      let i = 1;
      while (i < m.bytes.length && byteAt(prefix, start + m.at + i) === m.bytes[i]) i++;
      if (i === m.bytes.length) return true;
    }
    return false;
  }
}

function byteAt(b: Uint8Array, i: number): number {
  return i < b.length ? b[i]! : 0;
}

/** What `sniff` looks for. */
export interface SniffOptions {
  /** A leading `#!` makes a script. Default true; false for nameless text bodies: a message that starts with `#!` is prose. */
  readonly allowShebang?: boolean;
  /**
   * Outside the zip branch, file-type is asked only when the prefix may be a type that raises a
   * finding (`fileTypeMayFlag`); other types then come back without a `type`. Default false.
   */
  readonly findingsOnly?: boolean;
}

/**
 * Classifies a file by its first bytes: file-type (a maintained signature library) first, then the
 * few signatures it leaves out (shebang scripts, ISO 9660, VHD/VHDX).
 */
export async function sniff(prefix: Buffer, opts: SniffOptions = {}): Promise<Sniffed> {
  const { allowShebang = true, findingsOnly = false } = opts;
  if (!prefix.length) return {};
  if (looksLikeZip(prefix)) {
    const ft = await safeFileType(prefix);
    const type = ft ?? 'zip';
    return { type, container: 'zip', kind: EXECUTABLE.has(type) ? 'executable' : MACRO.has(type) ? 'macro' : undefined };
  }
  if (looksLikeTar(prefix)) return { type: 'tar', container: 'tar' };
  if (looksLikeGzip(prefix)) return { type: 'gz', container: 'gzip' };
  if (hasAt(prefix, 0, OLE_MAGIC)) return { type: 'cfb', ole: true };
  const bomless = prefix[0] === 0xef && prefix[1] === 0xbb && prefix[2] === 0xbf ? prefix.subarray(3) : prefix;
  if (allowShebang && bomless[0] === 0x23 && bomless[1] === 0x21) return { type: 'script', kind: 'script' };
  for (const off of ISO_OFFSETS) if (hasAt(prefix, off, CD001)) return { type: 'iso', kind: 'disk-image' };
  // OneNote (.one): a notebook that embeds files (scripts, programs) we cannot open: the 2023 lure.
  if (hasAt(prefix, 0, ONENOTE_MAGIC)) return { type: 'one', kind: 'opaque-archive' };
  if (hasAt(prefix, 0, VHD)) return { type: 'vhd', kind: 'disk-image' };
  if (hasAt(prefix, 0, VHDX)) return { type: 'vhdx', kind: 'disk-image' };
  if (findingsOnly && !fileTypeMayFlag(prefix)) return {};
  const type = await safeFileType(prefix);
  if (!type) return {};
  const kind = kindOfType(type);
  return kind ? { type, kind } : { type };
}

async function safeFileType(b: Buffer): Promise<string | undefined> {
  try {
    return (await fileTypeFromBuffer(b))?.ext;
  } catch {
    return undefined; // a truncated prefix may end a parser early; not a finding by itself
  }
}

/**
 * Finds VBA in an OLE compound file as it streams past: both Word (`Macros/VBA/_VBA_PROJECT`)
 * and Excel (`_VBA_PROJECT_CUR/VBA/_VBA_PROJECT`) store a stream named `_VBA_PROJECT`, and
 * directory entry names are UTF-16LE. Memory: the needle's length, carried between chunks.
 */
export class OleMacroScanner {
  private static readonly needle = Buffer.from('_VBA_PROJECT', 'utf16le');
  private tail = Buffer.alloc(0);
  found = false;

  push(chunk: Buffer): void {
    if (this.found) return;
    const n = OleMacroScanner.needle;
    const buf = this.tail.length ? Buffer.concat([this.tail, chunk]) : chunk;
    if (buf.indexOf(n) >= 0) {
      this.found = true;
      return;
    }
    this.tail = Buffer.from(buf.subarray(Math.max(0, buf.length - (n.length - 1))));
  }
}

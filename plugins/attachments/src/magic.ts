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
  return b.length >= 262 && b.toString('latin1', 257, 262) === 'ustar';
}

/** The OneNote revision-store file format's GUID {7B5C52E4-D88C-4DA7-AEB1-5378D02996D3}, as stored (MS-ONESTORE). */
const ONENOTE_MAGIC = Buffer.from('e4525c7b8cd8a74daeb15378d02996d3', 'hex');

/** Needs random access (zip) or a streamed pass of its own (tar, gzip): written to a temp file. */
export function needsContainerPass(prefix: Buffer): boolean {
  return looksLikeZip(prefix) || looksLikeGzip(prefix) || looksLikeTar(prefix);
}

/**
 * Classifies a file by its first bytes: file-type (a maintained signature library) first, then the
 * few signatures it leaves out (shebang scripts, ISO 9660, VHD/VHDX).
 * `allowShebang` is false for nameless text bodies: a message that starts with `#!` is prose.
 */
export async function sniff(prefix: Buffer, allowShebang = true): Promise<Sniffed> {
  if (!prefix.length) return {};
  if (looksLikeZip(prefix)) {
    const ft = await safeFileType(prefix);
    const type = ft ?? 'zip';
    return { type, container: 'zip', kind: EXECUTABLE.has(type) ? 'executable' : MACRO.has(type) ? 'macro' : undefined };
  }
  if (looksLikeTar(prefix)) return { type: 'tar', container: 'tar' };
  if (looksLikeGzip(prefix)) return { type: 'gz', container: 'gzip' };
  if (prefix.subarray(0, 8).equals(OLE_MAGIC)) return { type: 'cfb', ole: true };
  const bomless = prefix[0] === 0xef && prefix[1] === 0xbb && prefix[2] === 0xbf ? prefix.subarray(3) : prefix;
  if (allowShebang && bomless[0] === 0x23 && bomless[1] === 0x21) return { type: 'script', kind: 'script' };
  for (const off of [0x8001, 0x8801, 0x9001]) {
    if (prefix.length >= off + 5 && prefix.toString('latin1', off, off + 5) === 'CD001') return { type: 'iso', kind: 'disk-image' };
  }
  // OneNote (.one): a notebook that embeds files (scripts, programs) we cannot open: the 2023 lure.
  if (prefix.length >= 16 && prefix.subarray(0, 16).equals(ONENOTE_MAGIC)) return { type: 'one', kind: 'opaque-archive' };
  if (prefix.toString('latin1', 0, 8) === 'conectix') return { type: 'vhd', kind: 'disk-image' };
  if (prefix.toString('latin1', 0, 8) === 'vhdxfile') return { type: 'vhdx', kind: 'disk-image' };
  const type = await safeFileType(prefix);
  if (!type) return {};
  if (EXECUTABLE.has(type)) return { type, kind: 'executable' };
  if (SCRIPT.has(type)) return { type, kind: 'script' };
  if (MACRO.has(type)) return { type, kind: 'macro' };
  if (DISK.has(type)) return { type, kind: 'disk-image' };
  if (OPAQUE.has(type)) return { type, kind: 'opaque-archive' };
  return { type };
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

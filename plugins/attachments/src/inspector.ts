import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Finding } from './findings.js';
import { DECISION_BYTES, needsContainerPass, OleMacroScanner, sniff } from './magic.js';
import { UuencodeScanner } from './uuencode.js';
import { displayName } from './names.js';
import { ActiveContentScanner, type ActiveContentKind } from './active-content.js';

/** Limits and places shared by every inspection of one relay. */
export interface InspectContext {
  readonly sniffBytes: number;
  readonly maxDepth: number;
  readonly maxEntries: number;
  readonly maxTotalSize: number;
  /** Largest container (archive, attached message) written to a temp file for inspection. */
  readonly maxSize: number;
  readonly tempDir: string;
  readonly uuencode: boolean;
  /**
   * How to look inside a nested container or attached message. Passed in (by index.ts, from
   * archive.ts and message-scan.ts) rather than imported: those modules build inspectors, so an
   * import back would be a circle.
   */
  readonly open: NestedOpeners;
}

export interface NestedOpeners {
  container(kind: 'zip' | 'tar' | 'gzip', file: string, ctx: InspectContext, depth: number, budget: Budget, label: string): Promise<Inspection>;
  message(file: string, ctx: InspectContext, depth: number, budget: Budget, label: string): Promise<Inspection>;
}

/** Counters shared by one attachment and everything nested in it (archive bombs). */
export interface Budget {
  entries: number;
  bytes: number;
}

/** A name found somewhere in an attachment, with how reasons call it, e.g. `archive member "x.exe" in attachment "a.zip"`. */
export interface FoundName {
  readonly name: string;
  readonly label: string;
}

/**
 * What inspecting one part found, independent of rules: the names and declared types to check
 * against each rule's lists, and the content findings (kinds the rule may or may not act on).
 */
export interface Inspection {
  readonly names: FoundName[];
  readonly types: string[];
  readonly findings: Finding[];
}

export function emptyInspection(): Inspection {
  return { names: [], types: [], findings: [] };
}

export function merge(into: Inspection, from: Inspection): void {
  into.names.push(...from.names);
  into.types.push(...from.types);
  into.findings.push(...from.findings);
}

export interface InspectorOptions {
  /** Keep a copy of every byte (up to `keepCopyMax`) for the quarantine. */
  readonly keepCopy?: boolean;
  readonly keepCopyMax?: number;
  /** The content is a whole message (message/rfc822, a `.eml`): screen its parts. */
  readonly isMessage?: boolean;
  /** A text part: scan for uuencoded blocks. */
  readonly isText?: boolean;
  /** Has a file name (a nameless text body starting with `#!` is prose, not a script). */
  readonly named?: boolean;
  /** An HTML or SVG attachment: look for active content (script) in all of it. */
  readonly activeContent?: ActiveContentKind;
  readonly depth: number;
  readonly budget: Budget;
  /** How findings name this content, e.g. `attachment "a.zip"` or `archive member "x/y.exe"`. */
  readonly label: string;
}

/**
 * Inspects one stream of decoded bytes with bounded memory: keeps the first `sniffBytes` for
 * content detection, scans OLE files for VBA and text for uuencoded blocks on the fly, and writes
 * to a temp file only what needs a second look (archives, attached messages) or a quarantine copy.
 * `update` is synchronous (the core's PartScreener contract); `finish` does the slow parts.
 */
export class ContentInspector {
  private prefixParts: Buffer[] = [];
  private prefixLen = 0;
  private pending: Buffer[] = [];
  private decided = false;
  private fd?: number;
  private spoolLimit = 0;
  private spooled = 0;
  private ole?: OleMacroScanner;
  private readonly uu?: UuencodeScanner;
  private readonly active?: ActiveContentScanner;
  /** Temp file with the bytes (when kept); removed by `cleanup`. */
  tempPath?: string;
  /** True when the temp file stopped at its limit. */
  truncated = false;
  size = 0;
  private container = false;

  constructor(private readonly ctx: InspectContext, private readonly opts: InspectorOptions) {
    if (opts.isText && ctx.uuencode) this.uu = new UuencodeScanner(ctx.sniffBytes);
    if (opts.activeContent) this.active = new ActiveContentScanner(opts.activeContent);
  }

  update(chunk: Buffer): void {
    if (!chunk.length) return;
    this.size += chunk.length;
    if (this.prefixLen < this.ctx.sniffBytes) {
      const take = chunk.subarray(0, this.ctx.sniffBytes - this.prefixLen);
      this.prefixParts.push(Buffer.from(take));
      this.prefixLen += take.length;
    }
    this.uu?.push(chunk);
    this.active?.push(chunk);
    if (!this.decided) {
      this.pending.push(chunk);
      if (this.prefixLen >= DECISION_BYTES) this.decide();
      return;
    }
    this.consume(chunk);
  }

  /** False once more bytes cannot change the outcome (archive members are then skipped). */
  wantsMore(): boolean {
    return !this.decided || this.fd !== undefined || (!!this.ole && !this.ole.found) || !!this.uu || (!!this.active && !this.active.found) || this.prefixLen < this.ctx.sniffBytes;
  }

  private decide(): void {
    this.decided = true;
    const prefix = this.prefix();
    this.container = needsContainerPass(prefix);
    if (prefix.length >= 8 && prefix.readUInt32BE(0) === 0xd0cf11e0 && prefix.readUInt32BE(4) === 0xa1b11ae1) this.ole = new OleMacroScanner();
    const forInspection = this.opts.isMessage || this.container ? this.ctx.maxSize : 0;
    const forCopy = this.opts.keepCopy ? (this.opts.keepCopyMax ?? 0) : 0;
    this.spoolLimit = Math.max(forInspection, forCopy);
    if (this.spoolLimit > 0) {
      this.tempPath = path.join(this.ctx.tempDir, `portcullis-att-${process.pid}-${randomBytes(8).toString('hex')}`);
      this.fd = openSync(this.tempPath, 'wx', 0o600);
    }
    const pending = this.pending;
    this.pending = [];
    for (const c of pending) this.consume(c);
  }

  private consume(chunk: Buffer): void {
    this.ole?.push(chunk);
    if (this.fd === undefined) return;
    const room = this.spoolLimit - this.spooled;
    if (room <= 0) {
      this.truncated = true;
      return;
    }
    const piece = chunk.length > room ? chunk.subarray(0, room) : chunk;
    if (piece.length < chunk.length) this.truncated = true;
    let off = 0;
    while (off < piece.length) off += writeSync(this.fd, piece, off, piece.length - off);
    this.spooled += piece.length;
  }

  private prefix(): Buffer {
    if (this.prefixParts.length > 1) this.prefixParts = [Buffer.concat(this.prefixParts)];
    return this.prefixParts[0] ?? Buffer.alloc(0);
  }

  /** Ends the input and inspects: content type, macros, uuencoded blocks, then containers. */
  async finish(): Promise<Inspection> {
    if (!this.decided) this.decide();
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
    const out = emptyInspection();
    const { label, depth } = this.opts;
    const prefix = this.prefix();
    const sniffed = await sniff(prefix, { allowShebang: this.opts.named !== false || !this.opts.isText, findingsOnly: true });
    if (sniffed.kind) out.findings.push({ kind: sniffed.kind, reason: `${label} is ${describeType(sniffed.type, sniffed.kind)}` });
    if (this.ole?.found) out.findings.push({ kind: 'macro', reason: `${label} is an Office document with macros` });
    if (this.active?.found) out.findings.push({ kind: 'script', reason: `${label} is ${this.active.kind === 'svg' ? 'an SVG image with active content' : 'HTML with script'} (${this.active.found})` });

    if (this.uu) {
      for (const block of this.uu.finish()) {
        const blockLabel = `uuencoded file "${displayName(block.name)}" in ${label}`;
        out.names.push({ name: block.name, label: blockLabel });
        const s = await sniff(block.prefix, { findingsOnly: true });
        if (s.kind) out.findings.push({ kind: s.kind, reason: `${blockLabel} is ${describeType(s.type, s.kind)}` });
      }
    }

    if (this.opts.isMessage || sniffed.container) {
      const what = this.opts.isMessage ? 'attached message' : 'archive';
      if (this.truncated || this.size > this.ctx.maxSize) {
        out.findings.push({ kind: 'archive-limit', reason: `${label} is an ${what} too large to inspect` });
      } else if (depth >= this.ctx.maxDepth) {
        out.findings.push({ kind: 'archive-limit', reason: `${label} is nested more than ${this.ctx.maxDepth} levels deep` });
      } else if (this.tempPath) {
        const inner = this.opts.isMessage
          ? await this.ctx.open.message(this.tempPath, this.ctx, depth + 1, this.opts.budget, label)
          : await this.ctx.open.container(sniffed.container!, this.tempPath, this.ctx, depth + 1, this.opts.budget, label);
        merge(out, inner);
      }
    }
    return out;
  }

  /** Removes the temp file (idempotent). */
  cleanup(): void {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        /* already closed */
      }
      this.fd = undefined;
    }
    if (this.tempPath) rmSync(this.tempPath, { force: true });
    this.tempPath = undefined;
  }
}

function describeType(type: string | undefined, kind?: string): string {
  if (type === 'one') return 'a OneNote notebook, which can embed files that cannot be inspected';
  if (kind === 'opaque-archive') return `an archive that cannot be inspected (${type})`;
  if (kind === 'macro') return `a macro-enabled Office document (${type})`;
  switch (type) {
    case 'exe':
      return 'a Windows program (PE/MZ)';
    case 'elf':
      return 'a Linux program (ELF)';
    case 'macho':
      return 'a macOS program (Mach-O)';
    case 'script':
      return 'a script (#!)';
    case 'iso':
      return 'a disk image (ISO 9660)';
    case 'dmg':
      return 'a disk image (DMG)';
    case 'vhd':
    case 'vhdx':
      return `a disk image (${type.toUpperCase()})`;
    case 'lnk':
      return 'a Windows shortcut';
    case 'reg':
      return 'a Windows registry file';
    default:
      return type ? `a file of type ${type}` : 'an unknown file';
  }
}

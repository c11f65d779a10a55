/** One uuencoded block found in a text part: its name and the first decoded bytes. */
export interface UuBlock {
  readonly name: string;
  prefix: Buffer;
}

const BEGIN = /^begin(?:-base64)? [0-7]{3,4} (.+?)\s*$/;
const MAX_LINE = 4096;
const MAX_BLOCKS = 100;
const BEGIN_WORD = Buffer.from('begin');

/**
 * Finds `begin 644 name` blocks in a text body as it streams past, and decodes the first
 * `prefixBytes` of each so the real content can be sniffed too. Memory: one line, plus the
 * prefixes of at most MAX_BLOCKS blocks.
 */
export class UuencodeScanner {
  readonly blocks: UuBlock[] = [];
  private line = '';
  private overlong = false;
  private current?: { block: UuBlock; parts: Buffer[]; size: number; base64: boolean };

  constructor(private readonly prefixBytes: number) {}

  push(chunk: Buffer): void {
    // Outside a block only a line starting with "begin" matters: the whole lines of a chunk that
    // has no "begin" in them are skipped without being looked at one by one. The first line (it
    // continues the carried one) and the last, unfinished one go the usual way.
    if (!this.current && !this.overlong) {
      const first = chunk.indexOf(0x0a);
      const last = chunk.lastIndexOf(0x0a);
      if (first >= 0 && last > first && chunk.indexOf(BEGIN_WORD, first + 1) < 0) {
        this.pushText(chunk.toString('latin1', 0, first + 1));
        if (!this.current) {
          this.line = '';
          this.overlong = false;
          this.pushText(chunk.toString('latin1', last + 1));
          return;
        }
        return this.pushText(chunk.toString('latin1', first + 1));
      }
    }
    this.pushText(chunk.toString('latin1'));
  }

  private pushText(text: string): void {
    let nl: number;
    while ((nl = text.indexOf('\n')) >= 0) {
      const piece = text.slice(0, nl);
      text = text.slice(nl + 1);
      if (!this.overlong) this.onLine((this.line + piece).replace(/\r$/, ''));
      this.line = '';
      this.overlong = false;
    }
    if (!this.overlong) {
      this.line += text;
      if (this.line.length > MAX_LINE) {
        this.line = '';
        this.overlong = true; // not a uuencode line; skip to the next newline
      }
    }
  }

  finish(): UuBlock[] {
    if (this.line && !this.overlong) this.onLine(this.line.replace(/\r$/, ''));
    this.line = '';
    this.close();
    return this.blocks;
  }

  private onLine(line: string): void {
    const m = BEGIN.exec(line);
    if (m) {
      this.close();
      if (this.blocks.length >= MAX_BLOCKS) return;
      const block: UuBlock = { name: m[1]!, prefix: Buffer.alloc(0) };
      this.blocks.push(block);
      this.current = { block, parts: [], size: 0, base64: line.startsWith('begin-base64') };
      return;
    }
    const cur = this.current;
    if (!cur) return;
    if (line === 'end' || line === '====') return this.close();
    if (cur.size >= this.prefixBytes) return;
    const bytes = cur.base64 ? Buffer.from(line, 'base64') : decodeUuLine(line);
    if (!bytes) return;
    cur.parts.push(bytes);
    cur.size += bytes.length;
  }

  private close(): void {
    if (!this.current) return;
    this.current.block.prefix = Buffer.concat(this.current.parts).subarray(0, this.prefixBytes);
    this.current = undefined;
  }
}

/** One uuencoded line: a length character, then groups of four 6-bit characters. */
export function decodeUuLine(line: string): Buffer | undefined {
  if (!line.length) return undefined;
  const n = (line.charCodeAt(0) - 32) & 0x3f;
  if (n === 0) return undefined;
  const out = Buffer.alloc(n);
  let o = 0;
  for (let i = 1; o < n; i += 4) {
    const c = [0, 1, 2, 3].map((k) => ((line.charCodeAt(i + k) || 32) - 32) & 0x3f);
    const b = [(c[0]! << 2) | (c[1]! >> 4), ((c[1]! & 0xf) << 4) | (c[2]! >> 2), ((c[2]! & 0x3) << 6) | c[3]!];
    for (const x of b) if (o < n) out[o++] = x & 0xff;
  }
  return out;
}

import { createRequire } from 'node:module';
import libmime from 'libmime';

// nodemailer's address parser (RFC 5322 address lists, groups, comments, quoted names): the one
// nodemailer itself uses for From/To; loaded through require because it ships as CommonJS only.
const addressparser = createRequire(import.meta.url)('nodemailer/lib/addressparser') as (
  value: string,
  opts?: { flatten?: boolean },
) => Array<{ name: string; address?: string; group?: Array<{ name: string; address?: string }> }>;

/** One header field of the message's top-level header section. */
export interface MessageHeaderField {
  /** The field name as written (`Subject`). */
  readonly name: string;
  /** The name lower-cased (`subject`). */
  readonly key: string;
  /** The whole field exactly as received, folding included, without the final CRLF. */
  readonly raw: string;
  /** The value after the colon, unfolded, leading white space removed; encoded words left as they are. */
  readonly value: string;
  /** The value with RFC 2047 encoded words decoded (`=?UTF-8?B?...?=` becomes text). */
  readonly decoded: string;
}

/** A mailbox from an address-list header (From, To, Cc, Reply-To, ...), its display name decoded. */
export interface HeaderAddress {
  /** Display name, RFC 2047 decoded; '' when there is none. */
  readonly name: string;
  /** The addr-spec (`user@example.org`); '' when the list held only a name. */
  readonly address: string;
  /** The group's name when the mailbox was listed inside a group (`Team: a@x, b@y;`). */
  readonly group?: string;
}

/** A structured value such as Content-Type: the main value and its parameters, RFC 2231 decoded. */
export interface StructuredHeader {
  readonly value: string;
  /** Parameter names lower-cased; continuations (`name*0*=`) joined and charsets decoded. */
  readonly params: Readonly<Record<string, string>>;
}

/**
 * The message's top-level header section, parsed once DATA has ended: every field raw and decoded,
 * address lists and structured values on request. Screeners read this instead of decoding headers
 * themselves (a filter that matches raw text misses `=?UTF-8?B?...?=` words).
 */
export interface MessageHeaders {
  /** The header section as received (CRLF line ends), without the blank line that ends it. */
  readonly raw: string;
  /** Every field in order. */
  readonly fields: readonly MessageHeaderField[];
  /** True when the message has a field with this name (case-insensitive). */
  has(name: string): boolean;
  /** The first field's decoded value, or undefined. */
  get(name: string): string | undefined;
  /** Every field's decoded value, in order. */
  getAll(name: string): string[];
  /** Every field's value unfolded but not decoded, in order. */
  getRaw(name: string): string[];
  /** The mailboxes of every field with this name (From, To, Cc, Bcc, Reply-To, Sender, ...). */
  addresses(name: string): HeaderAddress[];
  /** The first field as a structured value (Content-Type, Content-Disposition), or undefined. */
  structured(name: string): StructuredHeader | undefined;
}

function decodeWords(value: string): string {
  try {
    return libmime.decodeWords(value);
  } catch {
    return value;
  }
}

/**
 * Parses a header section (the bytes before the first empty line). Never throws.
 *
 * The parse is made on first use, not here: the intake builds `txn.headers` for every message, and
 * most messages reach the 250 without any plugin reading a field (the bundled ones read headers only
 * on a finding, or not at all). Splitting, unfolding and RFC 2047-decoding every field of every
 * message was 3.7 KB of JS heap a message, a tenth of our own allocations on the benchmark's path
 * (packages/core/README.md, issue 22, part 9). What a reader sees is the same either way.
 */
export function parseHeaderSection(section: Buffer | string): MessageHeaders {
  return new LazyHeaders(section);
}

class LazyHeaders implements MessageHeaders {
  private parsed?: { raw: string; fields: MessageHeaderField[] };

  constructor(private source: Buffer | string | undefined) {}

  get raw(): string {
    return this.parse().raw;
  }

  get fields(): readonly MessageHeaderField[] {
    return this.parse().fields;
  }

  // The methods are own arrow functions, as they were when the parse was made at once: a plugin
  // that takes one off the object (`const { get } = txn.headers`) keeps working.
  readonly has = (name: string): boolean => this.of(name).length > 0;

  readonly get = (name: string): string | undefined => this.of(name)[0]?.decoded;

  readonly getAll = (name: string): string[] => this.of(name).map((f) => f.decoded);

  readonly getRaw = (name: string): string[] => this.of(name).map((f) => f.value);

  readonly addresses = (name: string): HeaderAddress[] => {
    const out: HeaderAddress[] = [];
    for (const f of this.of(name)) {
      let parsed: ReturnType<typeof addressparser>;
      try {
        parsed = addressparser(f.value);
      } catch {
        continue;
      }
      for (const entry of parsed) {
        if (entry.group) {
          const group = decodeWords(entry.name ?? '');
          for (const m of entry.group) out.push({ name: decodeWords(m.name ?? ''), address: m.address ?? '', group });
        } else out.push({ name: decodeWords(entry.name ?? ''), address: entry.address ?? '' });
      }
    }
    return out;
  };

  readonly structured = (name: string): StructuredHeader | undefined => {
    const f = this.of(name)[0];
    if (!f) return undefined;
    try {
      const parsed = libmime.parseHeaderValue(f.value) as { value: string; params: Record<string, string> };
      const params: Record<string, string> = {};
      for (const [k, v] of Object.entries(parsed.params ?? {})) params[k.toLowerCase()] = decodeWords(v);
      return { value: parsed.value, params };
    } catch {
      return { value: f.decoded, params: {} };
    }
  };

  /** A plain object in logs and `JSON.stringify`, as before: the parsed section. */
  toJSON(): { raw: string; fields: readonly MessageHeaderField[] } {
    return this.parse();
  }

  private of(name: string): MessageHeaderField[] {
    const key = name.toLowerCase();
    return this.parse().fields.filter((f) => f.key === key);
  }

  private parse(): { raw: string; fields: MessageHeaderField[] } {
    if (this.parsed) return this.parsed;
    const section = this.source ?? '';
    this.source = undefined; // the parse holds what it needs
    let text = typeof section === 'string' ? section : section.toString('utf8');
    const end = text.search(/\r?\n\r?\n/);
    if (end >= 0) text = text.slice(0, end);
    text = text.replace(/\r?\n$/, '');
    const fields: MessageHeaderField[] = [];
    // A field starts at a line that does not begin with white space; folded lines belong to it.
    for (const rawField of text.split(/\r?\n(?![ \t])/)) {
      if (!rawField) continue;
      const colon = rawField.indexOf(':');
      if (colon <= 0) continue; // not a field (mbox "From " line, junk): nothing a screener can use
      const name = rawField.slice(0, colon).trim();
      const value = rawField.slice(colon + 1).replace(/\r?\n(?=[ \t])/g, '').replace(/^[ \t]+/, '');
      fields.push({ name, key: name.toLowerCase(), raw: rawField, value, decoded: decodeWords(value) });
    }
    this.parsed = { raw: text, fields };
    return this.parsed;
  }
}

/**
 * Collects the top-level header section while DATA streams by. Bounded: the header scanner rejects
 * a section larger than `limits.headerSize` before this holds more than that.
 */
export class HeaderCollector {
  private readonly chunks: Buffer[] = [];
  private length = 0;
  complete = false;

  /** `sectionBytes` is how many bytes of the message belong to the header section so far. */
  push(chunk: Buffer, sectionBytes: number, sectionDone: boolean): void {
    if (this.complete) return;
    const take = Math.max(0, Math.min(chunk.length, sectionBytes - this.length));
    if (take) {
      this.chunks.push(take === chunk.length ? chunk : chunk.subarray(0, take));
      this.length += take;
    }
    if (sectionDone) this.complete = true;
  }

  headers(): MessageHeaders {
    return parseHeaderSection(Buffer.concat(this.chunks));
  }
}

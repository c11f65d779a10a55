import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { HeaderSectionCut, type HeaderSectionParts } from '../../api/header-section-cut.js';

/**
 * Applying `txn.edits`' content changes to a message's stored bytes: the header edits to its
 * top-level header section, and a replacement body. Two ways to the same bytes: `applyContentEdits`
 * streams a spooled file into a new one (a large message, or a replaced body), `editInMemory` edits
 * a small message that is still in memory (header edits only), so that it is committed like any
 * other small message, in a spool segment, with no file of its own (`intake/message-intake.ts`).
 * The recorder that collects the edits is `message-edits.ts`.
 */

/** A header change, in the order plugins asked for it. */
export type HeaderEdit =
  | { readonly op: 'appendHeader'; readonly name: string; readonly value: string }
  | { readonly op: 'insertHeader'; readonly index: number; readonly name: string; readonly value: string }
  | { readonly op: 'changeHeader'; readonly name: string; readonly occurrence: number; readonly value: string | undefined }
  | { readonly op: 'removeHeader'; readonly name: string };

export interface ContentPlan {
  readonly headers: readonly HeaderEdit[];
  /** The replacement body's temp file (the last replaceBody), if any. */
  readonly body?: string;
}

/** The header section of a spooled message is bounded by limits.headerSize; this is a safety net. */
const MAX_HEADER_SCAN = 16 * 1024 * 1024;
const CRLF = Buffer.from('\r\n');

/**
 * The bytes `applyContentEdits` writes for a plan of header edits only, for a message held in memory
 * as the chunks it arrived in (at most `spool.inlineMax`, far under the header scan's safety net):
 * the edited header section, then the rest as it was, from the blank line on, as chunks again. Only
 * the chunks up to the one where the header section ends are joined, once (`HeaderSectionCut`;
 * usually the first alone, not copied): the body is not copied here, the spool's wire buffer is its
 * one copy (`Spool.enqueue`). A message without a blank line is all header section, as there.
 */
export function editInMemory(chunks: readonly Buffer[], headers: readonly HeaderEdit[]): Buffer[] {
  const cut = new HeaderSectionCut();
  for (let k = 0; k < chunks.length; k++) {
    const parts = cut.push(chunks[k]!);
    if (parts) return [editHeaderFields(parts.head, headers), parts.rest, ...chunks.slice(k + 1)];
  }
  return [editHeaderFields(cut.pending(), headers)];
}

interface Field {
  /** Lower-case name, for matching ('' for a line that is not a field). */
  readonly key: string;
  /** The whole field with its final CRLF, bytes as stored. */
  readonly raw: Buffer;
}

function splitFields(head: Buffer): Field[] {
  const fields: Field[] = [];
  let start = 0;
  let i = 0;
  while (i < head.length) {
    const nl = head.indexOf(CRLF, i);
    const end = nl < 0 ? head.length : nl + 2;
    const next = head[end];
    // A field ends where the next line does not start with white space (folding).
    if (end >= head.length || (next !== 0x20 && next !== 0x09)) {
      const raw = head.subarray(start, end);
      const colon = raw.indexOf(0x3a);
      const key = colon > 0 ? raw.subarray(0, colon).toString('latin1').trim().toLowerCase() : '';
      fields.push({ key, raw });
      start = end;
    }
    i = end;
  }
  return fields;
}

function fieldOf(name: string, value: string): Field {
  return { key: name.toLowerCase(), raw: Buffer.from(`${name}: ${value}\r\n`, 'utf8') };
}

/** Applies the header edits, in order, to the fields as stored. */
export function editHeaderFields(head: Buffer, edits: readonly HeaderEdit[]): Buffer {
  const fields = splitFields(head);
  for (const e of edits) {
    const key = e.name.toLowerCase();
    if (e.op === 'appendHeader') fields.push(fieldOf(e.name, e.value));
    else if (e.op === 'insertHeader') fields.splice(Math.min(e.index, fields.length), 0, fieldOf(e.name, e.value));
    else if (e.op === 'removeHeader') {
      for (let i = fields.length - 1; i >= 0; i--) if (fields[i]!.key === key) fields.splice(i, 1);
    } else {
      let seen = 0;
      const at = fields.findIndex((f) => f.key === key && ++seen === e.occurrence);
      // As libmilter's smfi_chgheader: changing a field that is not there adds it.
      if (at < 0) {
        if (e.value !== undefined) fields.push(fieldOf(e.name, e.value));
      } else if (e.value === undefined) fields.splice(at, 1);
      else {
        // The name keeps its spelling as written; only the value changes.
        const old = fields[at]!.raw;
        fields[at] = fieldOf(old.subarray(0, old.indexOf(0x3a)).toString('latin1').trimEnd(), e.value);
      }
    }
  }
  return Buffer.concat(fields.map((f) => f.raw));
}

/**
 * `src` with the header edits applied to its top-level header section and, when the plan has one,
 * the body replaced by the replacement file, as a stream of pieces: only the header section (bounded
 * by limits.headerSize) is held in memory. `applyContentEdits` writes it to a file; the milter
 * plugin's sequential mode feeds it to the next milter.
 */
export async function* editedContent(src: string, plan: ContentPlan): AsyncGenerator<Buffer> {
  const input = createReadStream(src, { highWaterMark: 64 * 1024 });
  const it = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  try {
    const cut = new HeaderSectionCut();
    let parts: HeaderSectionParts | undefined;
    while (!parts) {
      if (cut.size > MAX_HEADER_SCAN) throw new Error('header section too large to edit');
      const r = await it.next();
      if (r.done) break;
      parts = cut.push(r.value);
    }
    // A message without a blank line is all header section.
    yield editHeaderFields(parts ? parts.head : cut.pending(), plan.headers);
    if (plan.body) {
      input.destroy();
      yield CRLF;
      yield* createReadStream(plan.body, { highWaterMark: 64 * 1024 }) as AsyncIterable<Buffer>;
      return;
    }
    if (!parts) return;
    yield parts.rest;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  } finally {
    input.destroy();
  }
}

/** Writes `dest`: the bytes `editedContent` gives for `src` and the plan, in one streamed pass. */
export async function applyContentEdits(src: string, dest: string, plan: ContentPlan): Promise<void> {
  await pipeline(editedContent(src, plan), createWriteStream(dest, { mode: 0o640 }));
}

import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { domainToASCII } from 'node:url';
import { LineEndingNormalizer } from '../line-ending-normalizer.js';
import type { MessageEdits } from '../../api/types.js';
import type { ContentPlan, HeaderEdit } from './content-edits.js';

type Args = Readonly<Record<string, string | true>>;

/** One recorded change, in call order, with the plugin that asked for it. */
export type MessageEdit =
  | HeaderEdit
  | { readonly op: 'addRecipient'; readonly address: string; readonly args?: Args }
  | { readonly op: 'removeRecipient'; readonly address: string }
  | { readonly op: 'setSender'; readonly address: string; readonly args?: Args }
  | { readonly op: 'replaceBody'; readonly file: string }
  | { readonly op: 'hold'; readonly reason: string };

const CRLF = Buffer.from('\r\n');

/**
 * The calls of `txn.edits`, validated at once (a bad name or address throws in the caller's hook,
 * which then fails closed like any plugin error) and handed to `record` / `body`.
 */
abstract class EditCalls implements MessageEdits {
  protected abstract record(edit: MessageEdit): void;
  protected abstract body(body: NodeJS.ReadableStream | Buffer): Promise<void> | void;

  appendHeader(name: string, value: string): void {
    this.record({ op: 'appendHeader', name: headerName(name), value: foldValue(value) });
  }

  insertHeader(index: number, name: string, value: string): void {
    if (!Number.isInteger(index) || index < 0) throw new TypeError(`insertHeader: index must be an integer >= 0, got ${index}`);
    this.record({ op: 'insertHeader', index, name: headerName(name), value: foldValue(value) });
  }

  changeHeader(name: string, occurrence: number, value: string | undefined): void {
    if (!Number.isInteger(occurrence) || occurrence < 1) throw new TypeError(`changeHeader: occurrence is 1-based, got ${occurrence}`);
    this.record({ op: 'changeHeader', name: headerName(name), occurrence, value: value === undefined ? undefined : foldValue(value) });
  }

  removeHeader(name: string): void {
    this.record({ op: 'removeHeader', name: headerName(name) });
  }

  addRecipient(address: string, args?: Args): void {
    this.record({ op: 'addRecipient', address: mailbox(address, false), ...(args ? { args: esmtpArgs(args) } : {}) });
  }

  removeRecipient(address: string): void {
    this.record({ op: 'removeRecipient', address: mailbox(address, false) });
  }

  setSender(address: string, args?: Args): void {
    this.record({ op: 'setSender', address: mailbox(address, true), ...(args ? { args: esmtpArgs(args) } : {}) });
  }

  replaceBody(body: NodeJS.ReadableStream | Buffer): Promise<void> | void {
    return this.body(body);
  }

  hold(reason: string): void {
    this.record({ op: 'hold', reason: oneLine(String(reason)).slice(0, 500) || 'held' });
  }
}

/** One plugin's `txn.edits` (MessageEditRecorder.as): what it records carries the plugin's name. */
class PluginEdits extends EditCalls {
  constructor(
    private readonly to: MessageEditRecorder,
    private readonly plugin: string,
  ) {
    super();
  }

  protected record(edit: MessageEdit): void {
    this.to.add(this.plugin, edit);
  }

  protected body(body: NodeJS.ReadableStream | Buffer): Promise<void> | void {
    return this.to.addBody(this.plugin, body);
  }
}

/**
 * `txn.edits`: records the changes plugins ask for while the message streams and after it ended
 * (milter modifications, a subject rewrite). Each plugin calls its own view (`as(name)`, handed out
 * by the driver with the plugin's view of the transaction), so each change is recorded with the
 * plugin that asked for it; a call on the recorder itself is recorded as `unknown`. The intake
 * applies them when it commits the message: the envelope in the spool's meta, the content by one
 * streamed copy of the spooled file (content-edits.ts `applyContentEdits`), never holding the body
 * in memory, or, for a small message still in memory with header edits only, in memory
 * (`editInMemory`).
 */
export class MessageEditRecorder extends EditCalls {
  private readonly list: Array<{ plugin: string; edit: MessageEdit }> = [];
  private readonly files: string[] = [];
  private readonly writes: Array<Promise<void>> = [];
  private views: Map<string, PluginEdits> | undefined;
  private frozen = false;
  private bodies = 0;
  private writeError: unknown;

  constructor(
    private readonly tmpDir: string,
    private readonly id: string,
  ) {
    super();
  }

  /** The edits in call order. */
  get edits(): ReadonlyArray<{ plugin: string; edit: MessageEdit }> {
    return this.list;
  }

  /** The edits as plugin `plugin` makes them: the same object for every call with the same name. */
  as(plugin: string): MessageEdits {
    let v = this.views?.get(plugin);
    if (!v) (this.views ??= new Map()).set(plugin, (v = new PluginEdits(this, plugin)));
    return v;
  }

  /** Records `edit` as made by `plugin` (PluginEdits). */
  add(plugin: string, edit: MessageEdit): void {
    this.assertOpen(edit.op);
    this.list.push({ plugin, edit });
  }

  /** replaceBody as made by `plugin` (PluginEdits). */
  addBody(plugin: string, body: NodeJS.ReadableStream | Buffer): Promise<void> | void {
    this.assertOpen('replaceBody');
    const file = path.join(this.tmpDir, `${this.id}.body${++this.bodies}.tmp`);
    this.files.push(file);
    // Recorded at once so the order among edits is the call order; the file fills in behind it.
    this.list.push({ plugin, edit: { op: 'replaceBody', file } });
    const normalizer = new LineEndingNormalizer();
    // The last two bytes written, to know whether the body ends its last line.
    let end = Buffer.alloc(0);
    const source = Buffer.isBuffer(body) ? [body] : (body as AsyncIterable<Buffer | string>);
    const write = pipeline(
      async function* () {
        for await (const c of source) {
          const out = normalizer.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
          if (out.length) end = Buffer.concat([end, out.subarray(-2)]).subarray(-2);
          yield out;
        }
        const tail = normalizer.finish() ?? Buffer.alloc(0);
        if (tail.length) {
          end = Buffer.concat([end, tail.subarray(-2)]).subarray(-2);
          yield tail;
        }
        // A body that does not end its last line would run into the next hop's final dot.
        if (end.length && !end.equals(CRLF)) yield CRLF;
      },
      createWriteStream(file, { mode: 0o640 }),
    );
    // Handled here too, so a caller that does not await the write cannot leave a rejection unhandled.
    this.writes.push(write.catch((err: unknown) => void (this.writeError ??= err)));
    return write;
  }

  protected record(edit: MessageEdit): void {
    this.add('unknown', edit);
  }

  protected body(body: NodeJS.ReadableStream | Buffer): Promise<void> | void {
    return this.addBody('unknown', body);
  }

  /** After the `message` hook: further calls throw (the message is being committed). */
  freeze(): void {
    this.frozen = true;
  }

  /** Waits for every replaceBody write; throws the first failure (the message then fails closed). */
  async ready(): Promise<void> {
    this.frozen = true;
    if (this.writes.length) await Promise.all(this.writes); // none for nearly every message: no promise turns then
    if (this.writeError) throw this.writeError;
  }

  /** The envelope after the envelope edits, in call order. */
  envelope(mailFrom: string, recipients: readonly string[]): { mailFrom: string; recipients: string[] } {
    let from = mailFrom;
    const rcpts = [...recipients];
    const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();
    for (const { edit } of this.list) {
      if (edit.op === 'setSender') from = edit.address;
      else if (edit.op === 'addRecipient') {
        if (!rcpts.some((r) => same(r, edit.address))) rcpts.push(edit.address);
      } else if (edit.op === 'removeRecipient') {
        for (let i = rcpts.length - 1; i >= 0; i--) if (same(rcpts[i]!, edit.address)) rcpts.splice(i, 1);
      }
    }
    return { mailFrom: from, recipients: rcpts };
  }

  /** The quarantine reason when a plugin asked to hold the message (the last one given). */
  get holdReason(): string | undefined {
    let reason: string | undefined;
    for (const { edit } of this.list) if (edit.op === 'hold') reason = edit.reason;
    return reason;
  }

  /** The content edits as a plan for `applyContentEdits`, in one walk of the list; undefined when the stored bytes do not change. */
  contentPlan(): ContentPlan | undefined {
    const headers: HeaderEdit[] = [];
    let body: string | undefined;
    for (const { edit } of this.list) {
      if (isHeaderEdit(edit)) headers.push(edit);
      else if (edit.op === 'replaceBody') body = edit.file;
    }
    return headers.length || body !== undefined ? { headers, body } : undefined;
  }

  /** For the transaction log line: what each plugin changed, in order. */
  summary(): Array<{ plugin: string; edits: string[] }> {
    const out: Array<{ plugin: string; edits: string[] }> = [];
    for (const { plugin, edit } of this.list) {
      let last = out[out.length - 1];
      if (!last || last.plugin !== plugin) out.push((last = { plugin, edits: [] }));
      last.edits.push(describeEdit(edit));
    }
    return out;
  }

  /** Removes the temp files (replacement bodies) once the message is committed or dropped. */
  async dispose(): Promise<void> {
    this.frozen = true;
    if (this.writes.length) await Promise.all(this.writes);
    if (this.files.length) await Promise.all(this.files.map((f) => rm(f, { force: true })));
  }

  private assertOpen(op: string): void {
    if (this.frozen) throw new Error(`txn.edits.${op}: too late, the message is being committed (edits are taken from the data hook until the message hook returns)`);
  }
}

function isHeaderEdit(e: MessageEdit): e is HeaderEdit {
  return e.op === 'appendHeader' || e.op === 'insertHeader' || e.op === 'changeHeader' || e.op === 'removeHeader';
}

function describeEdit(e: MessageEdit): string {
  switch (e.op) {
    case 'appendHeader':
      return `appendHeader ${e.name}`;
    case 'insertHeader':
      return `insertHeader ${e.index} ${e.name}`;
    case 'changeHeader':
      return e.value === undefined ? `deleteHeader ${e.name}[${e.occurrence}]` : `changeHeader ${e.name}[${e.occurrence}]`;
    case 'removeHeader':
      return `removeHeader ${e.name}`;
    case 'addRecipient':
      return `addRecipient <${e.address}>`;
    case 'removeRecipient':
      return `removeRecipient <${e.address}>`;
    case 'setSender':
      return `setSender <${e.address}>`;
    case 'replaceBody':
      return 'replaceBody';
    case 'hold':
      return `hold (${e.reason})`;
  }
}

/** RFC 5322 field name: printable ASCII except colon, no space. */
function headerName(name: string): string {
  if (typeof name !== 'string' || !/^[!-9;-~]{1,200}$/.test(name)) throw new TypeError(`invalid header name ${JSON.stringify(name)}`);
  return name;
}

/**
 * A field value as it will be written after `Name: `. Line breaks become folds (CRLF plus the
 * white space that follows, or one space when none does): a value can never end the header section
 * or start a field of its own. Empty continuation lines are dropped for the same reason.
 */
export function foldValue(value: string): string {
  if (typeof value !== 'string') throw new TypeError('header value must be a string');
  if (value.includes('\0')) throw new TypeError('header value contains NUL');
  const lines = value.split(/\r\n|\r|\n/);
  const out = [lines[0]!];
  for (const l of lines.slice(1)) {
    if (!l.trim()) continue;
    out.push(/^[ \t]/.test(l) ? l : ` ${l}`);
  }
  return out.join('\r\n');
}

function oneLine(v: string): string {
  return v.replace(/[\r\n\0]+/g, ' ').trim();
}

const LOCAL_ATOM = /^[^\s<>()[\]\\,;:@"\x00-\x1f\x7f]+$/;
const LOCAL_QUOTED = /^"(?:[^"\\\r\n\x00]|\\[ -~])*"$/;

/** An envelope address (no angle brackets); the domain to ASCII. `''` only for a sender. */
function mailbox(raw: string, sender: boolean): string {
  if (typeof raw !== 'string') throw new TypeError('address must be a string');
  const a = raw.trim().replace(/^<(.*)>$/, '$1');
  if (a === '' && sender) return '';
  const at = a.lastIndexOf('@');
  const local = a.slice(0, at);
  const domain = a.slice(at + 1);
  const fail = () => new TypeError(`invalid address ${JSON.stringify(raw)}`);
  if (at <= 0 || a.length > 320 || !domain) throw fail();
  if (!LOCAL_ATOM.test(local) && !LOCAL_QUOTED.test(local)) throw fail();
  if (/^\[[0-9A-Fa-f:.]+\]$/.test(domain) || /^\[IPv6:[0-9A-Fa-f:.]+\]$/.test(domain)) return a;
  const ascii = domainToASCII(domain);
  if (!ascii || !/^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(ascii)) throw fail();
  return `${local}@${ascii}`;
}

/** ESMTP parameters: keyword per RFC 5321, values xtext-safe (printable ASCII, no space or `=`). */
function esmtpArgs(args: Args): Args {
  const out: Record<string, string | true> = {};
  for (const [k, v] of Object.entries(args)) {
    if (!/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(k)) throw new TypeError(`invalid ESMTP parameter ${JSON.stringify(k)}`);
    if (v !== true && (typeof v !== 'string' || !/^[!-<>-~]+$/.test(v))) throw new TypeError(`invalid value for ESMTP parameter ${k}`);
    out[k.toUpperCase()] = v;
  }
  return out;
}

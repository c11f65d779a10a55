import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { DirSync } from './dir-sync.js';
import { SegmentStore, type SegmentLocation } from './segment-store.js';
import { SpillWriter } from './spill-writer.js';
import { asChunks, wireBuffer } from './wire-buffer.js';

/** The envelope and our added headers, stored in the message file's trailer. Written once. */
export interface SpoolMeta {
  readonly v: 1;
  readonly id: string;
  /** '' for the null sender. */
  readonly mailFrom: string;
  readonly recipients: readonly string[];
  readonly receivedAt: number;
  /** Header lines we add on top of the message (Received, ...), CRLF-terminated. */
  readonly headers: string;
  /** Bytes of the message as received (after any part replacement), without `headers`. */
  readonly bodySize: number;
  readonly client?: { readonly ip: string; readonly helo?: string; readonly user?: string };
  /** True for bounces we generated: a failure of one is never bounced again. */
  readonly isBounce?: boolean;
  /**
   * Committed held (a plugin's `txn.edits.hold`, a milter's quarantine), with the reason: the
   * message starts held until an operator releases it. Stored with the message, so a crash right
   * after the commit cannot lose the hold.
   */
  readonly held?: string;
}

/** Delivery progress, rewritten as it changes (not fsynced: losing it only repeats a delivery). */
export interface SpoolState {
  attempts: number;
  nextAttemptAt: number;
  /** Final outcome per recipient. Recipients not listed are still pending. */
  done: Record<string, { status: 'delivered' | 'bounced'; response: string; at: number }>;
  lastError?: string;
  hold?: boolean;
  /** A delay warning went to the sender already. */
  warned?: boolean;
  /** Attempts that sent the final dot and got no reply (each may have left a copy at the next hop). */
  unconfirmed?: number;
}

export interface SpooledMessage {
  readonly meta: SpoolMeta;
  state: SpoolState;
}

/**
 * An incoming message being received: held in memory up to `spool.inlineMax`, written to the
 * spool's tmp folder (`path`) once it grows past that.
 */
export interface IncomingFile {
  readonly id: string;
  readonly path: string;
  readonly stream: SpillWriter;
  /** The write stream's first error (ENOSPC...), kept by a listener that lives as long as the stream. */
  error?: NodeJS.ErrnoException;
}

/** Disk full or over quota: a temporary condition the client hears about as 452 4.3.1. */
export function isStorageFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

export interface SpoolOptions {
  /** Messages up to this size are committed to a segment (group commit); larger ones get a file. */
  readonly inlineMax?: number;
  /** A segment is closed for appends once it reaches this size. */
  readonly segmentSize?: number;
}

/** A message stored in a segment, and its body while it is still in memory (until delivered). */
interface SegmentEntry {
  meta: SpoolMeta;
  loc: SegmentLocation;
  body?: Buffer;
  /** `meta.headers` then `body` in one buffer (`body` is its tail): the first attempt's one chunk. */
  wire?: Buffer;
}

/** Bodies of segment messages kept in memory for their first delivery attempt, at most this much. */
const BODY_CACHE_MAX = 64 * 1024 * 1024;
const TRAILER_LEN_DIGITS = 10;

/** A message's state before its first attempt: held when it was committed held (SpoolMeta.held). */
function initialState(meta: SpoolMeta): SpoolState {
  return meta.held ? { attempts: 0, nextAttemptAt: 0, done: {}, hold: true } : { attempts: 0, nextAttemptAt: 0, done: {} };
}

export { newQueueId } from './queue-id.js';

/**
 * The durable spool. Layout under `dir`:
 *   seg/<n>.seg      messages up to `inlineMax` bytes, appended as records (segment-store.ts):
 *                    group commit, one writev + fdatasync per batch of concurrent commits
 *   seg/<n>.done     ids of finished messages of that segment (a segment goes once all are done)
 *   tmp/<id>.msg     a large message being received (never acknowledged; removed at start-up)
 *   queue/<id>.msg   a large message: its bytes, then a trailer: CRLF, the SpoolMeta JSON, its length in 10 digits
 *   queue/<id>.state delivery progress (JSON), for either kind, once a first attempt did not finish it
 * A small message is committed by its segment batch's fdatasync; a large one by fdatasync of its
 * file, rename into queue/ and fsync of queue/ (grouped across concurrent commits). Only then does
 * the client get its 250. The body is stored once, however many recipients it has.
 */
export class Spool {
  readonly tmpDir: string;
  readonly queueDir: string;
  readonly segmentDir: string;
  readonly inlineMax: number;
  private readonly dirSync: DirSync;
  private readonly segments: SegmentStore;
  private readonly inSegments = new Map<string, SegmentEntry>();
  private segmentsLoaded?: Promise<void>;
  /** Ids with a .state file on disk (so removing a message does not try to unlink one it never had). */
  private readonly withState = new Set<string>();
  private cachedBytes = 0;
  private compactTimer?: NodeJS.Timeout;

  constructor(readonly dir: string, opts: SpoolOptions = {}) {
    this.tmpDir = path.join(dir, 'tmp');
    this.queueDir = path.join(dir, 'queue');
    this.segmentDir = path.join(dir, 'seg');
    this.inlineMax = opts.inlineMax ?? 256 * 1024;
    this.dirSync = new DirSync(this.queueDir);
    this.segments = new SegmentStore(this.segmentDir, { segmentSize: opts.segmentSize ?? 32 * 1024 * 1024, compactBelow: 0.25, compactAge: 60_000 });
  }

  /** Creates the folders, drops unacknowledged tmp files and cut state writes, reads the segments. */
  async init(): Promise<void> {
    const created = await mkdir(this.segmentDir, { recursive: true });
    await mkdir(this.tmpDir, { recursive: true });
    await mkdir(this.queueDir, { recursive: true });
    // A new seg/ folder must itself be durable before a record in it is acknowledged.
    if (created) await new DirSync(this.dir).sync();
    for (const f of await readdir(this.tmpDir)) await rm(path.join(this.tmpDir, f), { force: true });
    // A state write cut by a crash between its tmp file and the rename: the .state beside it (or
    // none: the message's first attempt) is the state; the half-written file would stay forever.
    for (const f of await readdir(this.queueDir)) if (f.endsWith('.state.tmp')) await rm(path.join(this.queueDir, f), { force: true });
    await this.loadSegments();
    if (!this.compactTimer) {
      this.compactTimer = setInterval(() => void this.compact().catch(() => undefined), 30_000);
      this.compactTimer.unref();
    }
  }

  /** Moves the few live messages of old, mostly finished segments into the current one. */
  compact(now?: number): Promise<number> {
    return this.segments.compact((id, _from, to) => {
      const e = this.inSegments.get(id);
      if (e) e.loc = to;
    }, now);
  }

  /** Segment batches written so far (one writev + fdatasync each). */
  get segmentBatches(): number {
    return this.segments.batches;
  }

  /** Segment files in use. */
  get segmentCount(): number {
    return this.segments.segmentCount;
  }

  /** Finishes segment writes in flight and closes the segment files (tests, offline commands). */
  async close(): Promise<void> {
    if (this.compactTimer) clearInterval(this.compactTimer);
    this.compactTimer = undefined;
    await this.segments.close();
  }

  private loadSegments(): Promise<void> {
    this.segmentsLoaded ??= (async () => {
      for (const r of await this.segments.load()) this.inSegments.set(r.id, { meta: r.meta as SpoolMeta, loc: r.location });
    })();
    return this.segmentsLoaded;
  }

  async createIncoming(id: string): Promise<IncomingFile> {
    const p = path.join(this.tmpDir, `${id}.msg`);
    const file: IncomingFile = { id, path: p, stream: new SpillWriter(p, this.inlineMax) };
    file.stream.on('error', (err: NodeJS.ErrnoException) => {
      file.error ??= err;
    });
    return file;
  }

  /** Writes an incoming message held in memory to its tmp path (for the part-rewrite pass). */
  async materialize(file: IncomingFile): Promise<void> {
    const chunks = file.stream.chunks;
    if (!chunks) return;
    try {
      await writeFile(file.path, chunks, { mode: 0o640 });
    } catch (err) {
      await rm(file.path, { force: true });
      throw err;
    }
    file.stream.materialized = true;
  }

  /**
   * A fresh stream over an incoming message's bytes as written so far (from memory for a small
   * message, from its tmp file once spilled), for the `message` hook's `spooled.open()`. Call it
   * only after the write stream has finished.
   */
  openIncoming(file: IncomingFile): Readable {
    const chunks = file.stream.chunks;
    if (chunks) return Readable.from(chunks, { objectMode: false });
    return createReadStream(file.path, { highWaterMark: 256 * 1024 });
  }

  /** A second tmp file for the same id (the rewrite pass writes into it). */
  rewritePath(id: string): string {
    return path.join(this.tmpDir, `${id}.rewrite.msg`);
  }

  async discard(file: IncomingFile | string): Promise<void> {
    if (typeof file === 'string') return rm(file, { force: true });
    if (!file.stream.closed) file.stream.destroy();
    if (file.stream.spilled || file.stream.materialized) await rm(file.path, { force: true });
  }

  /**
   * Makes the message durable: appends the trailer, fdatasyncs, moves it into the queue, fsyncs the
   * queue folder. `source` is the incoming file (already fully written) or a rewritten tmp path.
   */
  async commit(source: IncomingFile | string, meta: Omit<SpoolMeta, 'v' | 'bodySize'>): Promise<SpooledMessage> {
    if (typeof source !== 'string' && source.stream.chunks) {
      const w = source.stream;
      return this.commitToSegment(meta, w.chunks!, w.size);
    }
    const src = typeof source === 'string' ? source : source.path;
    const handle = await open(src, 'r+');
    try {
      const { size } = await handle.stat();
      const full: SpoolMeta = { v: 1, ...meta, bodySize: size };
      const json = JSON.stringify(full);
      const trailer = Buffer.from(`\r\n${json}${String(Buffer.byteLength(json)).padStart(TRAILER_LEN_DIGITS, '0')}`);
      await handle.write(trailer, 0, trailer.length, size);
      await handle.datasync();
      await handle.close();
      const dest = this.messagePath(meta.id);
      await rename(src, dest);
      await this.dirSync.sync();
      return { meta: full, state: initialState(full) };
    } catch (err) {
      await handle.close().catch(() => undefined);
      await rm(src, { force: true });
      throw err;
    }
  }

  /** Group commit of a small message: durable (segment fdatasync) when it resolves. */
  private async commitToSegment(meta: Omit<SpoolMeta, 'v' | 'bodySize'>, chunks: readonly Buffer[], size: number): Promise<SpooledMessage> {
    await this.loadSegments();
    const { wire, body } = wireBuffer(meta.headers, chunks, size);
    const full: SpoolMeta = { v: 1, ...meta, bodySize: size };
    const entry: SegmentEntry = { meta: full, loc: await this.segments.append(full.id, full, [body]) };
    // Kept for the first delivery attempt, which usually starts at once: no read from disk.
    if (this.cachedBytes + wire.length <= BODY_CACHE_MAX) {
      Object.assign(entry, { body, wire });
      this.cachedBytes += wire.length;
    }
    this.inSegments.set(full.id, entry);
    return { meta: full, state: initialState(full) };
  }

  private dropBody(e: SegmentEntry): void {
    if (!e.wire) return;
    this.cachedBytes -= e.wire.length;
    e.body = e.wire = undefined;
  }

  /** Queues a message built in memory (bounces; a small message whose header plugins edited), as chunks (not joined here: the segment's wire buffer is the one copy). Durable when it resolves. */
  async enqueue(meta: Omit<SpoolMeta, 'v' | 'bodySize'>, body: Buffer | readonly Buffer[]): Promise<SpooledMessage> {
    const { chunks, size } = asChunks(body);
    if (size <= this.inlineMax) return this.commitToSegment(meta, chunks, size);
    const p = path.join(this.tmpDir, `${meta.id}.msg`);
    try {
      await writeFile(p, chunks, { mode: 0o640 });
    } catch (err) {
      await rm(p, { force: true });
      throw err;
    }
    return this.commit(p, meta);
  }

  messagePath(id: string): string {
    return path.join(this.queueDir, `${id}.msg`);
  }

  /** Reads the envelope of a queued message. */
  async readMeta(id: string): Promise<SpoolMeta> {
    const seg = this.inSegments.get(id);
    if (seg) return seg.meta;
    const fh = await open(this.messagePath(id), 'r');
    try {
      const { size } = await fh.stat();
      const lenBuf = Buffer.alloc(TRAILER_LEN_DIGITS);
      await fh.read(lenBuf, 0, TRAILER_LEN_DIGITS, size - TRAILER_LEN_DIGITS);
      const len = Number(lenBuf.toString('ascii'));
      if (!Number.isInteger(len) || len <= 0 || len > size) throw new Error(`spool file ${id}.msg has a damaged trailer`);
      const json = Buffer.alloc(len);
      await fh.read(json, 0, len, size - TRAILER_LEN_DIGITS - len);
      return JSON.parse(json.toString('utf8')) as SpoolMeta;
    } finally {
      await fh.close();
    }
  }

  /** The message as it goes to the next hop: our headers, then the stored bytes. */
  openMessage(meta: SpoolMeta): Readable {
    const seg = this.inSegments.get(meta.id);
    if (seg) {
      // One chunk: headers and body leave in one write (small bodies; a large one is not copied).
      if (seg.wire && seg.body && seg.body.length <= 64 * 1024 && meta.headers === seg.meta.headers) return Readable.from([seg.wire]);
      const head = Buffer.from(meta.headers);
      if (seg.body) return Readable.from(seg.body.length <= 64 * 1024 ? [Buffer.concat([head, seg.body])] : [head, seg.body]);
      if (!meta.bodySize) return Readable.from([head]);
      const body = this.segments.openBody(seg.loc);
      return Readable.from(
        (async function* () {
          yield head;
          yield* body;
        })(),
      );
    }
    const body = meta.bodySize > 0 ? createReadStream(this.messagePath(meta.id), { start: 0, end: meta.bodySize - 1, highWaterMark: 256 * 1024 }) : Readable.from([]);
    return Readable.from(
      (async function* () {
        yield Buffer.from(meta.headers);
        yield* body;
      })(),
    );
  }

  /** The first `max` bytes of the stored message's header block (for bounces). */
  async readHeaderBlock(meta: SpoolMeta, max = 64 * 1024): Promise<string> {
    const seg = this.inSegments.get(meta.id);
    const buf = seg ? (seg.body ? seg.body.subarray(0, Math.min(max, seg.body.length)) : await this.segments.readBody(seg.loc, max)) : await this.readFileHead(meta, max);
    const text = meta.headers + buf.toString('utf8');
    const end = text.indexOf('\r\n\r\n');
    return end >= 0 ? text.slice(0, end + 2) : text;
  }

  private async readFileHead(meta: SpoolMeta, max: number): Promise<Buffer> {
    const fh = await open(this.messagePath(meta.id), 'r');
    try {
      const n = Math.min(max, meta.bodySize);
      const buf = Buffer.alloc(n);
      await fh.read(buf, 0, n, 0);
      return buf;
    } finally {
      await fh.close();
    }
  }

  async readState(id: string): Promise<SpoolState | undefined> {
    try {
      return JSON.parse(await readFile(path.join(this.queueDir, `${id}.state`), 'utf8')) as SpoolState;
    } catch {
      return undefined;
    }
  }

  /**
   * Writes a message's delivery state (tmp file + rename). Writes for one message are chained: a
   * queue command and a delivery attempt may both save at once, and each write serialises the
   * state as it is when its turn comes, so the last write on disk is the newest state.
   */
  writeState(id: string, state: SpoolState): Promise<void> {
    const p = path.join(this.queueDir, `${id}.state`);
    this.withState.add(id);
    // A message that waits for a retry does not keep its body in memory.
    const seg = this.inSegments.get(id);
    if (seg) this.dropBody(seg);
    const prev = this.stateWrites.get(id) ?? Promise.resolve();
    const next = prev
      .catch(() => undefined)
      .then(async () => {
        try {
          await writeFile(`${p}.tmp`, JSON.stringify(state));
          await rename(`${p}.tmp`, p);
        } catch (err) {
          await rm(`${p}.tmp`, { force: true });
          throw err;
        }
      });
    this.stateWrites.set(id, next);
    void next.finally(() => {
      if (this.stateWrites.get(id) === next) this.stateWrites.delete(id);
    }).catch(() => undefined);
    return next;
  }
  private readonly stateWrites = new Map<string, Promise<void>>();

  /** The state write in progress for a message, if any (resolves when it is on disk). */
  pendingWrite(id: string): Promise<void> {
    return (this.stateWrites.get(id) ?? Promise.resolve()).catch(() => undefined);
  }

  /** Writes and removes a small file in tmp/: proves the spool takes writes now (for /readyz). */
  async probeWritable(): Promise<void> {
    const p = path.join(this.tmpDir, `.ready-probe-${process.pid}`);
    await writeFile(p, 'ok');
    await unlink(p);
  }

  /** Removes a message whose every recipient is done. */
  async remove(id: string): Promise<void> {
    await this.stateWrites.get(id)?.catch(() => undefined);
    const seg = this.inSegments.get(id);
    if (seg) {
      this.inSegments.delete(id);
      this.dropBody(seg);
      this.segments.markDone(id, seg.loc);
    } else {
      await unlink(this.messagePath(id)).catch(() => undefined);
    }
    if (this.withState.delete(id)) await unlink(path.join(this.queueDir, `${id}.state`)).catch(() => undefined);
  }

  /** Every committed message, oldest first, for recovery after a restart and for `queue list`. */
  async list(): Promise<SpooledMessage[]> {
    await this.loadSegments();
    const out: SpooledMessage[] = [];
    const files = (await readdir(this.queueDir)).sort();
    for (const f of files) if (f.endsWith('.state')) this.withState.add(f.slice(0, -6));
    const stateOf = async (id: string, meta: SpoolMeta) => (this.withState.has(id) ? await this.readState(id) : undefined) ?? initialState(meta);
    for (const [id, e] of this.inSegments) out.push({ meta: e.meta, state: await stateOf(id, e.meta) });
    for (const f of files) {
      if (!f.endsWith('.msg')) continue;
      const id = f.slice(0, -4);
      try {
        const meta = await this.readMeta(id);
        const state = await stateOf(id, meta);
        out.push({ meta, state });
      } catch {
        // A message file without a valid trailer was never committed (crash inside rename is
        // impossible: rename is atomic); leave it for an operator rather than delete data.
        const s = await stat(path.join(this.queueDir, f)).catch(() => undefined);
        if (s) await rename(path.join(this.queueDir, f), path.join(this.queueDir, `${f}.damaged`)).catch(() => undefined);
      }
    }
    return out.sort((a, b) => a.meta.receivedAt - b.meta.receivedAt);
  }
}

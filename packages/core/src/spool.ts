import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { DirSync } from './dir-sync.js';

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
}

export interface SpooledMessage {
  readonly meta: SpoolMeta;
  state: SpoolState;
}

/** An incoming message being written to the spool's tmp folder. */
export interface IncomingFile {
  readonly id: string;
  readonly path: string;
  readonly stream: WriteStream;
}

const TRAILER_LEN_DIGITS = 10;

export function newQueueId(): string {
  return Date.now().toString(36).toUpperCase().padStart(9, '0') + randomBytes(5).toString('hex').toUpperCase();
}

/**
 * The durable spool. Layout under `dir`:
 *   tmp/<id>.msg     a message being received (written by a stream that closes its fd) (never acknowledged; removed at start-up)
 *   queue/<id>.msg   message bytes, then a trailer: CRLF, the SpoolMeta JSON, its length in 10 digits
 *   queue/<id>.state delivery progress (JSON)
 * A message is committed by fdatasync of its file, rename into queue/ and fsync of queue/ (grouped
 * across concurrent commits); only then does the client get its 250. One file holds the body once,
 * however many recipients it has.
 */
export class Spool {
  readonly tmpDir: string;
  readonly queueDir: string;
  private readonly dirSync: DirSync;

  constructor(readonly dir: string) {
    this.tmpDir = path.join(dir, 'tmp');
    this.queueDir = path.join(dir, 'queue');
    this.dirSync = new DirSync(this.queueDir);
  }

  /** Creates the folders and drops unacknowledged tmp files. */
  async init(): Promise<void> {
    await mkdir(this.tmpDir, { recursive: true });
    await mkdir(this.queueDir, { recursive: true });
    for (const f of await readdir(this.tmpDir)) await rm(path.join(this.tmpDir, f), { force: true });
  }

  async createIncoming(id: string): Promise<IncomingFile> {
    const p = path.join(this.tmpDir, `${id}.msg`);
    const stream = createWriteStream(p, { mode: 0o640, highWaterMark: 256 * 1024 });
    await once(stream, 'open');
    return { id, path: p, stream };
  }

  /** A second tmp file for the same id (the rewrite pass writes into it). */
  rewritePath(id: string): string {
    return path.join(this.tmpDir, `${id}.rewrite.msg`);
  }

  async discard(file: IncomingFile | string): Promise<void> {
    if (typeof file === 'string') return rm(file, { force: true });
    if (!file.stream.closed) file.stream.destroy();
    await rm(file.path, { force: true });
  }

  /**
   * Makes the message durable: appends the trailer, fdatasyncs, moves it into the queue, fsyncs the
   * queue folder. `source` is the incoming file (already fully written) or a rewritten tmp path.
   */
  async commit(source: IncomingFile | string, meta: Omit<SpoolMeta, 'v' | 'bodySize'>): Promise<SpooledMessage> {
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
      return { meta: full, state: { attempts: 0, nextAttemptAt: 0, done: {} } };
    } catch (err) {
      await handle.close().catch(() => undefined);
      await rm(src, { force: true });
      throw err;
    }
  }

  /** Queues a message built in memory (bounces). Durable when it resolves. */
  async enqueue(meta: Omit<SpoolMeta, 'v' | 'bodySize'>, body: Buffer): Promise<SpooledMessage> {
    const p = path.join(this.tmpDir, `${meta.id}.msg`);
    await writeFile(p, body, { mode: 0o640 });
    return this.commit(p, meta);
  }

  messagePath(id: string): string {
    return path.join(this.queueDir, `${id}.msg`);
  }

  /** Reads the trailer of a queued message. */
  async readMeta(id: string): Promise<SpoolMeta> {
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
    const fh = await open(this.messagePath(meta.id), 'r');
    try {
      const n = Math.min(max, meta.bodySize);
      const buf = Buffer.alloc(n);
      await fh.read(buf, 0, n, 0);
      const text = meta.headers + buf.toString('utf8');
      const end = text.indexOf('\r\n\r\n');
      return end >= 0 ? text.slice(0, end + 2) : text;
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
    const prev = this.stateWrites.get(id) ?? Promise.resolve();
    const next = prev
      .catch(() => undefined)
      .then(async () => {
        await writeFile(`${p}.tmp`, JSON.stringify(state));
        await rename(`${p}.tmp`, p);
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
    await unlink(this.messagePath(id)).catch(() => undefined);
    await unlink(path.join(this.queueDir, `${id}.state`)).catch(() => undefined);
  }

  /** Every committed message, oldest first, for recovery after a restart and for `queue list`. */
  async list(): Promise<SpooledMessage[]> {
    const out: SpooledMessage[] = [];
    for (const f of (await readdir(this.queueDir)).sort()) {
      if (!f.endsWith('.msg')) continue;
      const id = f.slice(0, -4);
      try {
        const meta = await this.readMeta(id);
        const state = (await this.readState(id)) ?? { attempts: 0, nextAttemptAt: 0, done: {} };
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

import { close, createReadStream, createWriteStream, fdatasync, fdatasyncSync, open as openFd, openSync, type WriteStream } from 'node:fs';
import { mkdir, open, readdir, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import type { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import { crashPoint } from './crash-points.js';
import { DirSync } from './dir-sync.js';
import { HEADER, MAGIC, readTextIfAny, scanSegment, writeFully, writeFullySync, type RecoveredRecord, type SegmentLocation } from './segment-io.js';

export type { RecoveredRecord, SegmentLocation } from './segment-io.js';

interface Segment {
  readonly n: number;
  readonly path: string;
  /** Open for appends while current (a descriptor: the commit writes it synchronously); reads go through their own streams. */
  fd?: number;
  size: number;
  /** Ids of live (not yet done) messages. */
  readonly live: Map<string, number>;
  liveBytes: number;
  /** Appends `id\n` for each finished message (no fsync: losing one only repeats a delivery). */
  done?: WriteStream;
  /** Reads in progress (delivery streams): compaction and removal wait for them. */
  readers: number;
  createdAt: number;
}

interface Pending {
  readonly id: string;
  readonly parts: Buffer[];
  readonly size: number;
  readonly resolve: (loc: SegmentLocation) => void;
  readonly reject: (err: unknown) => void;
}

const SEG_RE = /^(\d{10})\.seg$/;
const openAsync = promisify(openFd);
const fdatasyncAsync = promisify(fdatasync);

/**
 * The spool's append-only segments for small messages: group commit instead of a file per message.
 *
 * A record is `magic | payload length | crc32(payload) | meta length` then the payload (the meta
 * JSON, then the message bytes). Every commit that arrives while a write is in flight joins the
 * next batch; a batch is one `writev` at the end of the current segment and one `fdatasync`, and
 * only then are its commits resolved (and their clients answered 250). Batches never overlap, so
 * after a crash every record before the first damaged one is whole: recovery reads records until
 * the first that does not check out (a torn tail, never acknowledged) and stops there.
 *
 * A batch is written from the event loop itself (`writevSync` + `fdatasyncSync` in a `setImmediate`
 * callback, i.e. once the loop has read every socket that was ready: the commits of that turn form
 * the batch), not through libuv's thread pool: on a busy worker each trip through the pool waited a
 * whole event-loop turn for its completion (two trips per batch: 13-27 ms median, 54-157 ms p99 for
 * the batch at 50 connections on 2 workers, against 0.3-1 ms for the syscalls themselves; README
 * "Workers: end-of-DATA-to-250 latency"). The loop is blocked for the fdatasync (0.2-1 ms on a healthy disk);
 * when one takes longer than `blockingSyncMax` the next batches go through the thread pool for
 * `poolFor` ms, so a stalled disk holds up the commits, not every session of the process.
 *
 * Finished messages are appended to the segment's `.done` file; a segment whose every message is
 * done is deleted. Compaction copies the few live records of an old, mostly finished segment into
 * the current one (durably, as a commit) and then deletes the old segment, so one long-deferred
 * message does not pin a whole segment on disk.
 */
export class SegmentStore {
  private readonly segments = new Map<number, Segment>();
  private current?: Segment;
  private next = 1;
  private pending: Pending[] = [];
  private flushing?: Promise<void>;
  private readonly dirSync: DirSync;
  private compacting = false;
  /** After an I/O error the current segment is abandoned for appends (its tail may be torn). */
  private poisoned = false;
  /** Batches written (each one writev + one fdatasync), for diagnostics and tests. */
  batches = 0;
  /** Of those, the batches written through the thread pool (after a slow fdatasync). */
  pooledBatches = 0;
  /** Until this time (performance.now()) batches go through the thread pool. */
  private poolUntil = 0;
  /** Segment removals in progress (close() waits for them). */
  private readonly dropping = new Set<Promise<void>>();

  constructor(
    readonly dir: string,
    private readonly opts: SegmentStoreOptions = { segmentSize: 32 * 1024 * 1024, compactBelow: 0.25, compactAge: 60_000 },
  ) {
    this.dirSync = new DirSync(dir);
  }

  /** Reads every segment and its done list; returns the live records, in segment order. */
  async load(): Promise<RecoveredRecord[]> {
    await mkdir(this.dir, { recursive: true });
    const files = await readdir(this.dir);
    const doneIds = new Map<number, Set<string>>();
    for (const f of files) {
      const m = /^(\d{10})\.done$/.exec(f);
      if (!m) continue;
      const text = await readTextIfAny(path.join(this.dir, f));
      doneIds.set(Number(m[1]), new Set(text.split('\n').filter(Boolean)));
    }
    const out: RecoveredRecord[] = [];
    const nums = files.map((f) => SEG_RE.exec(f)).filter((m): m is RegExpExecArray => !!m).map((m) => Number(m[1])).sort((a, b) => a - b);
    for (const n of nums) {
      this.next = Math.max(this.next, n + 1);
      const seg = this.segment(n);
      const done = doneIds.get(n) ?? new Set<string>();
      const records = await scanSegment(seg.path, n);
      const st = await stat(seg.path);
      seg.size = st.size;
      seg.createdAt = st.mtimeMs;
      for (const r of records) {
        if (done.has(r.id) || seg.live.has(r.id)) continue;
        seg.live.set(r.id, r.location.recordSize);
        seg.liveBytes += r.location.recordSize;
        out.push(r);
      }
      if (!seg.live.size) await this.drop(seg);
    }
    for (const n of doneIds.keys()) if (!this.segments.has(n)) await unlink(this.donePath(n)).catch(() => undefined);
    return out;
  }

  /**
   * Appends one message and resolves once it is on disk (fdatasync). `meta` is stored as JSON in
   * front of the body.
   */
  append(id: string, meta: unknown, body: readonly Buffer[]): Promise<SegmentLocation> {
    const json = Buffer.from(JSON.stringify(meta));
    let bodySize = 0;
    for (const b of body) bodySize += b.length;
    const head = Buffer.allocUnsafe(HEADER);
    const payloadLen = 4 + json.length + bodySize;
    head.writeUInt32BE(MAGIC, 0);
    head.writeUInt32BE(payloadLen, 4);
    head.writeUInt32BE(json.length, 12);
    let crc = crc32(head.subarray(12, 16));
    crc = crc32(json, crc);
    for (const b of body) crc = crc32(b, crc);
    head.writeUInt32BE(crc >>> 0, 8);
    return new Promise<SegmentLocation>((resolve, reject) => {
      this.pending.push({ id, parts: [head, json, ...body], size: HEADER + json.length + bodySize, resolve, reject });
      this.flushing ??= performance.now() < this.poolUntil ? this.flushPooled() : this.flushSoon();
    });
  }

  /** A read stream over a stored message's body. */
  openBody(loc: SegmentLocation): Readable {
    const seg = this.segments.get(loc.segment);
    const stream = createReadStream(this.segPath(loc.segment), { start: loc.bodyOffset, end: loc.bodyOffset + loc.bodySize - 1, highWaterMark: 256 * 1024 });
    if (seg) {
      seg.readers++;
      stream.once('close', () => {
        seg.readers--;
        void this.maybeDrop(seg);
      });
    }
    return stream;
  }

  /** The first `max` bytes of a stored body. */
  async readBody(loc: SegmentLocation, max: number): Promise<Buffer> {
    const fh = await open(this.segPath(loc.segment), 'r');
    try {
      const n = Math.min(max, loc.bodySize);
      const buf = Buffer.alloc(n);
      await fh.read(buf, 0, n, loc.bodyOffset);
      return buf;
    } finally {
      await fh.close();
    }
  }

  /** The message is finished (delivered, bounced or deleted). */
  markDone(id: string, loc: SegmentLocation): void {
    const seg = this.segments.get(loc.segment);
    if (!seg) return;
    const bytes = seg.live.get(id);
    if (bytes === undefined) return;
    seg.live.delete(id);
    seg.liveBytes -= bytes;
    if (!seg.live.size) {
      if (seg !== this.current) return void this.maybeDrop(seg);
      // The current segment goes too once it holds 1 MB (or a quarter of segmentSize) and nothing
      // is being written to it: an empty queue frees its disk space (the disk guard counts on
      // it), and a new segment (a file and a folder fsync) is needed only every megabyte.
      if (seg.size >= Math.min(1024 * 1024, this.opts.segmentSize / 4) && !this.flushing && !seg.readers) {
        this.current = undefined;
        return void this.drop(seg);
      }
    }
    seg.done ??= this.openDone(seg.n);
    seg.done.write(`${id}\n`);
  }

  /** Copies the live records of old, mostly finished segments into the current one. */
  async compact(relocate: (id: string, from: SegmentLocation, to: SegmentLocation) => void, now = Date.now()): Promise<number> {
    if (this.compacting) return 0;
    this.compacting = true;
    let moved = 0;
    try {
      for (const seg of [...this.segments.values()]) {
        if (seg === this.current || seg.readers > 0 || !seg.live.size) continue;
        if (now - seg.createdAt < this.opts.compactAge || seg.liveBytes > seg.size * this.opts.compactBelow) continue;
        const records = await scanSegment(seg.path, seg.n);
        for (const r of records) {
          if (!seg.live.has(r.id)) continue;
          const body = await this.readBody(r.location, r.location.bodySize);
          const to = await this.append(r.id, r.meta, [body]);
          relocate(r.id, r.location, to);
          moved++;
        }
        seg.live.clear();
        seg.liveBytes = 0;
        await this.maybeDrop(seg);
      }
    } finally {
      this.compacting = false;
    }
    return moved;
  }

  /** Finishes the writes in flight and closes the files. */
  async close(): Promise<void> {
    while (this.flushing) await this.flushing;
    await Promise.all([...this.dropping]);
    for (const seg of this.segments.values()) {
      closeFd(seg);
      if (seg.done) await new Promise<void>((resolve) => seg.done!.end(resolve));
      seg.done = undefined;
    }
  }

  get segmentCount(): number {
    return this.segments.size;
  }

  /** The batch of this event-loop turn, written once the loop has run every ready socket. */
  private flushSoon(): Promise<void> {
    return new Promise<void>((done) =>
      setImmediate(() => {
        try {
          const batch = this.pending;
          this.pending = [];
          this.writeBatchSync(batch);
        } finally {
          this.flushing = undefined;
          done();
        }
      }),
    );
  }

  private writeBatchSync(batch: Pending[]): void {
    try {
      const seg = this.writableSync(batchBytes(batch));
      const { parts, locs, end } = layout(seg, batch);
      writeFullySync(seg.fd!, parts, seg.size, end - seg.size);
      crashPoint('segment-written');
      const t0 = performance.now();
      fdatasyncSync(seg.fd!);
      const took = performance.now() - t0;
      if (took > (this.opts.blockingSyncMax ?? 10)) this.poolUntil = performance.now() + (this.opts.poolFor ?? 1000);
      crashPoint('segment-synced');
      this.settle(seg, batch, locs, end);
    } catch (err) {
      this.fail(batch, err);
    }
  }

  /** Batches through libuv's thread pool, one after the other, while the disk is slow. */
  private async flushPooled(): Promise<void> {
    try {
      while (this.pending.length) {
        const batch = this.pending;
        this.pending = [];
        try {
          const seg = await this.writable(batchBytes(batch));
          const { parts, locs, end } = layout(seg, batch);
          await writeFully(seg.fd!, parts, seg.size, end - seg.size);
          crashPoint('segment-written');
          await fdatasyncAsync(seg.fd!);
          crashPoint('segment-synced');
          this.pooledBatches++;
          this.settle(seg, batch, locs, end);
        } catch (err) {
          this.fail(batch, err);
        }
      }
    } finally {
      this.flushing = undefined;
    }
  }

  /** The batch is on disk: its records are live and its commits resolve. */
  private settle(seg: Segment, batch: Pending[], locs: SegmentLocation[], end: number): void {
    this.batches++;
    seg.size = end;
    batch.forEach((p, i) => {
      seg.live.set(p.id, p.size);
      seg.liveBytes += p.size;
      p.resolve(locs[i]!);
    });
  }

  private fail(batch: Pending[], err: unknown): void {
    // The tail of the current segment is now unknown: never append after it again.
    this.poisoned = true;
    for (const p of batch) p.reject(err);
  }

  /** The segment the next batch goes to: the current one, or a new one (created durably). */
  private writableSync(bytes: number): Segment {
    const cur = this.appendable(bytes);
    if (cur) return cur;
    const seg = this.segment(this.next++);
    seg.fd = openSync(seg.path, 'wx', 0o640);
    // The new file's name must be durable before any record in it is acknowledged.
    this.dirSync.syncNow();
    this.current = seg;
    return seg;
  }

  /** The same, through the thread pool. */
  private async writable(bytes: number): Promise<Segment> {
    const cur = this.appendable(bytes);
    if (cur) return cur;
    const seg = this.segment(this.next++);
    seg.fd = await openAsync(seg.path, 'wx', 0o640);
    await this.dirSync.sync();
    this.current = seg;
    return seg;
  }

  /** The current segment when the batch fits (or it is empty); else it is closed for appends. */
  private appendable(bytes: number): Segment | undefined {
    const cur = this.current;
    if (cur && !this.poisoned && (cur.size === 0 || cur.size + bytes <= this.opts.segmentSize)) return cur;
    if (cur) {
      this.current = undefined;
      closeFd(cur);
      void this.maybeDrop(cur);
    }
    this.poisoned = false;
    return undefined;
  }

  private segment(n: number): Segment {
    let seg = this.segments.get(n);
    if (!seg) {
      seg = { n, path: this.segPath(n), size: 0, live: new Map(), liveBytes: 0, readers: 0, createdAt: Date.now() };
      this.segments.set(n, seg);
    }
    return seg;
  }

  private async maybeDrop(seg: Segment): Promise<void> {
    if (seg.live.size || seg.readers > 0 || seg === this.current || !this.segments.has(seg.n)) return;
    await this.drop(seg);
  }

  private drop(seg: Segment): Promise<void> {
    const p = this.dropNow(seg).finally(() => this.dropping.delete(p));
    this.dropping.add(p);
    return p;
  }

  private async dropNow(seg: Segment): Promise<void> {
    this.segments.delete(seg.n);
    if (this.current === seg) this.current = undefined;
    closeFd(seg);
    if (seg.done) {
      const d = seg.done;
      seg.done = undefined;
      await new Promise<void>((resolve) => d.end(resolve));
    }
    await unlink(seg.path).catch(() => undefined);
    await unlink(this.donePath(seg.n)).catch(() => undefined);
  }

  private openDone(n: number): WriteStream {
    const s = createWriteStream(this.donePath(n), { flags: 'a', mode: 0o640 });
    s.on('error', () => undefined); // a lost done record only repeats a delivery after a crash
    return s;
  }

  private segPath(n: number): string {
    return path.join(this.dir, `${String(n).padStart(10, '0')}.seg`);
  }

  private donePath(n: number): string {
    return path.join(this.dir, `${String(n).padStart(10, '0')}.done`);
  }
}

export interface SegmentStoreOptions {
  readonly segmentSize: number;
  readonly compactBelow: number;
  readonly compactAge: number;
  /**
   * An fdatasync on the event loop that takes longer (ms) sends the next batches through the thread pool. Default 10: an
   * SSD's or a cached controller's takes ~1 ms; a disk that takes 10 ms (a spinning disk, a stalled one) would stall every
   * session of the process that long per batch, where the pool keeps them served.
   */
  readonly blockingSyncMax?: number;
  /** For how long (ms). Default 1000. */
  readonly poolFor?: number;
}

function batchBytes(batch: readonly Pending[]): number {
  let n = 0;
  for (const p of batch) n += p.size;
  return n;
}

/** The batch's buffers in order, and where each record lands in `seg`. */
function layout(seg: Segment, batch: readonly Pending[]): { parts: Buffer[]; locs: SegmentLocation[]; end: number } {
  const parts: Buffer[] = [];
  const locs: SegmentLocation[] = [];
  let offset = seg.size;
  for (const p of batch) {
    parts.push(...p.parts);
    const metaLen = p.parts[1]!.length;
    locs.push({ segment: seg.n, offset, recordSize: p.size, bodyOffset: offset + HEADER + metaLen, bodySize: p.size - HEADER - metaLen });
    offset += p.size;
  }
  return { parts, locs, end: offset };
}

/** Closes the segment's append descriptor, if open (asynchronously: nothing waits for it). */
function closeFd(seg: Segment): void {
  if (seg.fd === undefined) return;
  close(seg.fd, () => undefined);
  seg.fd = undefined;
}


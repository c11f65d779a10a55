import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, open, readdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import { crashPoint } from './crash-points.js';
import { DirSync } from './dir-sync.js';

/**
 * Where one message lives in a segment: the record starts at `offset`; its body (the message as
 * received) is `bodySize` bytes at `bodyOffset`.
 */
export interface SegmentLocation {
  readonly segment: number;
  readonly offset: number;
  readonly recordSize: number;
  readonly bodyOffset: number;
  readonly bodySize: number;
}

/** One message found in a segment at recovery. */
export interface RecoveredRecord {
  readonly id: string;
  readonly meta: unknown;
  readonly location: SegmentLocation;
}

interface Segment {
  readonly n: number;
  readonly path: string;
  /** Open for appends while current; reads go through their own streams. */
  handle?: FileHandle;
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

const MAGIC = 0x50435331; // "PCS1"
const HEADER = 16; // magic, payload length, crc32 of the payload, meta length
const SEG_RE = /^(\d{10})\.seg$/;

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
  /** Segment removals in progress (close() waits for them). */
  private readonly dropping = new Set<Promise<void>>();

  constructor(
    readonly dir: string,
    private readonly opts: { readonly segmentSize: number; readonly compactBelow: number; readonly compactAge: number } = {
      segmentSize: 32 * 1024 * 1024,
      compactBelow: 0.25,
      compactAge: 60_000,
    },
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
      this.flushing ??= this.flush();
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
      await seg.handle?.close().catch(() => undefined);
      seg.handle = undefined;
      if (seg.done) await new Promise<void>((resolve) => seg.done!.end(resolve));
      seg.done = undefined;
    }
  }

  get segmentCount(): number {
    return this.segments.size;
  }

  private async flush(): Promise<void> {
    try {
      while (this.pending.length) {
        const batch = this.pending;
        this.pending = [];
        try {
          const seg = await this.writable(batch.reduce((a, p) => a + p.size, 0));
          const parts: Buffer[] = [];
          const locs: SegmentLocation[] = [];
          let offset = seg.size;
          for (const p of batch) {
            parts.push(...p.parts);
            const metaLen = p.parts[1]!.length;
            locs.push({ segment: seg.n, offset, recordSize: p.size, bodyOffset: offset + HEADER + metaLen, bodySize: p.size - HEADER - metaLen });
            offset += p.size;
          }
          await writeFully(seg.handle!, parts, seg.size, offset - seg.size);
          crashPoint('segment-written');
          await seg.handle!.datasync();
          crashPoint('segment-synced');
          this.batches++;
          seg.size = offset;
          batch.forEach((p, i) => {
            seg.live.set(p.id, p.size);
            seg.liveBytes += p.size;
            p.resolve(locs[i]!);
          });
        } catch (err) {
          // The tail of the current segment is now unknown: never append after it again.
          this.poisoned = true;
          for (const p of batch) p.reject(err);
        }
      }
    } finally {
      this.flushing = undefined;
    }
  }

  /** The segment the next batch goes to: the current one, or a new one (created durably). */
  private async writable(bytes: number): Promise<Segment> {
    const cur = this.current;
    if (cur && !this.poisoned && (cur.size === 0 || cur.size + bytes <= this.opts.segmentSize)) return cur;
    if (cur) {
      this.current = undefined;
      await cur.handle?.close().catch(() => undefined);
      cur.handle = undefined;
      void this.maybeDrop(cur);
    }
    this.poisoned = false;
    const seg = this.segment(this.next++);
    seg.handle = await open(seg.path, 'wx', 0o640);
    // The new file's name must be durable before any record in it is acknowledged.
    await this.dirSync.sync();
    this.current = seg;
    return seg;
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
    await seg.handle?.close().catch(() => undefined);
    seg.handle = undefined;
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

async function writeFully(fh: FileHandle, parts: Buffer[], position: number, total: number): Promise<void> {
  let written = 0;
  let bufs = parts;
  while (written < total) {
    const { bytesWritten } = await fh.writev(bufs, position + written);
    if (bytesWritten <= 0) throw new Error('segment write made no progress');
    written += bytesWritten;
    if (written < total) bufs = skip(bufs, bytesWritten);
  }
}

function skip(bufs: Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (n >= b.length) {
      n -= b.length;
      continue;
    }
    out.push(n ? b.subarray(n) : b);
    n = 0;
  }
  return out;
}

/** Every whole record of a segment file, up to the first that does not check out. */
export async function scanSegment(file: string, n: number): Promise<RecoveredRecord[]> {
  const out: RecoveredRecord[] = [];
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    const head = Buffer.alloc(HEADER);
    let off = 0;
    while (off + HEADER <= size) {
      await fh.read(head, 0, HEADER, off);
      if (head.readUInt32BE(0) !== MAGIC) break;
      const payloadLen = head.readUInt32BE(4);
      const metaLen = head.readUInt32BE(12);
      if (payloadLen < 4 || metaLen > payloadLen - 4 || off + 12 + payloadLen > size) break;
      const payload = Buffer.alloc(payloadLen - 4);
      await fh.read(payload, 0, payload.length, off + HEADER);
      const crc = crc32(payload, crc32(head.subarray(12, 16))) >>> 0;
      if (crc !== head.readUInt32BE(8)) break;
      let meta: { id?: unknown };
      try {
        meta = JSON.parse(payload.subarray(0, metaLen).toString('utf8')) as { id?: unknown };
      } catch {
        break;
      }
      const recordSize = 12 + payloadLen;
      if (typeof meta.id === 'string') {
        out.push({ id: meta.id, meta, location: { segment: n, offset: off, recordSize, bodyOffset: off + HEADER + metaLen, bodySize: payloadLen - 4 - metaLen } });
      }
      off += recordSize;
    }
  } finally {
    await fh.close();
  }
  return out;
}

async function readTextIfAny(file: string): Promise<string> {
  try {
    const fh = await open(file, 'r');
    try {
      return (await fh.readFile()).toString('utf8');
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}

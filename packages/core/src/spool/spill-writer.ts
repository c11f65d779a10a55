import { createWriteStream, type WriteStream } from 'node:fs';
import { Writable } from 'node:stream';

/**
 * Where an incoming message's bytes go while DATA streams in: memory while the message is small
 * (no file is opened at all: it is committed to a segment in one batched write), a tmp file from
 * the moment it grows past `max` (what was buffered is written first, then every chunk with the
 * file's backpressure). So memory per transaction stays bounded by `max`, whatever the message.
 * A write error of the file (ENOSPC...) is this stream's error.
 */
export class SpillWriter extends Writable {
  /** The chunks held in memory; undefined once spilled to the file. */
  chunks: Buffer[] | undefined = [];
  size = 0;
  spilled = false;
  /** Set when the in-memory bytes were also written to `path` (the part-rewrite pass reads them there). */
  materialized = false;
  private file?: WriteStream;

  constructor(readonly path: string, private readonly max: number) {
    super({ highWaterMark: 256 * 1024 });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.size += chunk.length;
    if (this.chunks) {
      if (this.size <= this.max) {
        this.chunks.push(chunk);
        return cb();
      }
      this.spill();
    }
    this.toFile(chunk, cb);
  }

  override _writev(items: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    let n = 0;
    for (const { chunk } of items) n += chunk.length;
    if (this.chunks && this.size + n <= this.max) {
      this.size += n;
      for (const { chunk } of items) this.chunks.push(chunk);
      return cb();
    }
    this.size += n;
    if (this.chunks) this.spill();
    // Each chunk as it is (the file stream writes its queue with one writev): no copy of the
    // batch, whose garbage would count as RSS while a large message streams (one more 64 KB
    // buffer per chunk until the next scavenge).
    for (let i = 0; i < items.length - 1; i++) this.file!.write(items[i]!.chunk);
    this.toFile(items[items.length - 1]!.chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    const f = this.file;
    if (!f) return cb();
    f.end();
    // 'close' comes after the fd is closed: the commit reopens the file by name.
    f.once('close', () => cb(f.errored ?? null));
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // The chunks stay: a finished stream is destroyed too (autoDestroy), and the commit reads them.
    if (this.file && !this.file.destroyed) this.file.destroy();
    cb(err);
  }

  private spill(): void {
    const held = this.chunks!;
    this.chunks = undefined;
    this.spilled = true;
    const f = createWriteStream(this.path, { mode: 0o640, highWaterMark: 256 * 1024 });
    f.on('error', (err) => this.destroy(err));
    this.file = f;
    for (const c of held) f.write(c);
  }

  private toFile(chunk: Buffer, cb: (err?: Error | null) => void): void {
    const f = this.file!;
    if (f.write(chunk)) return cb();
    const done = () => {
      f.off('drain', done);
      f.off('close', done);
      cb();
    };
    f.on('drain', done);
    f.on('close', done);
  }
}

import { randomBytes } from 'node:crypto';
import { closeSync, createReadStream, openSync, rmSync, writeSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** Parts up to this size stay in memory; larger ones spill to a temp file. */
const IN_MEMORY = 1024 * 1024;

/**
 * Keeps one MIME part's decoded bytes until the part ends, so they can be sent to clamd (and, for
 * quarantine, copied out). A part screener's `update` is synchronous, so a socket could not slow the
 * sender down; a file can take the bytes at disk speed, and memory stays bounded by `IN_MEMORY`.
 * Past `limit` bytes nothing more is kept and `oversize` is set (the whole-message scan then applies
 * the oversize policy).
 */
export class PartCapture {
  private chunks: Buffer[] = [];
  private inMemory = 0;
  private fd?: number;
  private file?: string;
  size = 0;
  oversize = false;

  constructor(
    private readonly limit: number,
    private readonly tmpDir: string = os.tmpdir(),
  ) {}

  add(chunk: Buffer): void {
    if (this.oversize) return;
    this.size += chunk.length;
    if (this.size > this.limit) {
      this.oversize = true;
      this.dispose();
      return;
    }
    if (this.fd === undefined && this.inMemory + chunk.length <= IN_MEMORY) {
      this.chunks.push(Buffer.from(chunk));
      this.inMemory += chunk.length;
      return;
    }
    if (this.fd === undefined) {
      this.file = path.join(this.tmpDir, `portcullis-clamav-${randomBytes(8).toString('hex')}`);
      this.fd = openSync(this.file, 'wx', 0o600);
      for (const c of this.chunks) writeSync(this.fd, c);
      this.chunks = [];
    }
    writeSync(this.fd, chunk);
  }

  /** The captured bytes, in chunks of at most 64 KiB. */
  async *read(): AsyncIterable<Buffer> {
    if (this.fd === undefined) {
      yield* this.chunks;
      return;
    }
    for await (const c of createReadStream(this.file!, { highWaterMark: 64 * 1024 })) yield c as Buffer;
  }

  /** Copies the captured bytes to `dest`. */
  async saveTo(dest: string): Promise<void> {
    if (this.fd !== undefined) {
      await copyFile(this.file!, dest);
      return;
    }
    const fd = openSync(dest, 'wx', 0o600);
    try {
      for (const c of this.chunks) writeSync(fd, c);
    } finally {
      closeSync(fd);
    }
  }

  dispose(): void {
    this.chunks = [];
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
      rmSync(this.file!, { force: true });
    }
  }
}

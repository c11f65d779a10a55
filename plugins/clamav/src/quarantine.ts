import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { finished } from 'node:stream/promises';

/**
 * A copy of the raw message written beside the scan (same pass), kept only when clamd finds a
 * virus: `<dir>/<queue id>.eml` plus `<queue id>.json` with the envelope and the virus names.
 */
export class QuarantineCopy {
  private readonly tmp: string;
  private out?: WriteStream;
  private failed?: Error;

  constructor(
    private readonly dir: string,
    private readonly id: string,
  ) {
    this.tmp = path.join(dir, `.${id}.tmp`);
  }

  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    this.out = createWriteStream(this.tmp, { flags: 'wx' });
    this.out.on('error', (err) => (this.failed = err));
  }

  /** Writes one chunk, waiting for the disk when its buffer is full. */
  write = async (chunk: Buffer): Promise<void> => {
    const out = this.out;
    if (!out || this.failed || out.write(chunk)) return;
    await new Promise<void>((resolve) => {
      const done = () => (out.off('drain', done), out.off('error', done), resolve());
      out.on('drain', done);
      out.on('error', done);
    });
  };

  /** Keeps the copy; returns its path. Throws when the copy could not be written. */
  async keep(meta: Record<string, unknown>): Promise<string> {
    await this.close();
    if (this.failed) throw this.failed;
    const dest = path.join(this.dir, `${this.id}.eml`);
    await rename(this.tmp, dest);
    await writeFile(path.join(this.dir, `${this.id}.json`), JSON.stringify(meta, null, 2) + '\n');
    return dest;
  }

  async discard(): Promise<void> {
    await this.close();
    await rm(this.tmp, { force: true });
  }

  private async close(): Promise<void> {
    const out = this.out;
    this.out = undefined;
    if (!out) return;
    out.end();
    await finished(out).catch(() => undefined);
  }
}

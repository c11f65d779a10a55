import { writev, writevSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';

/**
 * The bytes of segment files (segment-store.ts): writing a batch whole, synchronously or through
 * libuv's thread pool, and reading records back at recovery.
 */

export const MAGIC = 0x50435331; // "PCS1"
export const HEADER = 16; // magic, payload length, crc32 of the payload, meta length

/** Where one message lives in a segment: the record starts at `offset`; its body (the message as received) is `bodySize` bytes at `bodyOffset`. */
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

const writevAsync = promisify(writev);

export function writeFullySync(fd: number, parts: Buffer[], position: number, total: number): void {
  let written = 0;
  let bufs = parts;
  while (written < total) {
    const bytesWritten = writevSync(fd, bufs, position + written);
    if (bytesWritten <= 0) throw new Error('segment write made no progress');
    written += bytesWritten;
    if (written < total) bufs = skip(bufs, bytesWritten);
  }
}

export async function writeFully(fd: number, parts: Buffer[], position: number, total: number): Promise<void> {
  let written = 0;
  let bufs = parts;
  while (written < total) {
    const { bytesWritten } = await writevAsync(fd, bufs, position + written);
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

export async function readTextIfAny(file: string): Promise<string> {
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

import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import yauzl from 'yauzl';
import tar from 'tar-stream';
import { activeContentKind } from './active-content.js';
import { ContentInspector, emptyInspection, merge, type Budget, type InspectContext, type Inspection } from './inspector.js';
import { displayName } from './names.js';

/**
 * Opens an archive written to a temp file and inspects every member with the same checks as a
 * top-level attachment (names, real content, nested archives and messages), within the budget:
 * at most `maxEntries` members and `maxTotalSize` uncompressed bytes across all nesting levels.
 * Anything the archive reader cannot read is an `opaque-archive` finding: fail closed.
 */
export async function inspectContainer(kind: 'zip' | 'tar' | 'gzip', file: string, ctx: InspectContext, depth: number, budget: Budget, label: string): Promise<Inspection> {
  try {
    if (kind === 'zip') return await inspectZip(file, ctx, depth, budget, label);
    if (kind === 'tar') return await inspectTar(createReadStream(file), ctx, depth, budget, label);
    return await inspectGzip(file, ctx, depth, budget, label);
  } catch (err) {
    const out = emptyInspection();
    out.findings.push({ kind: 'opaque-archive', reason: `${label} is an archive that cannot be read (${shortError(err)})` });
    return out;
  }
}

function shortError(err: unknown): string {
  return String((err as Error)?.message ?? err).replace(/[^\x20-\x7E]/g, '?').slice(0, 100);
}

/** Counts one member against the budget; returns a reason when a limit is passed. */
function charge(budget: Budget, ctx: InspectContext, bytes: number): string | undefined {
  budget.entries++;
  budget.bytes += bytes;
  if (budget.entries > ctx.maxEntries) return `has more than ${ctx.maxEntries} archive members`;
  if (budget.bytes > ctx.maxTotalSize) return `expands to more than ${ctx.maxTotalSize} bytes`;
  return undefined;
}

/** Feeds one member's stream to a child inspector, stopping early once more bytes change nothing. */
async function inspectMember(stream: Readable, name: string, ctx: InspectContext, depth: number, budget: Budget, mustDrain: boolean, maxBytes: number, parent: string): Promise<Inspection> {
  const child = new ContentInspector(ctx, {
    isMessage: /\.eml$/i.test(name),
    isText: /\.txt$/i.test(name),
    named: true,
    activeContent: activeContentKind([name], undefined),
    depth,
    budget,
    label: `archive member "${displayName(name)}" in ${parent}`,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      let seen = 0;
      let stopped = false;
      stream.on('data', (chunk: Buffer) => {
        if (stopped) return;
        seen += chunk.length;
        if (seen > maxBytes) {
          stopped = true;
          return reject(new Error('member larger than declared'));
        }
        child.update(chunk);
        if (!child.wantsMore()) {
          stopped = true;
          if (mustDrain) return; // tar: the stream must be read through to reach the next header
          stream.destroy();
          resolve();
        }
      });
      stream.once('end', resolve);
      stream.once('close', resolve);
      stream.once('error', reject);
    });
    return await child.finish();
  } finally {
    child.cleanup();
  }
}

function inspectZip(file: string, ctx: InspectContext, depth: number, budget: Budget, label: string): Promise<Inspection> {
  const out = emptyInspection();
  return new Promise((resolve, reject) => {
    yauzl.open(file, { lazyEntries: true, autoClose: true, strictFileNames: false, decodeStrings: true, validateEntrySizes: true }, (err, zip) => {
      if (err || !zip) return reject(err ?? new Error('cannot open zip'));
      let settled = false;
      const finish = (e?: unknown) => {
        if (settled) return;
        settled = true;
        zip.close();
        if (e) reject(e);
        else resolve(out);
      };
      zip.on('error', finish);
      zip.on('end', () => finish());
      zip.on('entry', (entry: yauzl.Entry) => {
        const name = entry.fileName;
        out.names.push({ name, label: `archive member "${displayName(name)}" in ${label}` });
        if (/(^|\/)vbaproject\.bin$/i.test(name)) out.findings.push({ kind: 'macro', reason: `${label} contains Office macros (${displayName(name)})` });
        const over = charge(budget, ctx, entry.uncompressedSize);
        if (over) {
          out.findings.push({ kind: 'archive-limit', reason: `${label} ${over}` });
          return finish();
        }
        if (name.endsWith('/')) return zip.readEntry();
        if (entry.isEncrypted()) {
          out.findings.push({ kind: 'encrypted-archive', reason: `${label} is encrypted (member "${displayName(name)}")` });
          return zip.readEntry();
        }
        zip.openReadStream(entry, (e2, stream) => {
          if (e2 || !stream) return finish(e2 ?? new Error('cannot read member'));
          inspectMember(stream, name, ctx, depth, budget, false, entry.uncompressedSize, label).then(
            (inner) => {
              merge(out, inner);
              zip.readEntry();
            },
            finish,
          );
        });
      });
      zip.readEntry();
    });
  });
}

function inspectTar(source: Readable, ctx: InspectContext, depth: number, budget: Budget, label: string): Promise<Inspection> {
  const out = emptyInspection();
  return new Promise((resolve, reject) => {
    const extract = tar.extract();
    let stopped = false;
    const stop = (e?: unknown) => {
      if (stopped) return;
      stopped = true;
      source.destroy();
      extract.destroy();
      if (e) reject(e);
      else resolve(out);
    };
    extract.on('entry', (header, stream, next) => {
      const name = header.name;
      out.names.push({ name, label: `archive member "${displayName(name)}" in ${label}` });
      const over = charge(budget, ctx, header.size ?? 0);
      if (over) {
        out.findings.push({ kind: 'archive-limit', reason: `${label} ${over}` });
        return stop();
      }
      if (header.type !== 'file' && header.type !== 'contiguous-file') {
        stream.resume();
        stream.once('end', () => next());
        return;
      }
      inspectMember(stream as unknown as Readable, name, ctx, depth, budget, true, header.size ?? 0, label).then((inner) => {
        merge(out, inner);
        next();
      }, stop);
    });
    extract.once('finish', () => stop());
    extract.once('error', stop);
    source.once('error', stop);
    source.pipe(extract);
  });
}

/** A gzip file holds one compressed stream: inspect what it expands to, bounded by the budget. */
async function inspectGzip(file: string, ctx: InspectContext, depth: number, budget: Budget, label: string): Promise<Inspection> {
  const inner = `the gzip content of ${label}`;
  const child = new ContentInspector(ctx, { named: true, depth, budget, label: inner });
  const room = ctx.maxTotalSize - budget.bytes;
  let seen = 0;
  try {
    const ok = await new Promise<boolean>((resolve, reject) => {
      const src = createReadStream(file);
      const gunzip = createGunzip();
      gunzip.on('data', (chunk: Buffer) => {
        seen += chunk.length;
        if (seen > room) {
          src.destroy();
          gunzip.destroy();
          return resolve(false);
        }
        child.update(chunk);
      });
      gunzip.once('end', () => resolve(true));
      gunzip.once('error', reject);
      src.once('error', reject);
      src.pipe(gunzip);
    });
    budget.bytes += seen;
    budget.entries++;
    if (!ok) {
      const out = emptyInspection();
      out.findings.push({ kind: 'archive-limit', reason: `${label} expands to more than ${ctx.maxTotalSize} bytes` });
      return out;
    }
    return await child.finish();
  } finally {
    child.cleanup();
  }
}

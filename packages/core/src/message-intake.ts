import { PassThrough, Writable, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { Splitter } from 'mailsplit';
import { MimeSplitter } from './mime-splitter.js';
import type { DataHandlers, MimePart, PartDecision } from './hooks.js';
import { LineEndingGuard } from './line-ending-guard.js';
import { HeaderScanner } from './header-scanner.js';
import { HeaderFilter, type HeaderField } from './header-filter.js';
import { MimeWalker, type AttachedScreener } from './mime-walker.js';
import { rewriteParts } from './mime-rewrite.js';
import type { LoadedPlugin, PluginDriver } from './plugin-driver.js';
import type { IncomingFile, Spool } from './spool.js';
import { Replies, type Reply, type Verdict } from './verdicts.js';
import type { Transaction } from './types.js';

/** smtp-server's DATA stream: sets `sizeExceeded` once the SIZE limit is passed. */
export type DataStream = Readable & { sizeExceeded?: boolean; byteLength?: number };

export interface IntakeResult {
  /** The reply for the client. */
  readonly reply: Reply;
  readonly accepted: boolean;
  /** Bytes received. */
  readonly size: number;
  /** Which plugin decided, when one did. */
  readonly plugin?: string;
}

export interface IntakeContext {
  /** Header-section limits (size, fields, Received hops). */
  readonly limits: { readonly headerSize: number; readonly headerFields: number; readonly maxReceived: number };
  /** Counts bytes as they arrive, for the minimum-data-rate watchdog. */
  readonly progress?: { bytes: number; endedAt?: number };
  readonly driver: PluginDriver;
  readonly spool: Spool;
  readonly log: Logger;
  /** Header lines to put on top (Received, plus what plugins add), built once the data has ended. */
  readonly headers: () => string;
  /** Makes the committed message known to the delivery side. */
  readonly onCommitted: (committed: Awaited<ReturnType<Spool['commit']>>) => void;
  readonly meta: { id: string; mailFrom: string; recipients: string[]; client: { ip: string; helo?: string; user?: string } };
}

/**
 * One streaming pass over DATA. The bytes go, chunk by chunk and with backpressure on every branch,
 * to the spool's tmp file, to mailsplit (for part screeners, only when a plugin asked for parts) and
 * to every raw reader. Bare CR/LF or an over-size message stops the copying (the rest is drained)
 * and gives the matching reply. After end-of-data every screener and reader is awaited, then the
 * `message` hook; replaced parts are rewritten from disk; the message is committed (fsync) to the
 * spool; only then the 250.
 */
export async function receiveMessage(stream: DataStream, txn: Transaction, ctx: IntakeContext): Promise<IntakeResult> {
  const { driver, spool, log } = ctx;
  const started = await driver.data([txn], log);
  let incoming: IncomingFile | undefined;
  let size = 0;
  if (started.failed) {
    await drain(stream);
    return { reply: started.failed.verdict!.reply!, accepted: false, size: 0, plugin: started.failed.plugin };
  }
  try {
    incoming = await spool.createIncoming(txn.id);
  } catch (err) {
    log.error({ err }, 'cannot create spool file');
    await drain(stream);
    return { reply: Replies.spoolFailure, accepted: false, size: 0 };
  }

  const partUsers = started.handlers.filter((h) => typeof h.handlers.part === 'function');
  const rawUsers = started.handlers.filter((h) => typeof h.handlers.raw === 'function');
  const dropUsers = started.handlers.filter((h) => typeof h.handlers.dropHeader === 'function');

  // Header fields plugins remove (e.g. a forged Authentication-Results) are left out of the spool
  // file only; raw readers and part screeners see the message as received.
  const dropFailures: Array<{ plugin: LoadedPlugin; error: unknown }> = [];
  let filter: HeaderFilter | undefined;
  if (dropUsers.length) {
    const spoolFile = incoming.stream;
    filter = new HeaderFilter((field: HeaderField) => {
      let remove = false;
      for (const { plugin, handlers } of dropUsers) {
        try {
          if (handlers.dropHeader!(field)) remove = true;
        } catch (error) {
          dropFailures.push({ plugin, error });
        }
      }
      return remove;
    });
    filter.on('error', (err) => spoolFile.destroy(err));
    filter.pipe(spoolFile);
  }
  const branches: Writable[] = [filter ?? incoming.stream];
  let walker: MimeWalker<LoadedPlugin> | undefined;
  let splitter: Splitter | undefined;
  if (partUsers.length) {
    splitter = new MimeSplitter();
    walker = new MimeWalker<LoadedPlugin>(
      (part: MimePart) => attachScreeners(part, partUsers, driver, log),
      (s: AttachedScreener<LoadedPlugin>) => driver.guard(s.owner, 'data.part', () => s.screener.done()),
    );
    splitter.pipe(walker);
    branches.push(splitter);
  }
  // A reader's timeout starts at end of data (below), so a slow upload does not count against it.
  const rawStarted: Array<{ plugin: LoadedPlugin; pass: PassThrough; work: Promise<Verdict | undefined | void> }> = [];
  for (const { plugin, handlers } of rawUsers) {
    const pass = new PassThrough({ highWaterMark: 256 * 1024 });
    branches.push(pass);
    const work = Promise.resolve().then(() => handlers.raw!(pass));
    work.catch(() => pass.resume()); // a failed reader must not stall the others
    rawStarted.push({ plugin, pass, work });
  }
  const rawResults: Array<Promise<{ plugin: LoadedPlugin; verdict?: Verdict | void; error?: unknown }>> = [];
  const awaitReaders = () => {
    for (const { plugin, pass, work } of rawStarted) {
      rawResults.push(
        driver.guard(plugin, 'data.raw', () => work).then(
          (verdict) => ({ plugin, verdict: verdict ?? undefined }),
          (error: unknown) => {
            pass.resume(); // a failed reader must not stall the others
            return { plugin, error };
          },
        ),
      );
    }
  };

  const guard = new LineEndingGuard();
  const headers = new HeaderScanner(ctx.limits);
  let headerProblem: ReturnType<HeaderScanner['update']>;
  let copying = true;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (ctx.progress) ctx.progress.bytes = size;
      if (!copying) continue;
      if (!guard.check(chunk) || stream.sizeExceeded) {
        copying = false;
        continue;
      }
      if (!headers.done && (headerProblem = headers.update(chunk))) {
        copying = false;
        continue;
      }
      await writeAll(branches, chunk);
    }
  } catch (err) {
    log.warn({ err }, 'DATA stream failed');
    copying = false;
  }
  for (const b of branches) b.end();
  if (ctx.progress) ctx.progress.endedAt = performance.now();
  awaitReaders();
  const lineEndingsOk = guard.finish();

  try {
    await finished(incoming.stream);
  } catch (err) {
    log.error({ err }, 'writing the spool file failed');
    await settle(walker, rawResults);
    await spool.discard(incoming);
    return { reply: Replies.spoolFailure, accepted: false, size };
  }
  if (stream.sizeExceeded) {
    await settle(walker, rawResults);
    await spool.discard(incoming);
    return { reply: Replies.messageTooBig, accepted: false, size };
  }
  if (!lineEndingsOk || !copying) {
    await settle(walker, rawResults);
    await spool.discard(incoming);
    if (!lineEndingsOk) {
      log.warn({ offset: guard.violationAt }, 'bare CR or LF in DATA, message rejected');
      return { reply: Replies.bareLineEnding, accepted: false, size };
    }
    if (headerProblem) {
      log.warn({ problem: headerProblem, headerBytes: headers.bytes, fields: headers.fields, received: headers.received }, 'header limit exceeded, message rejected');
      return { reply: headerProblem === 'hops' ? Replies.tooManyHops : Replies.headerTooLarge, accepted: false, size };
    }
    return { reply: Replies.spoolFailure, accepted: false, size };
  }

  // Every screener and reader has its say; the first non-accept verdict in plugin order decides.
  const decided = await collectVerdicts(driver, log, walker, rawResults);
  if (!decided.verdict && dropFailures.length) {
    // A header predicate that throws fails closed: the field it should have judged may be a forgery.
    driver.logFailure(log, dropFailures[0]!.plugin, 'data.dropHeader', dropFailures[0]!.error);
    await spool.discard(incoming);
    return { reply: Replies.pluginFailure, accepted: false, size, plugin: dropFailures[0]!.plugin.instance.name };
  }
  if (filter?.dropped.length) log.info({ fields: filter.dropped.map((f) => f.name) }, 'header fields removed');
  if (decided.verdict) {
    await spool.discard(incoming);
    return { reply: decided.verdict.reply!, accepted: false, size, plugin: decided.plugin };
  }
  const message = await driver.verdict('message', [txn, { size, replacedParts: [...decided.replaced.values()].map((r) => r.path) }], log);
  if (message.verdict && message.verdict.kind !== 'accept') {
    await spool.discard(incoming);
    return { reply: message.verdict.reply, accepted: false, size, plugin: message.plugin };
  }

  try {
    let source: IncomingFile | string = incoming;
    if (decided.replaced.size) {
      const notices = new Map([...decided.replaced].map(([index, r]) => [index, r.notice]));
      const dest = spool.rewritePath(txn.id);
      await spool.materialize(incoming);
      await rewriteParts(incoming.path, dest, notices);
      await spool.discard(incoming.path);
      source = dest;
    }
    const committed = await spool.commit(source, { ...ctx.meta, receivedAt: Date.now(), headers: ctx.headers() });
    ctx.onCommitted(committed);
    return { reply: { code: 250, enhanced: '2.0.0', text: `Ok: queued as ${txn.id}` }, accepted: true, size };
  } catch (err) {
    log.error({ err }, 'could not commit the message to the spool');
    await spool.discard(incoming);
    await spool.discard(spool.rewritePath(txn.id));
    return { reply: Replies.spoolFailure, accepted: false, size };
  }
}

function attachScreeners(part: MimePart, users: Array<{ plugin: LoadedPlugin; handlers: DataHandlers }>, driver: PluginDriver, log: Logger): AttachedScreener<LoadedPlugin>[] {
  const out: AttachedScreener<LoadedPlugin>[] = [];
  for (const { plugin, handlers } of users) {
    try {
      const screener = handlers.part!(part);
      if (screener) out.push({ owner: plugin, part, screener: safeScreener(screener, plugin, driver, log) });
    } catch (err) {
      driver.logFailure(log, plugin, 'data.part', err);
      out.push({ owner: plugin, part, screener: { done: () => Promise.reject(err) } });
    }
  }
  return out;
}

/** A screener whose `update` throws stops seeing data and fails at `done` (451, never an accept). */
function safeScreener(s: NonNullable<ReturnType<NonNullable<DataHandlers['part']>>>, plugin: LoadedPlugin, driver: PluginDriver, log: Logger) {
  let failure: unknown;
  return {
    update(chunk: Buffer) {
      if (failure || !s.update) return;
      try {
        s.update(chunk);
      } catch (err) {
        failure = err;
        driver.logFailure(log, plugin, 'data.part', err);
      }
    },
    done: () => (failure ? Promise.reject(failure) : s.done()),
  };
}

async function collectVerdicts(
  driver: PluginDriver,
  log: Logger,
  walker: MimeWalker<LoadedPlugin> | undefined,
  rawResults: Array<Promise<{ plugin: LoadedPlugin; verdict?: Verdict | void; error?: unknown }>>,
): Promise<{ verdict?: Verdict; plugin?: string; replaced: Map<number, { path: string; notice: string }> }> {
  const replaced = new Map<number, { path: string; notice: string }>();
  const failures: Array<{ plugin: LoadedPlugin; verdict: Verdict }> = [];
  if (walker) await finished(walker);
  const parts = walker ? await walker.results() : [];
  const raws = await Promise.all(rawResults);
  const failed: Verdict = { kind: 'tempfail', reply: Replies.pluginFailure };
  for (const r of raws) {
    if (r.error) {
      driver.logFailure(log, r.plugin, 'data.raw', r.error);
      failures.push({ plugin: r.plugin, verdict: failed });
    } else if (r.verdict && r.verdict.kind !== 'accept') failures.push({ plugin: r.plugin, verdict: r.verdict });
  }
  for (const p of parts) {
    if (p.error) {
      driver.logFailure(log, p.owner, 'data.part', p.error);
      failures.push({ plugin: p.owner, verdict: failed });
      continue;
    }
    const d: PartDecision = p.decision;
    if (!d || d.action === 'keep') continue;
    if (d.action === 'replace') {
      if (!replaced.has(p.part.index)) replaced.set(p.part.index, { path: p.part.path, notice: d.notice });
      log.info({ plugin: p.owner.instance.name, part: p.part.path, filename: p.part.filename ?? p.part.name }, 'part replaced');
    } else if (d.action === 'verdict' && d.verdict.kind !== 'accept') failures.push({ plugin: p.owner, verdict: d.verdict });
  }
  if (failures.length) {
    const order = driver.plugins;
    failures.sort((a, b) => order.indexOf(a.plugin) - order.indexOf(b.plugin));
    const first = failures[0]!;
    log.info({ plugin: first.plugin.instance.name, hook: 'data', verdict: first.verdict.kind, reply: first.verdict.reply }, 'hook verdict');
    return { verdict: first.verdict, plugin: first.plugin.instance.name, replaced };
  }
  return { replaced };
}

/** Waits for readers and screeners to wind down after an early stop, ignoring their results. */
async function settle(walker: MimeWalker<LoadedPlugin> | undefined, raws: Array<Promise<unknown>>): Promise<void> {
  await Promise.allSettled([walker ? finished(walker) : undefined, ...raws]);
}

function writeAll(branches: Writable[], chunk: Buffer): Promise<void> | void {
  let waits: Promise<void>[] | undefined;
  for (const b of branches) {
    if (b.destroyed || b.writableEnded) continue;
    if (!b.write(chunk)) (waits ??= []).push(new Promise<void>((resolve) => {
      const done = () => {
        b.off('drain', done);
        b.off('close', done);
        b.off('error', done);
        resolve();
      };
      b.on('drain', done);
      b.on('close', done);
      b.on('error', done);
    }));
  }
  if (waits) return Promise.all(waits).then(() => undefined);
}

async function drain(stream: Readable): Promise<void> {
  for await (const _ of stream) {
    /* discard */
  }
}

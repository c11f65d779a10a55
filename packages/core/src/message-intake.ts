import { PassThrough, Writable, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { Splitter } from 'mailsplit';
import { MimeSplitter } from './mime-splitter.js';
import type { DataHandlers, MimePart, PartDecision } from './hooks.js';
import { LineEndingGuard } from './line-ending-guard.js';
import { HeaderScanner } from './header-scanner.js';
import { HeaderCollector, type MessageHeaders } from './header-section.js';
import { HeaderFilter, type HeaderField } from './header-filter.js';
import { MimeWalker, type AttachedScreener, type MimeLimits } from './mime-walker.js';
import { LineEndingNormalizer } from './line-ending-normalizer.js';
import { rewriteParts } from './mime-rewrite.js';
import type { LoadedPlugin, PluginDriver } from './plugin-driver.js';
import { isStorageFull, type IncomingFile, type Spool } from './spool.js';
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
  /** Header-section limits (size, fields, Received hops) and the MIME structure limits. */
  readonly limits: {
    readonly headerSize: number;
    readonly headerFields: number;
    readonly maxReceived: number;
    readonly mime?: MimeLimits & { readonly overLimit: 'reject' | 'pass-unscreened' };
  };
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
  /** The client is on a network listed in bareLineEndings.normalize: bare CR/LF become CRLF. */
  readonly normalizeLineEndings?: boolean;
  /**
   * Aborted when a graceful stop runs out of drain time: a message not yet committed is dropped
   * (421 4.3.2); one whose commit has begun is finished and answered 250.
   */
  readonly signal?: AbortSignal;
}

const DEFAULT_MIME = { parts: 500, depth: 50, partHeaderFields: 200, overLimit: 'reject' } as const;

/**
 * One streaming pass over DATA. The bytes go, chunk by chunk and with backpressure on every branch,
 * to the spool's tmp file, to mailsplit (for part screeners, only when a plugin asked for parts) and
 * to every raw reader. Bare CR/LF or an over-size message stops the copying (the rest is drained)
 * and gives the matching reply. After end-of-data every screener and reader is awaited, then the
 * `message` hook; replaced parts are rewritten from disk; the message is committed (fsync) to the
 * spool; only then the 250.
 *
 * Failure-proof by construction: every stream here has an 'error' listener for its whole life, an
 * error on any branch ends only this transaction with a reply (452 4.3.1 when the disk is full,
 * 451 4.3.0 otherwise), and the tmp files are removed on every path that does not commit.
 */
export async function receiveMessage(stream: DataStream, txn: Transaction, ctx: IntakeContext): Promise<IntakeResult> {
  const { spool } = ctx;
  stream.on('error', () => undefined); // surfaces through the for-await below
  let incoming: IncomingFile | undefined;
  let committed = false;
  try {
    const result = await receive(stream, txn, ctx, (f) => (incoming = f), () => (committed = true));
    return result;
  } catch (err) {
    ctx.log.error({ err }, 'DATA failed');
    return { reply: isStorageFull(err) ? Replies.insufficientStorage : Replies.pluginFailure, accepted: false, size: ctx.progress?.bytes ?? 0 };
  } finally {
    if (!committed) {
      if (incoming) await spool.discard(incoming).catch(() => undefined);
      await spool.discard(spool.rewritePath(txn.id)).catch(() => undefined);
    }
    if (!stream.readableEnded && !stream.destroyed) stream.resume(); // let smtp-server reach the end
  }
}

async function receive(stream: DataStream, txn: Transaction, ctx: IntakeContext, opened: (f: IncomingFile) => void, markCommitted: () => void): Promise<IntakeResult> {
  const { driver, spool, log } = ctx;
  const mimeLimits = ctx.limits.mime ?? DEFAULT_MIME;
  const started = await driver.data([txn], log);
  let size = 0;
  if (started.failed) {
    await drain(stream);
    return { reply: started.failed.verdict!.reply!, accepted: false, size: 0, plugin: started.failed.plugin };
  }
  let incoming: IncomingFile;
  try {
    incoming = await spool.createIncoming(txn.id);
    opened(incoming);
  } catch (err) {
    log.error({ err }, 'cannot create spool file');
    await drain(stream);
    return { reply: isStorageFull(err) ? Replies.insufficientStorage : Replies.spoolFailure, accepted: false, size: 0 };
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
    const f = filter;
    f.on('error', (err) => spoolFile.destroy(err));
    // A failed spool file (ENOSPC) takes the filter down too, so no write waits for its 'drain'.
    spoolFile.on('error', () => f.destroy());
    f.pipe(spoolFile);
  }
  const branches: Writable[] = [filter ?? incoming.stream];
  let walker: MimeWalker<LoadedPlugin> | undefined;
  let splitter: Splitter | undefined;
  /** A failure of the MIME pass that is not a limit (a bug in a screener's stream, say). */
  let mimeError: unknown;
  // Stops the MIME pass: the splitter leaves the branches (nothing waits on it any more) and the
  // walker is ended, so finished(walker) always settles.
  const stopMime = () => {
    if (!splitter || !walker) return;
    const i = branches.indexOf(splitter);
    if (i >= 0) branches.splice(i, 1);
    splitter.unpipe(walker);
    if (!splitter.destroyed) splitter.destroy();
    if (!walker.writableEnded && !walker.destroyed) walker.end();
  };
  if (partUsers.length) {
    // mailsplit's own node limit sits just above ours, so it only fires if our count missed.
    splitter = new MimeSplitter({ maxChildNodes: mimeLimits.parts + 1, maxHeadSize: ctx.limits.headerSize });
    walker = new MimeWalker<LoadedPlugin>(
      (part: MimePart) => attachScreeners(part, partUsers, driver, log),
      (s: AttachedScreener<LoadedPlugin>) => driver.guard(s.owner, 'data.part', () => s.screener.done()),
      mimeLimits,
      () => setImmediate(stopMime),
    );
    const w = walker;
    splitter.on('error', (err: Error & { code?: string }) => {
      // mailsplit's limits (child nodes, part header size) are limits, not failures.
      if (err.code === 'EMAXLEN') w.limitReached({ limit: /header/i.test(err.message) ? 'header' : 'parts', at: 0 });
      else mimeError ??= err;
      stopMime();
    });
    w.on('error', (err) => {
      mimeError ??= err;
      stopMime();
    });
    splitter.pipe(w);
    branches.push(splitter);
  }
  // A reader's timeout starts at end of data (below), so a slow upload does not count against it.
  const rawStarted: Array<{ plugin: LoadedPlugin; pass: PassThrough; work: Promise<Verdict | undefined | void> }> = [];
  for (const { plugin, handlers } of rawUsers) {
    const pass = new PassThrough({ highWaterMark: 256 * 1024 });
    pass.on('error', () => undefined); // a reader that destroys its stream fails through its promise
    branches.push(pass);
    const work = Promise.resolve().then(() => handlers.raw!(pass));
    // A reader that finished (or failed) without reading to the end must not stall the others.
    work.then(
      () => pass.resume(),
      () => pass.resume(),
    );
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
  const settleAll = async () => {
    stopMime();
    await settle(walker, rawResults);
  };

  const guard = new LineEndingGuard();
  const normalizer = ctx.normalizeLineEndings ? new LineEndingNormalizer() : undefined;
  const headers = new HeaderScanner(ctx.limits);
  const section = new HeaderCollector();
  let headerProblem: ReturnType<HeaderScanner['update']>;
  let copying = true;
  let streamFailed = false;
  const copy = async (chunk: Buffer) => {
    if (!guard.check(chunk) || stream.sizeExceeded || incoming.error) {
      copying = false;
      return;
    }
    if (!headers.done) {
      if ((headerProblem = headers.update(chunk))) {
        copying = false;
        return;
      }
      section.push(chunk, headers.bytes, headers.done);
      if (headers.done) (txn as { headers?: MessageHeaders }).headers = section.headers();
    }
    await writeAll(branches, chunk);
  };
  try {
    for await (const raw of stream as AsyncIterable<Buffer>) {
      size += raw.length;
      if (ctx.progress) ctx.progress.bytes = size;
      if (!copying) continue;
      await copy(normalizer ? normalizer.push(raw) : raw);
    }
    const tail = normalizer?.finish();
    if (tail && copying) await copy(tail);
  } catch (err) {
    log.warn({ err }, 'DATA stream failed');
    copying = false;
    streamFailed = true;
  }
  if (normalizer?.fixed) log.info({ fixed: normalizer.fixed }, 'bare line endings normalised to CRLF (client in bareLineEndings.normalize)');
  for (const b of branches) if (!b.destroyed) b.end();
  if (ctx.progress) ctx.progress.endedAt = performance.now();
  awaitReaders();
  const lineEndingsOk = guard.finish();

  try {
    await finished(incoming.stream);
  } catch (err) {
    incoming.error ??= err as NodeJS.ErrnoException;
  }
  if (incoming.error) {
    log.error({ err: incoming.error }, 'writing the spool file failed');
    await settleAll();
    return { reply: isStorageFull(incoming.error) ? Replies.insufficientStorage : Replies.spoolFailure, accepted: false, size };
  }
  if (stream.sizeExceeded) {
    await settleAll();
    return { reply: Replies.messageTooBig, accepted: false, size };
  }
  if (!lineEndingsOk || !copying) {
    await settleAll();
    if (!lineEndingsOk) {
      log.warn({ offset: guard.violationAt }, 'bare CR or LF in DATA, message rejected');
      return { reply: Replies.bareLineEnding, accepted: false, size };
    }
    if (headerProblem) {
      log.warn({ problem: headerProblem, headerBytes: headers.bytes, fields: headers.fields, received: headers.received }, 'header limit exceeded, message rejected');
      return { reply: headerProblem === 'hops' ? Replies.tooManyHops : Replies.headerTooLarge, accepted: false, size };
    }
    if (streamFailed) log.warn('client connection lost during DATA: nothing queued');
    return { reply: Replies.spoolFailure, accepted: false, size };
  }

  // Every screener and reader has its say; the first non-accept verdict in plugin order decides.
  const decided = await untilAborted(collectVerdicts(driver, log, walker, rawResults), ctx.signal);
  if (!decided) return stopped(log, size);
  if (mimeError) {
    log.error({ err: mimeError }, 'MIME pass failed');
    return { reply: Replies.pluginFailure, accepted: false, size };
  }
  if (!decided.verdict && dropFailures.length) {
    // A header predicate that throws fails closed: the field it should have judged may be a forgery.
    driver.logFailure(log, dropFailures[0]!.plugin, 'data.dropHeader', dropFailures[0]!.error);
    return { reply: Replies.pluginFailure, accepted: false, size, plugin: dropFailures[0]!.plugin.instance.name };
  }
  if (filter?.dropped.length) log.info({ fields: filter.dropped.map((f) => f.name) }, 'header fields removed');
  let unscreened = false;
  if (walker?.overLimit) {
    const hit = walker.overLimit;
    const reply = hit.limit === 'parts' ? Replies.mimeTooManyParts : hit.limit === 'depth' ? Replies.mimeTooDeep : Replies.mimePartHeaders;
    const limit = hit.limit === 'parts' ? mimeLimits.parts : hit.limit === 'depth' ? mimeLimits.depth : mimeLimits.partHeaderFields;
    if (mimeLimits.overLimit === 'reject') {
      log.warn({ limit: hit.limit, max: limit }, 'MIME structure over limits.mime, message rejected');
      return { reply: { ...reply, text: `${reply.text} (limit ${limit})` }, accepted: false, size };
    }
    log.warn({ limit: hit.limit, max: limit }, 'MIME structure over limits.mime: passed without part screening (limits.mime.overLimit: pass-unscreened)');
    unscreened = true;
  }
  // Raw readers' verdicts always count; part screeners' only when they saw the whole message.
  const verdict = unscreened ? decided.rawVerdict : decided.verdict;
  if (verdict) return { reply: verdict.reply!, accepted: false, size, plugin: unscreened ? decided.rawPlugin : decided.plugin };
  const replaced = unscreened ? new Map<number, { path: string; notice: string }>() : decided.replaced;
  // A message without a blank line is all header: what arrived is its header section.
  const parsedHeaders = txn.headers ?? ((txn as { headers?: MessageHeaders }).headers = section.headers());
  const spooled = { size: incoming.stream.size, open: () => spool.openIncoming(incoming) };
  const message = await untilAborted(driver.verdict('message', [txn, { size, replacedParts: [...replaced.values()].map((r) => r.path), headers: parsedHeaders, spooled }], log), ctx.signal);
  if (!message) return stopped(log, size);
  if (message.verdict && message.verdict.kind !== 'accept') {
    return { reply: message.verdict.reply, accepted: false, size, plugin: message.plugin };
  }
  if (ctx.signal?.aborted) return stopped(log, size);

  try {
    let source: IncomingFile | string = incoming;
    if (replaced.size) {
      const notices = new Map([...replaced].map(([index, r]) => [index, r.notice]));
      const dest = spool.rewritePath(txn.id);
      await spool.materialize(incoming);
      await rewriteParts(incoming.path, dest, notices);
      await spool.discard(incoming.path);
      source = dest;
    }
    const done = await spool.commit(source, { ...ctx.meta, receivedAt: Date.now(), headers: ctx.headers() });
    markCommitted();
    ctx.onCommitted(done);
    return { reply: { code: 250, enhanced: '2.0.0', text: `Ok: queued as ${txn.id}` }, accepted: true, size };
  } catch (err) {
    log.error({ err }, 'could not commit the message to the spool');
    return { reply: isStorageFull(err) ? Replies.insufficientStorage : Replies.spoolFailure, accepted: false, size };
  }
}

/** The drain time of a graceful stop ran out before the commit began: nothing is queued. */
function stopped(log: Logger, size: number): IntakeResult {
  log.warn('drain time over before the message was queued: not accepted');
  return { reply: Replies.shuttingDown, accepted: false, size };
}

/** `p`'s value, or undefined as soon as `signal` aborts. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T | undefined> {
  if (!signal) return p;
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise<T | undefined>((resolve, reject) => {
    const onAbort = () => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => (signal.removeEventListener('abort', onAbort), resolve(v)),
      (e: unknown) => (signal.removeEventListener('abort', onAbort), reject(e)),
    );
  });
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
): Promise<{ verdict?: Verdict; plugin?: string; rawVerdict?: Verdict; rawPlugin?: string; replaced: Map<number, { path: string; notice: string }> }> {
  const replaced = new Map<number, { path: string; notice: string }>();
  const failures: Array<{ plugin: LoadedPlugin; verdict: Verdict }> = [];
  if (walker) await finished(walker).catch(() => undefined); // its errors are the caller's mimeError
  const parts = walker ? await walker.results() : [];
  const raws = await Promise.all(rawResults);
  const failed: Verdict = { kind: 'tempfail', reply: Replies.pluginFailure };
  for (const r of raws) {
    if (r.error) {
      driver.logFailure(log, r.plugin, 'data.raw', r.error);
      failures.push({ plugin: r.plugin, verdict: failed });
    } else if (r.verdict && r.verdict.kind !== 'accept') failures.push({ plugin: r.plugin, verdict: r.verdict });
  }
  const order = driver.plugins;
  const byOrder = (a: { plugin: LoadedPlugin }, b: { plugin: LoadedPlugin }) => order.indexOf(a.plugin) - order.indexOf(b.plugin);
  const rawFirst = [...failures].sort(byOrder)[0];
  const raw = rawFirst ? { rawVerdict: rawFirst.verdict, rawPlugin: rawFirst.plugin.instance.name } : {};
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
    failures.sort(byOrder);
    const first = failures[0]!;
    log.info({ plugin: first.plugin.instance.name, hook: 'data', verdict: first.verdict.kind, reply: first.verdict.reply }, 'hook verdict');
    driver.noteVerdict(first.plugin.instance.name, 'data', first.verdict);
    return { verdict: first.verdict, plugin: first.plugin.instance.name, replaced, ...raw };
  }
  return { replaced, ...raw };
}

/** Waits for readers and screeners to wind down after an early stop, ignoring their results. */
async function settle(walker: MimeWalker<LoadedPlugin> | undefined, raws: Array<Promise<unknown>>): Promise<void> {
  await Promise.allSettled([walker ? finished(walker).then(() => walker.results()) : undefined, ...raws]);
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
  try {
    for await (const _ of stream) {
      /* discard */
    }
  } catch {
    /* the client left: nothing to drain */
  }
}

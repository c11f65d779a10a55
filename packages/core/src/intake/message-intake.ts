import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { Splitter } from 'mailsplit';
import { MimeSplitter } from './mime-splitter.js';
import { DataTee, type TeeBranch } from './data-tee.js';
import { eachChunk } from './data-chunks.js';
import { isMimeLimitError } from './mime-limits.js';
import { attachScreeners, collectVerdicts, drain, mimeRejection, overdue, settle, stopped, untilAborted, type IntakeResult } from './data-verdicts.js';
import type { DataHandlers, MimePart, PartDecision } from '../api/hooks.js';
import { LineEndingGuard } from './line-ending-guard.js';
import { StopSignal, type AbortLike } from './stop-signal.js';
import { HeaderScanner } from './header-scanner.js';
import { HeaderCollector, type MessageHeaders } from '../api/message-headers.js';
import { HeaderFilter, type HeaderField } from '../api/header-filter.js';
import { MimeWalker, type AttachedScreener, type MimeLimitHit, type MimeLimits } from './mime-walker.js';
import { LineEndingNormalizer } from './line-ending-normalizer.js';
import { rewriteParts } from './mime-rewrite.js';
import { MessageEditRecorder } from './edits/message-edits.js';
import { applyContentEdits, editInMemory } from './edits/content-edits.js';
import type { LoadedPlugin, PluginDriver } from '../plugins/driver.js';
import { isStorageFull, type IncomingFile, type Spool } from '../spool/spool.js';
import { Replies, type Reply, type Verdict } from '../api/verdicts.js';
import type { Transaction } from '../api/types.js';

/** smtp-server's DATA stream: sets `sizeExceeded` once the SIZE limit is passed. */
export type DataStream = Readable & { sizeExceeded?: boolean; byteLength?: number };

export type { IntakeResult } from './data-verdicts.js';

export interface IntakeContext {
  /** Header-section limits (size, fields, Received hops) and the MIME structure limits. */
  readonly limits: {
    readonly headerSize: number;
    readonly headerFields: number;
    readonly maxReceived: number;
    readonly mime?: MimeLimits & { readonly overLimit: 'reject' | 'pass-unscreened' };
    /** How long the data pass waits on a raw reader or the MIME pass that takes no data (DataTee); then 451 4.3.0. */
    readonly readerStall?: number;
    /** Longest from end-of-data to the reply (readers, screeners, `message`, commit); then 451 4.3.0. */
    readonly dataDeadline?: number;
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
  readonly signal?: AbortLike;
}

const DEFAULT_MIME = { parts: 500, depth: 50, partHeaderFields: 200, overLimit: 'reject' } as const;
const DEFAULT_READER_STALL = 10_000;
const DEFAULT_DATA_DEADLINE = 120_000;

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
  stream.on('error', () => undefined); // surfaces through eachChunk below
  let incoming: IncomingFile | undefined;
  let committed = false;
  // From end-of-data, everything until the reply has one deadline (limits.dataDeadline): a reader,
  // screener or hook that never settles cannot keep the transaction (and its temp file) alive.
  // One stop signal, no AbortSignal.any (a composite signal per message is weak references for the
  // GC): a graceful stop that runs out of drain time aborts it through a listener, removed at the end.
  // A StopSignal, not an AbortController (stop-signal.ts: an EventTarget per message cost more).
  const overtime = new StopSignal();
  const stop = () => overtime.abort();
  ctx.signal?.addEventListener('abort', stop, { once: true });
  if (ctx.signal?.aborted) stop();
  let timer: NodeJS.Timeout | undefined;
  const clock: DeadlineClock = {
    ms: ctx.limits.dataDeadline ?? DEFAULT_DATA_DEADLINE,
    signal: overtime,
    start() {
      timer ??= setTimeout(stop, this.ms);
      timer.unref();
    },
  };
  try {
    const result = await receive(stream, txn, ctx, (f) => (incoming = f), () => (committed = true), clock);
    return result;
  } catch (err) {
    ctx.log.error({ err }, 'DATA failed');
    return { reply: isStorageFull(err) ? Replies.insufficientStorage : Replies.pluginFailure, accepted: false, size: ctx.progress?.bytes ?? 0 };
  } finally {
    if (timer) clearTimeout(timer);
    ctx.signal?.removeEventListener('abort', stop);
    if (!committed) {
      if (incoming) await spool.discard(incoming).catch(() => undefined);
      await spool.discard(spool.rewritePath(txn.id)).catch(() => undefined);
      await spool.discard(editedPath(spool, txn.id)).catch(() => undefined);
    }
    if (txn.edits instanceof MessageEditRecorder) await txn.edits.dispose().catch(() => undefined);
    if (!stream.readableEnded && !stream.destroyed) stream.resume(); // let smtp-server reach the end
  }
}

/** The end-of-DATA deadline: `signal` aborts when it passes (or when a graceful stop runs out of drain time). */
interface DeadlineClock {
  readonly ms: number;
  readonly signal: AbortLike;
  start(): void;
}

async function receive(stream: DataStream, txn: Transaction, ctx: IntakeContext, opened: (f: IncomingFile) => void, markCommitted: () => void, clock: DeadlineClock): Promise<IntakeResult> {
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
  // The spool file is not stallable: a slow disk is covered by the end-of-DATA deadline, not blamed on a reader.
  const tee = new DataTee(ctx.limits.readerStall ?? DEFAULT_READER_STALL, ctx.signal);
  tee.add(filter ?? incoming.stream, undefined, false);
  let splitterBranch: TeeBranch | undefined;
  let walker: MimeWalker<LoadedPlugin> | undefined;
  let splitter: Splitter | undefined;
  /** A failure of the MIME pass that is not a limit (a bug in a screener's stream, say). */
  let mimeError: unknown;
  // Stops the MIME pass: the splitter leaves the tee (nothing waits on it any more) and the
  // walker is ended, so finished(walker) always settles.
  const stopMime = () => {
    if (!splitter || !walker) return;
    tee.detach(splitterBranch);
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
    splitterBranch = tee.add(splitter, 'MIME pass');
  }
  // A reader's timeout starts at end of data (below), so a slow upload does not count against it.
  const rawStarted: Array<{ plugin: LoadedPlugin; pass: PassThrough; branch: TeeBranch; work: Promise<Verdict | undefined | void> }> = [];
  for (const { plugin, handlers } of rawUsers) {
    const pass = new PassThrough({ highWaterMark: 256 * 1024 });
    pass.on('error', () => undefined); // a reader that destroys its stream fails through its promise
    const branch = tee.add(pass, plugin.instance.name);
    const work = Promise.resolve().then(() => handlers.raw!(pass));
    // A reader whose promise settled (resolved, rejected, or later timed out) has had its say: its
    // branch is let go, so whatever it left on its stream (an iterator, a pipe) cannot hold DATA up.
    const release = () => {
      tee.detach(branch);
      pass.resume();
    };
    work.then(release, release);
    rawStarted.push({ plugin, pass, branch, work });
  }
  const rawResults: Array<Promise<{ plugin: LoadedPlugin; verdict?: Verdict | void; error?: unknown }>> = [];
  const awaitReaders = () => {
    for (const { plugin, pass, branch, work } of rawStarted) {
      rawResults.push(
        driver.guard(plugin, 'data.raw', () => work).then(
          (verdict) => ({ plugin, verdict: verdict ?? undefined }),
          (error: unknown) => {
            tee.detach(branch); // a timed-out reader must not stall the others
            pass.resume();
            return { plugin, error };
          },
        ),
      );
    }
  };
  const deadline = clock.signal;
  const halted = () => (ctx.signal?.aborted ? stopped(log, size) : overdue(log, size, clock.ms));
  const settleAll = async () => {
    stopMime();
    await untilAborted(settle(walker, rawResults), deadline);
  };

  const guard = new LineEndingGuard();
  const normalizer = ctx.normalizeLineEndings ? new LineEndingNormalizer() : undefined;
  const headers = new HeaderScanner(ctx.limits);
  const section = new HeaderCollector();
  let headerProblem: ReturnType<HeaderScanner['update']>;
  let copying = true;
  let streamFailed = false;
  // A reader that took nothing for limits.readerStall, or a graceful stop out of drain time:
  // the rest of the data is read and dropped, and the transaction ends (below).
  // Past a MIME limit with overLimit: reject, the answer is known: nothing more is written anywhere.
  const written = () => {
    if (tee.stalled || ctx.signal?.aborted || (walker?.overLimit && mimeLimits.overLimit === 'reject')) copying = false;
  };
  // A promise only while a branch pushes back (eachChunk waits for it); otherwise done at once.
  const copy = (chunk: Buffer): Promise<void> | void => {
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
    const wait = tee.write(chunk);
    if (wait) return wait.then(written);
    written();
  };
  try {
    await eachChunk(stream, (raw) => {
      size += raw.length;
      if (ctx.progress) ctx.progress.bytes = size;
      if (copying) return copy(normalizer ? normalizer.push(raw) : raw);
    });
    const tail = normalizer?.finish();
    if (tail && copying) await copy(tail);
  } catch (err) {
    log.warn({ err }, 'DATA stream failed');
    copying = false;
    streamFailed = true;
  }
  if (normalizer?.fixed) log.info({ fixed: normalizer.fixed }, 'bare line endings normalised to CRLF (client in bareLineEndings.normalize)');
  tee.end();
  if (ctx.progress) ctx.progress.endedAt = performance.now();
  clock.start();
  awaitReaders();
  const lineEndingsOk = guard.finish();

  try {
    await finished(incoming.stream);
  } catch (err) {
    incoming.error ??= err as NodeJS.ErrnoException;
  }
  if (tee.stalled) {
    // Not waited for: a reader that stopped reading may never settle (its plugin timeout still ends it).
    const stalled = rawStarted.find((r) => r.branch === tee.stalled);
    const stallMs = ctx.limits.readerStall ?? DEFAULT_READER_STALL;
    stopMime();
    void settle(walker, rawResults);
    if (stalled) {
      driver.logFailure(log, stalled.plugin, 'data.raw', new Error(`the raw reader took no data for ${stallMs} ms (limits.readerStall) before the end of the message`));
      return { reply: Replies.pluginFailure, accepted: false, size, plugin: stalled.plugin.instance.name };
    }
    log.error({ stallMs }, `the ${tee.stalled.owner ?? 'data pass'} took no data for ${stallMs} ms (limits.readerStall): transaction ended`);
    return { reply: Replies.pluginFailure, accepted: false, size };
  }
  if (ctx.signal?.aborted) {
    stopMime();
    void settle(walker, rawResults);
    return stopped(log, size);
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
    const mimeHit = lineEndingsOk && !headerProblem && !streamFailed && mimeLimits.overLimit === 'reject' ? walker?.overLimit : undefined;
    if (mimeHit) {
      // The core's own verdict: readers and screeners are not waited for (each is bounded by its
      // plugin timeout in the background), so a slow scanner cannot delay a 552 it cannot change.
      stopMime();
      void settle(walker, rawResults);
      return mimeRejection(log, mimeHit, mimeLimits, size, 'core');
    }
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

  // Every screener and reader has its say; the strictest non-accept verdict (reject before tempfail), then plugin order, decides.
  const decided = await untilAborted(collectVerdicts(driver, log, walker, rawResults), deadline);
  if (!decided) return halted();
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
  // The core's walk and a plugin's own parse (createMimeSplitter) give the same verdict for a limit.
  const overLimit = walker?.overLimit ?? decided.mimeHit;
  if (overLimit) {
    const hit = overLimit;
    const limit = hit.limit === 'parts' ? mimeLimits.parts : hit.limit === 'depth' ? mimeLimits.depth : mimeLimits.partHeaderFields;
    if (mimeLimits.overLimit === 'reject') return mimeRejection(log, hit, mimeLimits, size, walker?.overLimit ? 'core' : decided.mimeHitBy);
    log.warn({ limit: hit.limit, max: limit }, 'MIME structure over limits.mime: passed without part screening (limits.mime.overLimit: pass-unscreened)');
    // Part screeners lost their say only if the core's own walk stopped.
    unscreened = !!walker?.overLimit;
  }
  // Raw readers' verdicts always count; part screeners' only when they saw the whole message.
  const verdict = unscreened ? decided.rawVerdict : decided.verdict;
  if (verdict) return { reply: verdict.reply!, accepted: false, size, plugin: unscreened ? decided.rawPlugin : decided.plugin };
  const replaced = unscreened ? new Map<number, { path: string; notice: string }>() : decided.replaced;
  // A message without a blank line is all header: what arrived is its header section.
  const parsedHeaders = txn.headers ?? ((txn as { headers?: MessageHeaders }).headers = section.headers());
  const spooled = { size: incoming.stream.size, open: () => spool.openIncoming(incoming) };
  const message = await untilAborted(driver.verdict('message', [txn, { size, replacedParts: [...replaced.values()].map((r) => r.path), headers: parsedHeaders, spooled }], log), deadline);
  if (!message) return halted();
  // txn.edits closes when the message hook returns: what was asked until now is what is applied.
  const edits = txn.edits instanceof MessageEditRecorder ? txn.edits : undefined;
  edits?.freeze();
  if (message.verdict && message.verdict.kind !== 'accept') {
    return { reply: message.verdict.reply, accepted: false, size, plugin: message.plugin };
  }
  if (deadline.aborted) return halted();

  try {
    await edits?.ready(); // replacement bodies fully written (a failed write fails the message, 451)
    let source: IncomingFile | string = incoming;
    if (replaced.size) {
      const notices = new Map([...replaced].map(([index, r]) => [index, r.notice]));
      const dest = spool.rewritePath(txn.id);
      await spool.materialize(incoming);
      await rewriteParts(incoming.path, dest, notices);
      await spool.discard(incoming.path);
      source = dest;
    }
    // Plugins' header and body edits: one more streamed copy, after the part replacements; header
    // edits of a small message still in memory are made there (no file: it goes to a segment).
    let edited: Buffer[] | undefined;
    const plan = edits?.contentPlan();
    if (plan && !plan.body && source === incoming && incoming.stream.chunks) {
      edited = editInMemory(incoming.stream.chunks, plan.headers);
    } else if (plan) {
      const dest = editedPath(spool, txn.id);
      if (source === incoming) await spool.materialize(incoming);
      const from = typeof source === 'string' ? source : source.path;
      await applyContentEdits(from, dest, plan);
      await spool.discard(from);
      source = dest;
    }
    const envelope = edits ? edits.envelope(ctx.meta.mailFrom, ctx.meta.recipients) : { mailFrom: ctx.meta.mailFrom, recipients: ctx.meta.recipients };
    if (!envelope.recipients.length) {
      // Every recipient removed (a milter's discard, say): accepted for the client, nothing queued.
      log.info({ edits: edits?.summary() }, 'every recipient removed by txn.edits: message accepted and dropped');
      return { reply: { code: 250, enhanced: '2.0.0', text: `Ok: queued as ${txn.id}` }, accepted: true, size };
    }
    const held = edits?.holdReason;
    const meta = { ...ctx.meta, ...envelope, receivedAt: Date.now(), headers: ctx.headers(), ...(held ? { held } : {}) };
    const done = edited ? await spool.enqueue(meta, edited) : await spool.commit(source, meta);
    markCommitted();
    if (held) log.info({ reason: held }, 'message committed held in the queue (txn.edits.hold)');
    ctx.onCommitted(done);
    return { reply: { code: 250, enhanced: '2.0.0', text: `Ok: queued as ${txn.id}` }, accepted: true, size };
  } catch (err) {
    log.error({ err }, 'could not commit the message to the spool');
    return { reply: isStorageFull(err) ? Replies.insufficientStorage : Replies.spoolFailure, accepted: false, size };
  }
}

/** The tmp file the content edits are written into (a third name for the same id). */
function editedPath(spool: Spool, id: string): string {
  return path.join(spool.tmpDir, `${id}.edited.msg`);
}

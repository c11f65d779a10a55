import { finished } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { DataHandlers, MimePart, PartDecision } from '../api/hooks.js';
import { Replies, type Reply, type Verdict } from '../api/verdicts.js';
import type { LoadedPlugin, PluginDriver } from '../plugins/driver.js';
import { isMimeLimitError, mimeLimitReply } from './mime-limits.js';
import type { AttachedScreener, MimeLimitHit, MimeLimits, MimeWalker } from './mime-walker.js';
import type { AbortLike } from './stop-signal.js';

// The data phase's verdicts: how the readers' and screeners' answers become one reply, and the
// replies for the ways a data pass ends early. Split from message-intake.ts, which runs the pass.

export interface IntakeResult {
  /** The reply for the client. */
  readonly reply: Reply;
  readonly accepted: boolean;
  /** Bytes received. */
  readonly size: number;
  /** Which plugin decided, when one did. */
  readonly plugin?: string;
}

/** The drain time of a graceful stop ran out before the commit began: nothing is queued. */
export function stopped(log: Logger, size: number): IntakeResult {
  log.warn('drain time over before the message was queued: not accepted');
  return { reply: Replies.shuttingDown, accepted: false, size };
}

export function mimeRejection(log: Logger, hit: MimeLimitHit, limits: MimeLimits, size: number, by: string | undefined): IntakeResult {
  const max = hit.limit === 'parts' ? limits.parts : hit.limit === 'depth' ? limits.depth : limits.partHeaderFields;
  log.warn({ limit: hit.limit, max, by }, 'MIME structure over limits.mime, message rejected');
  return { reply: mimeLimitReply(hit, limits), accepted: false, size };
}

/** The end-of-DATA deadline passed before the message was queued: nothing is queued, 451 4.3.0. */
export function overdue(log: Logger, size: number, ms: number): IntakeResult {
  log.error({ deadlineMs: ms }, 'no reply within limits.dataDeadline of the end of data: not accepted');
  return { reply: Replies.pluginFailure, accepted: false, size };
}

/** `p`'s value, or undefined as soon as `signal` aborts. */
export function untilAborted<T>(p: Promise<T>, signal: AbortLike | undefined): Promise<T | undefined> {
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

export function attachScreeners(part: MimePart, users: Array<{ plugin: LoadedPlugin; handlers: DataHandlers }>, driver: PluginDriver, log: Logger): AttachedScreener<LoadedPlugin>[] {
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
export function safeScreener(s: NonNullable<ReturnType<NonNullable<DataHandlers['part']>>>, plugin: LoadedPlugin, driver: PluginDriver, log: Logger) {
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

export async function collectVerdicts(
  driver: PluginDriver,
  log: Logger,
  walker: MimeWalker<LoadedPlugin> | undefined,
  rawResults: Array<Promise<{ plugin: LoadedPlugin; verdict?: Verdict | void; error?: unknown }>>,
): Promise<{ verdict?: Verdict; plugin?: string; rawVerdict?: Verdict; rawPlugin?: string; mimeHit?: MimeLimitHit; mimeHitBy?: string; replaced: Map<number, { path: string; notice: string }> }> {
  const replaced = new Map<number, { path: string; notice: string }>();
  const failures: Array<{ plugin: LoadedPlugin; verdict: Verdict }> = [];
  if (walker) await finished(walker).catch(() => undefined); // its errors are the caller's mimeError
  const parts = walker ? await walker.results() : [];
  const raws = await Promise.all(rawResults);
  const failed: Verdict = { kind: 'tempfail', reply: Replies.pluginFailure };
  let mime: { mimeHit?: MimeLimitHit; mimeHitBy?: string } = {};
  for (const r of raws) {
    if (isMimeLimitError(r.error)) {
      // A reader's own MIME parse stopped at limits.mime: the core's verdict for that limit, not a failure.
      if (!mime.mimeHit) mime = { mimeHit: r.error.hit, mimeHitBy: r.plugin.instance.name };
    } else if (r.error) {
      driver.logFailure(log, r.plugin, 'data.raw', r.error);
      failures.push({ plugin: r.plugin, verdict: failed });
    } else if (r.verdict && r.verdict.kind !== 'accept') failures.push({ plugin: r.plugin, verdict: r.verdict });
  }
  const order = driver.plugins;
  // The stricter verdict wins: a permanent reject beats a tempfail whatever the plugin order (a
  // virus found by one scanner is not retried because another scanner was down); among equals, plugin order.
  const severity = (v: Verdict) => (v.kind === 'reject' ? 0 : 1);
  const byOrder = (a: { plugin: LoadedPlugin; verdict: Verdict }, b: { plugin: LoadedPlugin; verdict: Verdict }) => severity(a.verdict) - severity(b.verdict) || order.indexOf(a.plugin) - order.indexOf(b.plugin);
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
    return { verdict: first.verdict, plugin: first.plugin.instance.name, replaced, ...raw, ...mime };
  }
  return { replaced, ...raw, ...mime };
}

/** Waits for readers and screeners to wind down after an early stop, ignoring their results. */
export async function settle(walker: MimeWalker<LoadedPlugin> | undefined, raws: Array<Promise<unknown>>): Promise<void> {
  await Promise.allSettled([walker ? finished(walker).then(() => walker.results()) : undefined, ...raws]);
}

export async function drain(stream: Readable): Promise<void> {
  try {
    for await (const _ of stream) {
      /* discard */
    }
  } catch {
    /* the client left: nothing to drain */
  }
}

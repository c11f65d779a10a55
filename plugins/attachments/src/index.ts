import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { createMimeSplitter, definePlugin, keepQuarantinePruned, reject, Tokens, type DataHandlers, type MimeParseLimits, type RelayConfig, type MimePart, type PartDecision, type Transaction, type Verdict } from '@portcullis/core';
import { directionOf } from './direction.js';
import { activeContentKind } from './active-content.js';
import { CHECK_KINDS, type Finding } from './findings.js';
import { ContentInspector, type InspectContext, } from './inspector.js';
import { nestedOpeners } from './nested.js';
import { LeafWalker } from './message-scan.js';
import { MentionScanner } from './mentions.js';
import { asciiText, candidateNames, displayName } from './names.js';
import { options, type ResolvedOptions, type Rule } from './options.js';
import { quarantinePart } from './quarantine.js';
import { compileRule, evaluate, type CompiledRule } from './rules.js';

export { options, DEFAULT_EXTENSIONS, DEFAULT_TYPES, type AttachmentsOptions } from './options.js';
export { CHECK_KINDS, type CheckKind, type Finding } from './findings.js';
export { checkName, readings, rawParams } from './names.js';
export { sniff } from './magic.js';

/** The rules in force: `rules`, or the `action`/`block` shorthand as one rule for both directions. */
function rulesOf(o: ResolvedOptions): Rule[] {
  if (o.rules) return o.rules;
  // The quarantine settings go along: a quarantine shorthand rule needs them to validate.
  const shorthand = options.parse({ rules: [{ direction: 'any', action: o.action, ...(o.block ? { extensions: o.block } : {}) }], ...(o.quarantine ? { quarantine: o.quarantine } : {}) });
  return shorthand.rules!;
}

/** What a part's screening decided, for both the part hook and the raw fallback. */
interface Outcome {
  rule: CompiledRule;
  finding: Finding;
}

function replyFor(finding: Finding): Verdict {
  const text = `Message refused: ${asciiText(finding.reason).slice(0, 400)}`;
  return reject(550, '5.7.1', text);
}

function noticeFor(name: string | undefined, finding: Finding, quarantineId?: string): string {
  const lines = [
    'An attachment was removed from this message by the mail relay.',
    `File: ${name ? `"${displayName(name, 200)}"` : '(no name)'}`,
    `Reason: ${displayName(finding.reason, 400)}`,
  ];
  if (quarantineId) lines.push(`A copy was kept for the administrator (reference ${quarantineId}).`);
  return lines.join('\n') + '\n';
}

/**
 * Attachment screening. Runs in `data`: every leaf MIME part (including the parts of attached
 * messages the core opens) gets a screener that inspects its decoded bytes as they stream past;
 * `done` applies the rules for the message's direction: `block` rejects the message with
 * `550 5.7.1 Message refused: <reason>`, `strip` replaces the part with a text notice,
 * `quarantine` keeps a copy and strips. A raw reader covers attached messages the core does not
 * open (see README): those are screened too, and a catch there blocks the message.
 */
export default definePlugin({
  name: 'attachments',
  options,
  setup(opts, ctx) {
    const rules = rulesOf(opts).map((r, i) => compileRule(r, i, opts.maxNameLength));
    // The rules in force for each direction, chosen once rather than per message.
    const activeFor = new Map<string, CompiledRule[]>();
    const activeRules = (direction: string) => {
      let a = activeFor.get(direction);
      if (!a) activeFor.set(direction, (a = rules.filter((r) => r.rule.direction === 'any' || r.rule.direction === direction)));
      return a;
    };
    const trusted = opts.trustedNetworks;
    const inspectCtx: InspectContext = {
      sniffBytes: Math.max(opts.sniffBytes, 1024),
      maxDepth: opts.archives.maxDepth,
      maxEntries: opts.archives.maxEntries,
      maxTotalSize: opts.archives.maxTotalSize,
      maxSize: opts.archives.maxSize,
      tempDir: opts.tempDir ? path.resolve(ctx.configDir, opts.tempDir) : os.tmpdir(),
      uuencode: opts.uuencode,
      open: nestedOpeners,
    };
    const parseLimits = mimeParseLimits(ctx.container);
    const quarantineDir = opts.quarantine ? path.resolve(ctx.configDir, opts.quarantine.dir) : undefined;
    const findings = ctx.metrics.counter<'kind' | 'action'>({ name: 'findings_total', help: 'Attachments caught, by finding kind (extension, executable, macro, ...) and the action taken (block, strip, quarantine)', labelNames: ['kind', 'action'] });
    const inspected = ctx.metrics.counter({ name: 'parts_inspected_total', help: 'MIME parts inspected' });
    for (const kind of CHECK_KINDS) for (const action of ['block', 'strip', 'quarantine']) findings.inc({ kind, action }, 0);

    const pruner = quarantineDir && opts.quarantine ? keepQuarantinePruned(quarantineDir, opts.quarantine.retention, (err) => ctx.log.warn({ err }, 'quarantine retention: could not remove old items')) : undefined;
    return {
      close: () => pruner?.stop(),
      hooks: {
      data(txn: Transaction): DataHandlers | undefined {
        const direction = directionOf(txn.session, trusted);
        const active = activeRules(direction);
        if (!active.length) return undefined;
        const mayQuarantine = active.some((r) => r.rule.action === 'quarantine');

        const part = (p: MimePart) => {
          const names = candidateNames([p.filename, p.name], { contentType: p.header('content-type'), contentDisposition: p.header('content-disposition') });
          const shownName = p.filename ?? p.name ?? names[0];
          const budget = { entries: 0, bytes: 0 };
          const inspector = new ContentInspector(inspectCtx, {
            keepCopy: mayQuarantine,
            keepCopyMax: opts.quarantine?.maxSize,
            isMessage: p.contentType === 'message/rfc822' || names.some((n) => /\.eml$/i.test(n)),
            isText: p.contentType.startsWith('text/'),
            named: names.length > 0,
            activeContent: activeContentKind(names, p.contentType),
            depth: 0,
            budget,
            label: shownName ? `attachment "${displayName(shownName)}"` : p.contentType.startsWith('text/') ? 'message text' : `a ${p.contentType} part`,
          });
          return {
            update: (chunk: Buffer) => inspector.update(chunk),
            done: async (): Promise<PartDecision> => {
              try {
                inspected.inc();
                const inspection = await inspector.finish();
                // The part's own names are checked like the names found inside it.
                inspection.names.unshift(...names.map((n) => ({ name: n, label: `attachment "${displayName(n)}"` })));
                const hit = evaluate(active, inspection, p.contentType);
                return hit ? await decide({ rule: hit.rule, finding: hit.findings[0]! }) : { action: 'keep' };
              } finally {
                inspector.cleanup();
              }

              async function decide(o: Outcome): Promise<PartDecision> {
                txn.session.log.info({ plugin: 'attachments', rule: o.rule.label, action: o.rule.rule.action, part: p.path, filename: shownName, reason: o.finding.reason }, 'attachment caught');
                findings.inc({ kind: o.finding.kind, action: o.rule.rule.action });
                if (o.rule.rule.action === 'block') return { action: 'verdict', verdict: replyFor(o.finding) };
                let qid: string | undefined;
                if (o.rule.rule.action === 'quarantine' && quarantineDir) {
                  qid = await quarantinePart(quarantineDir, inspector.tempPath, {
                    queueId: txn.id,
                    // The core's parse of the top header section (set before any part's done()),
                    // as written: unfolded, no RFC 2047 decoding (as the raw pass read it).
                    messageId: txn.headers?.getRaw('message-id')[0]?.trim(),
                    sender: txn.mailFrom.address,
                    recipients: txn.recipients.map((r) => r.address),
                    client: txn.session.remoteAddress,
                    part: p.path,
                    filename: shownName,
                    contentType: p.contentType,
                    reason: o.finding.reason,
                    rule: o.rule.label,
                    size: inspector.size,
                    truncated: inspector.truncated,
                  });
                }
                return { action: 'replace', notice: noticeFor(shownName, o.finding, qid) };
              }
            },
          };
        };

        // Our own pass over the raw bytes: attached messages the core's walk does not open (mailsplit leaves message/rfc822 closed when it is
        // an attachment or transfer-encoded; the core then skips it whole).
        const raw = async (stream: Readable): Promise<Verdict | undefined> => {
          // Most messages cannot hold a closed attached message at all: one needs "rfc822" in a
          // Content-Type, or a file name (mailsplit types a part without Content-Type by its
          // file name's extension, .eml → message/rfc822). Such a message (when small) skips the
          // MIME parse: it is read to its end and nothing more is done (no walker is made).
          const source = await prefilter(stream);
          if (!source.parse) return undefined;
          let caught: Outcome | undefined;
          const jobs: Array<Promise<void>> = [];
          const walker = new LeafWalker((leaf) => {
            if (leaf.contentType !== 'message/rfc822') return undefined;
            const inspector = new ContentInspector(inspectCtx, {
              isMessage: true,
              named: leaf.names.length > 0,
              depth: 0,
              budget: { entries: 0, bytes: 0 },
              label: leaf.names[0] ? `attached message "${displayName(leaf.names[0])}"` : 'an attached message',
            });
            return {
              update: (c) => inspector.update(c),
              end: () => {
                jobs.push(
                  (async () => {
                    const inspection = await inspector.finish();
                    for (const n of leaf.names) inspection.names.push({ name: n, label: `attached message "${displayName(n)}"` });
                    const hit = evaluate(active, inspection, 'message/rfc822');
                    if (hit && !caught) caught = { rule: hit.rule, finding: hit.findings[0]! };
                  })().finally(() => inspector.cleanup()),
                );
              },
            };
          });
          // The relay's own MIME limits: past them the parse fails with the core's MimeLimitError,
          // which the core answers 552 5.3.4 / 554 5.6.0 (mailsplit's default would go on to 1,000 nodes).
          try {
            await pipeline(source.parse, createMimeSplitter(parseLimits), walker);
          } finally {
            await Promise.allSettled(jobs); // their temp files are gone before the reader settles
          }
          await Promise.all(jobs);
          if (!caught) return undefined;
          txn.session.log.info({ plugin: 'attachments', rule: caught.rule.label, reason: caught.finding.reason }, 'attached message caught');
          findings.inc({ kind: caught.finding.kind, action: 'block' });
          return replyFor(caught.finding);
        };

        return opts.closedMessages ? { part, raw } : { part };
      },
      },
    };
  },
});

/** Messages up to this size are held by the raw pass while it decides whether a MIME parse is needed. */
const PREFILTER_MAX = 256 * 1024;

/** The relay's `limits.mime` and `limits.headerSize` (core defaults when the container has no config). */
function mimeParseLimits(container: { isRegistered(token: symbol, recursive?: boolean): boolean; resolve<T>(token: symbol): T }): MimeParseLimits {
  const limits = container.isRegistered(Tokens.Config, true) ? container.resolve<Partial<RelayConfig>>(Tokens.Config).limits : undefined;
  return {
    headerSize: limits?.headerSize ?? 256 * 1024,
    mime: { parts: limits?.mime?.parts ?? 500, depth: limits?.mime?.depth ?? 50, partHeaderFields: limits?.mime?.partHeaderFields ?? 200 },
  };
}

/**
 * Reads the raw stream until it is clear whether a MIME parse can find anything: at the first
 * chunk that mentions `rfc822` or `filename` (any case: what can make mailsplit type a leaf
 * message/rfc822; found in the bytes by `MentionScanner`, no string made), or once more than PREFILTER_MAX bytes came, `parse` is
 * the same stream with the held chunks put back in front; otherwise the stream was read to its end
 * (nothing in it can be a closed attached message) and `parse` is undefined. No iterator or wrapper stream is left on the core's stream: once the parse fails (a
 * MIME limit), nothing of ours holds it.
 */
function prefilter(stream: Readable): Promise<{ parse?: Readable }> {
  return new Promise((resolve, reject) => {
    const held: Buffer[] = [];
    let bytes = 0;
    const scan = new MentionScanner();
    const cleanup = () => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      held.push(chunk);
      bytes += chunk.length;
      if (bytes > PREFILTER_MAX || scan.push(chunk)) {
        stream.pause();
        cleanup();
        stream.unshift(held.length === 1 ? held[0]! : Buffer.concat(held));
        resolve({ parse: stream });
      }
    };
    const onEnd = () => (cleanup(), resolve({}));
    const onError = (err: Error) => (cleanup(), reject(err));
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onError);
  });
}

import type { Transaction } from '@portcullis/core';
import libmime from 'libmime';
import type { CheckReply, HeaderToAdd } from './check-reply.js';
import { headerName, messageHeaderValue } from './header-values.js';

/** What a scanned message's header section gets, in the order it is applied. */
export interface EditPlan {
  /** rspamd's `milter.remove_headers`, first (as a milter MTA applies them). */
  readonly remove: ReadonlyArray<{ readonly name: string; readonly occurrence: number }>;
  /** The new Subject (action `rewrite subject`). */
  readonly subject?: string;
  /** rspamd's `milter.add_headers`, after the removals. */
  readonly add: readonly HeaderToAdd[];
  /** Our own headers (status, symbols, spam flag): added on top, like a trace field. */
  readonly ours: ReadonlyArray<readonly [string, string]>;
}

export function planEdits(reply: CheckReply, opts: { statusHeader: string; symbolsHeader: string; spamHeader: string; milterHeaders: boolean }): EditPlan {
  const spam = reply.action === 'add header' || reply.action === 'rewrite subject';
  const ours: Array<[string, string]> = [];
  if (opts.statusHeader) ours.push([opts.statusHeader, `${spam ? 'Yes' : 'No'}, score=${reply.score.toFixed(2)} required=${reply.requiredScore.toFixed(2)} action="${reply.action}"`]);
  if (opts.symbolsHeader) ours.push([opts.symbolsHeader, reply.symbols.map((s) => `${s.name}(${s.score.toFixed(2)})`).join(',\r\n\t') || 'none']);
  if (spam && opts.spamHeader) ours.push([opts.spamHeader, 'Yes']);
  const valid = (h: { name: string }) => headerName.test(h.name);
  return {
    remove: opts.milterHeaders ? reply.removeHeaders.filter(valid) : [],
    ...(reply.action === 'rewrite subject' && reply.subject !== undefined ? { subject: reply.subject } : {}),
    add: opts.milterHeaders ? reply.addHeaders.filter(valid) : [],
    ours,
  };
}

/** A header value for the message: 8-bit text (a rewritten non-ASCII Subject) as RFC 2047 words, ASCII as rspamd wrote it. */
function encoded(value: string): string {
  const clean = messageHeaderValue(value);
  return /[^\x00-\x7f]/.test(clean) ? libmime.encodeWords(clean, 'Q', 52, 'utf-8') : clean;
}

/**
 * Applies the plan with the core's message edits (`txn.edits`, applied when the message is
 * committed): rspamd's removals, then the subject, then rspamd's additions, as a milter MTA does;
 * our own fields go on top with `addHeader`.
 */
export function applyEdits(txn: Transaction, plan: EditPlan): void {
  const edits = txn.edits;
  for (const [name, value] of plan.ours) txn.addHeader(name, value);
  for (const r of plan.remove) {
    // rspamd asks to remove its own headers (X-Spam, X-Spamd-Result...) from every message; only a
    // field that is there becomes an edit, so a message without one is not copied again at commit.
    const count = txn.headers?.getAll(r.name).length ?? 0;
    if (count === 0) continue;
    if (r.occurrence === 0) {
      edits.removeHeader(r.name);
      continue;
    }
    // A negative occurrence counts from the last field of that name (rspamd's milter convention).
    const nth = r.occurrence > 0 ? r.occurrence : count + r.occurrence + 1;
    if (nth >= 1 && nth <= count) edits.changeHeader(r.name, nth, undefined);
  }
  // The first Subject changes; a message without one gets it appended (changeHeader's own rule).
  if (plan.subject !== undefined) edits.changeHeader('Subject', 1, encoded(plan.subject));
  for (const h of plan.add) {
    if (h.order !== undefined && h.order >= 0) edits.insertHeader(h.order, h.name, encoded(h.value));
    else edits.appendHeader(h.name, encoded(h.value));
  }
}

import { formatReply, type Reply } from '../api/verdicts.js';
import type { RelayMetrics } from '../telemetry/metrics.js';
import type { SessionState } from './session.js';

/** One log line (and one metrics count) per transaction: who, what, the verdict and the reply. Once per transaction. */
export function summarize(metrics: RelayMetrics, s: SessionState, verdict: 'accepted' | 'rejected' | 'abandoned', reply?: Reply, size?: number): void {
  const txn = s.txn;
  if (!txn || txn.summarized) return;
  txn.summarized = true;
  metrics.transaction(verdict === 'rejected' && reply && reply.code < 500 ? 'tempfailed' : verdict, size);
  // The line's fields are a dozen allocations: none when info is off.
  if (!s.log.isLevelEnabled('info')) return;
  s.log.info(
    {
      txn: txn.id,
      client: s.remoteAddress,
      // The real TCP peer is always logged beside the client; how the client was learnt when they differ.
      peer: s.peerAddress,
      proxied: s.proxied,
      forwarded: s.forwarded,
      helo: s.helo,
      user: s.user,
      from: txn.mailFrom.address,
      rcpts: txn.recipients.map((r) => r.address),
      rejectedRcpts: txn.notes['rejectedRecipients'],
      // What plugins changed (txn.edits), by plugin, in order; the envelope above is as received.
      edits: txn.edits.edits.length ? txn.edits.summary() : undefined,
      size,
      verdict,
      reply: reply ? formatReply(reply) : undefined,
      durationMs: Date.now() - txn.started,
    },
    'transaction',
  );
}

import type { Logger } from 'pino';
import type { SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import { replyError, Replies } from '../api/verdicts.js';
import { goodbye, type Connections } from '../listen/connections.js';
import type { Spool, SpooledMessage } from '../spool/spool.js';
import type { RelayMetrics } from '../telemetry/metrics.js';
import type { Sessions } from '../session/sessions.js';
import { summarize } from '../session/transaction-log.js';
import { dataRateWatchdog } from './data-rate.js';
import { receiveMessage } from './message-intake.js';
import { receivedHeader } from './received-header.js';
import { StopSignal } from './stop-signal.js';
import { lazyChild } from '../telemetry/lazy-logger.js';

type DataCallback = (err?: Error | null, message?: string) => void;

/** What the DATA phase reads from the relay. `stopping` is live: a graceful stop closes after the reply. */
export interface DataContext {
  readonly spool: Spool;
  readonly metrics: RelayMetrics;
  readonly stopping: boolean;
  /** Makes a committed message known to delivery. */
  readonly queue: { add(m: SpooledMessage): void };
}

/**
 * The DATA phase: streams the message into the intake and answers with its reply. Owns the
 * transactions in DATA, by session id: what a graceful stop waits for (and aborts at drainTime).
 */
export class DataPhase {
  private readonly intakes = new Map<string, { abort: StopSignal; stream: SMTPServerDataStream; done: Promise<unknown> }>();

  constructor(
    private readonly ctx: DataContext,
    private readonly sessions: Sessions,
    private readonly connections: Connections,
    private readonly onDataReply?: (reply: { ms: number; accepted: boolean; size: number; sessions: number }) => void,
  ) {}

  /** Whether a session has a transaction in DATA now. */
  has(id: string): boolean {
    return this.intakes.has(id);
  }

  get size(): number {
    return this.intakes.size;
  }

  /** Every transaction in DATA, settled or not. */
  settled(): Promise<unknown> {
    return Promise.allSettled([...this.intakes.values()].map((i) => i.done));
  }

  /**
   * Drain time is over: every intake is aborted. One whose message is still arriving gets 421 (nothing
   * is queued, so that is the truth) and its stream ends, which lets the intake clean up.
   */
  abortAll(): void {
    for (const [id, intake] of this.intakes) {
      intake.abort.abort();
      if (!intake.stream.readableEnded) {
        const c = this.connections.get(id);
        if (c) goodbye(c);
        intake.stream.destroy();
      }
    }
  }

  data(stream: SMTPServerDataStream, raw: SMTPServerSession, cb: DataCallback): Promise<void> {
    stream.on('error', () => undefined); // a client that leaves mid-DATA: handled by the intake
    const abort = new StopSignal();
    const done = this.receive(stream, raw, abort, cb).finally(() => {
      this.intakes.delete(raw.id);
      // Stopping: the real reply has gone out; now the connection closes.
      const c = this.connections.get(raw.id);
      if (this.ctx.stopping && c) setImmediate(() => goodbye(c));
    });
    this.intakes.set(raw.id, { abort, stream, done });
    return done;
  }

  /**
   * Hands a committed message to the delivery queue once its 250 has been written, not before:
   * `queue.add` starts the first attempt at once, and that attempt's synchronous part (routing, taking
   * a pooled connection, the first command to the next hop) used to run ahead of the client's reply,
   * and ahead of every other reply of the same spool batch. A tick callback runs after the promise
   * chain that writes the 250 and before any other I/O callback of the process, so to everything
   * outside this chain the message is in the queue as soon as its 250 is on the wire, as before.
   * It is already on disk: should the add throw, the message is logged and still delivered after a
   * restart (the spool is the queue), and the process does not crash.
   */
  private startDelivery(m: SpooledMessage, log: Logger): void {
    process.nextTick(() => {
      try {
        this.ctx.queue.add(m);
      } catch (err) {
        log.error({ err, id: m.meta.id }, 'committed message not handed to the delivery queue (it is delivered after a restart)');
      }
    });
  }

  private async receive(stream: SMTPServerDataStream, raw: SMTPServerSession, signal: StopSignal, cb: DataCallback): Promise<void> {
    const s = this.sessions.get(raw.id)!;
    const txn = s.txn!;
    const progress: { bytes: number; endedAt?: number } = { bytes: 0 };
    const watchdog = dataRateWatchdog(s, progress);
    try {
      const result = await receiveMessage(stream, txn, {
        signal,
        normalizeLineEndings: s.config.bareLineEndings.normalize.contains(raw.remoteAddress),
        limits: s.config.limits,
        progress,
        driver: s.driver,
        spool: this.ctx.spool,
        log: lazyChild(s.log, { txn: txn.id }),
        headers: () => receivedHeader(s, txn) + txn.added.join(''),
        onCommitted: (m) => this.startDelivery(m, s.log),
        meta: {
          id: txn.id,
          mailFrom: txn.mailFrom.address,
          recipients: txn.recipients.map((r) => r.address),
          client: { ip: raw.remoteAddress, helo: s.helo, user: s.user },
        },
      });
      summarize(this.ctx.metrics, s, result.accepted ? 'accepted' : 'rejected', result.reply, result.size);
      if (progress.endedAt !== undefined) this.ctx.metrics.dataReplied((performance.now() - progress.endedAt) / 1000);
      s.txn = undefined;
      if (result.accepted) cb(null, `${result.reply.enhanced} ${result.reply.text}`);
      else cb(replyError(result.reply));
      if (progress.endedAt !== undefined) this.onDataReply?.({ ms: performance.now() - progress.endedAt, accepted: result.accepted, size: result.size, sessions: this.sessions.size });
    } catch (err) {
      s.log.error({ err }, 'DATA failed');
      summarize(this.ctx.metrics, s, 'rejected', Replies.pluginFailure, 0);
      s.txn = undefined;
      cb(replyError(Replies.pluginFailure));
    } finally {
      if (watchdog) clearInterval(watchdog);
    }
  }
}

import type { Logger } from 'pino';
import type { Session } from '../api/types.js';
import { formatReply, Replies, type Reply } from '../api/verdicts.js';
import type { RelayMetrics } from '../telemetry/metrics.js';
import { RepeatLog } from '../telemetry/repeat-log.js';
import type { Conn } from '../adapter/smtp-server.js';
import { CHECK_FAILED, type ConnectionGate, type ConnectionInfo, type GateDecision, type HandedSlot, type MaybePromise, type ReleaseFailure } from './connection-gate.js';

/** What the relay uses of an smtp-server connection object: its public members (the adapter has the rest). */
export type ConnectionLike = Conn;

/**
 * The open connections of every listener, and the connection gate's bookkeeping for them: which the
 * gate admitted (each owes that gate a release when it closes), which it refused (answered before
 * any greeting), and which bypass it (a listed XCLIENT proxy speaks for many clients).
 */
export class Connections {
  private readonly open = new Map<string, ConnectionLike>();
  private readonly admitted = new Map<string, { info: ConnectionInfo; gate: ConnectionGate }>();
  private readonly refused = new Map<string, Reply>();
  private readonly ungated = new Set<string>();
  /** Connections whose gate answer is awaited (a count held by the cluster primary). */
  private readonly deciding = new Map<string, Promise<Reply | undefined>>();
  private readonly refusals = new RepeatLog(10_000);

  /** `gate()` is read per connection: a reload replaces the gate, a connection is released by the one that admitted it. */
  constructor(private readonly gate: () => ConnectionGate, private readonly metrics: RelayMetrics, private readonly log: Logger) {}

  get(id: string): ConnectionLike | undefined {
    return this.open.get(id);
  }

  all(): ConnectionLike[] {
    return [...this.open.values()];
  }

  has(id: string): boolean {
    return this.open.has(id);
  }

  added(c: ConnectionLike): void {
    this.open.set(c.id, c);
  }

  bypassGate(id: string): void {
    this.ungated.add(id);
  }

  refusal(id: string): Reply | undefined {
    return this.refused.get(id);
  }

  /** Forgets a closed connection and releases its gate slot; false when it was not open. */
  removed(id: string): boolean {
    if (!this.open.delete(id)) return false;
    this.refused.delete(id);
    this.ungated.delete(id);
    const admitted = this.admitted.get(id);
    if (admitted) {
      this.admitted.delete(id);
      this.releaseFailed(admitted.info, admitted.gate.release(admitted.info));
    }
    return true;
  }

  /** A check's release that threw (a bug in the check): logged at most every 10 s per check, never thrown. */
  private releaseFailed(info: ConnectionInfo, failures: ReleaseFailure[]): void {
    for (const f of failures) {
      this.refusals.log(this.log, 'error', `release failed: ${f.check}`, { err: f.error, check: f.check, client: info.remoteAddress, listener: info.listener.name }, `connection gate check ${f.check}: release failed (its count for this client may stay too high until restart)`);
    }
  }

  /**
   * Runs the connection gate once per connection; a refusal is answered before any greeting. The
   * answer is synchronous when every check counts in this process, else a promise (the same one for
   * every call until it settles): the connect phase awaits it before the greeting.
   */
  admit(c: { id: string; remoteAddress: string }, listener: Session['listener'], label: string, handed?: HandedSlot): MaybePromise<Reply | undefined> {
    if (this.ungated.has(c.id) || this.admitted.has(c.id) || this.refused.has(c.id)) return this.refused.get(c.id);
    const pending = this.deciding.get(c.id);
    if (pending) return pending;
    const info: ConnectionInfo = handed ? { id: c.id, remoteAddress: c.remoteAddress, listener, handed } : { id: c.id, remoteAddress: c.remoteAddress, listener };
    const gate = this.gate();
    const decided = gate.decide(info);
    if (!(decided instanceof Promise)) return this.record(info, gate, decided, label);
    const p = decided.then(
      (d) => {
        this.deciding.delete(c.id);
        // Closed while the answer travelled (the socket is added right after this call, so a
        // connection missing now has come and gone): give back what the gate took.
        if (!this.open.has(c.id)) {
          if (!d) this.releaseFailed(info, gate.release(info));
          else if (d.releaseFailures) this.releaseFailed(info, d.releaseFailures);
          return d?.reply;
        }
        return this.record(info, gate, d, label);
      },
      (err: unknown) => {
        // The gate catches its checks' throws and rejections and their releases' throws, so this is
        // a bug in the gate itself. Fail closed, temporarily, as for a check that throws; nothing is
        // released (what the gate took is unknown: a slot kept too long is the safe side of a limit).
        this.deciding.delete(c.id);
        return this.record(info, gate, { reply: CHECK_FAILED, check: 'gate', error: err ?? new Error('rejected with undefined') }, label);
      },
    );
    this.deciding.set(c.id, p);
    return p;
  }

  private record(info: ConnectionInfo, gate: ConnectionGate, decided: GateDecision, label: string): Reply | undefined {
    const reply = decided?.reply;
    if (decided?.releaseFailures) this.releaseFailed(info, decided.releaseFailures);
    if (decided?.error !== undefined) {
      // A check that threw: counted under one reason, logged per check (at most every 10 s), with the error.
      this.metrics.connectionRefused(label, 'check_failed');
      this.refused.set(info.id, decided.reply);
      this.refusals.log(this.log, 'error', `check failed: ${decided.check}`, { err: decided.error, check: decided.check, client: info.remoteAddress, listener: info.listener.name, reply: formatReply(decided.reply) }, `connection gate check ${decided.check} failed: refused for now (${formatReply(decided.reply)})`);
    } else if (decided && reply) {
      this.metrics.connectionRefused(label, decided.check);
      this.refused.set(info.id, reply);
      this.refusals.log(this.log, 'warn', `${formatReply(reply)} ${info.remoteAddress}`, { client: info.remoteAddress, listener: info.listener.name, reply: formatReply(reply) }, 'connection refused at the gate');
    } else this.admitted.set(info.id, { info, gate });
    return reply;
  }
}

/** 421 4.3.2 and close (smtp-server writes nothing once the socket is closed). */
export function goodbye(c: ConnectionLike): void {
  try {
    c.send(Replies.shuttingDown.code, `${Replies.shuttingDown.enhanced} ${Replies.shuttingDown.text}`);
    c.close();
  } catch {
    /* already gone */
  }
}

import type { Session } from '../api/types.js';
import type { Reply } from '../api/verdicts.js';

/** A connection as the gate sees it: the TCP peer (or the PROXY protocol client) and its listener. */
export interface ConnectionInfo {
  readonly id: string;
  readonly remoteAddress: string;
  readonly listener: Session['listener'];
  /** The core's per-address slot as the worker mode's primary decided it at accept (cluster/handoff.ts), when it did. */
  readonly handed?: HandedSlot;
}

/**
 * A per-address slot decided before the connection reached this process: the primary counted it
 * when it accepted the socket. `release` gives it back (once), as a lease does.
 */
export interface HandedSlot {
  readonly admitted: boolean;
  release(): void;
}

/** An answer now, or later (a count held in another process). */
export type MaybePromise<T> = T | Promise<T>;

/**
 * An admission check with its own accounting, run for each new connection before any greeting
 * delay or plugin hook: a refusal costs one `421` line and a close, so a flood of connections is
 * turned away cheaply and cannot crowd out the clients the operator trusts.
 * `release` is called once for every connection this check admitted, when it closes.
 *
 * `admit` answers synchronously when its count is in this process (one process: the fast path,
 * decided before smtp-server's init). It returns a promise when the count is held elsewhere (the
 * cluster primary counts for every worker process): the greeting then waits for the answer (it
 * overlaps the greeting delay) and a refusal is sent in its place.
 */
export interface ConnectionCheck {
  readonly name: string;
  admit(c: ConnectionInfo): MaybePromise<Reply | undefined>;
  release(c: ConnectionInfo): void;
}

/** A check whose `release` threw: the other checks were still released, the error is the caller's to log. */
export interface ReleaseFailure {
  readonly check: string;
  readonly error: unknown;
}

/**
 * `error`: the check threw or rejected (then `reply` is CHECK_FAILED). `releaseFailures`: undoing
 * an earlier check threw (the refusal stands; the caller logs them).
 */
export type GateDecision = { reply: Reply; check: string; error?: unknown; releaseFailures?: ReleaseFailure[] } | undefined;

/**
 * The answer when a check throws or rejects: a bug in it, or a store that failed in a way it did
 * not handle. Fail closed, temporarily, as a hook that throws gets 451 4.3.0: the client comes back
 * later; admitting would skip a limit the operator configured, exactly when it may be under attack.
 */
export const CHECK_FAILED: Reply = { code: 421, enhanced: '4.3.0', text: 'Temporary local problem, try again later' };

const isPromise = <T>(v: MaybePromise<T>): v is Promise<T> => typeof (v as Promise<T> | undefined)?.then === 'function';

/** `f(v)` now when `v` is a value, after it settles when it is a promise: the synchronous path stays synchronous. */
export function whenSettled<T, U>(v: MaybePromise<T>, f: (value: T) => MaybePromise<U>): MaybePromise<U> {
  return isPromise(v) ? v.then(f) : f(v);
}

/**
 * The relay's admission checks (`Tokens.ConnectionGate`): the core's per-address limit first, then
 * whatever plugins add in `setup` (e.g. @portcullis/limits: concurrency per address and per /64,
 * capacity kept for trusted networks and submission). Checks run in order, each after the previous
 * one admitted: a refused connection is never counted by the checks after the one that refused.
 */
export class ConnectionGate {
  private readonly checks: ConnectionCheck[] = [];

  add(check: ConnectionCheck): void {
    this.checks.push(check);
  }

  /** The first refusal, or undefined when every check admits (each then owes a `release`). */
  admit(c: ConnectionInfo): MaybePromise<Reply | undefined> {
    return whenSettled(this.decide(c), (d) => d?.reply);
  }

  /**
   * As `admit`, naming the check that refused (the reason label of connections_refused_total).
   * Synchronous while every check answers synchronously. A check that throws or rejects refuses
   * with CHECK_FAILED (421 4.3.0, the error in the decision; the checks before it are released, it
   * owes nothing). The stores answer locally when the primary or Redis does not, so this is a bug,
   * not an outage: the relay's log and `connections_refused_total{reason="check_failed"}` show it.
   */
  decide(c: ConnectionInfo, from = 0): MaybePromise<GateDecision> {
    for (let i = from; i < this.checks.length; i++) {
      let reply: MaybePromise<Reply | undefined>;
      try {
        reply = this.checks[i]!.admit(c);
      } catch (err) {
        return this.refuse(c, i, CHECK_FAILED, err ?? new Error('threw undefined'));
      }
      if (isPromise(reply)) {
        return reply.then(
          (r) => (r ? this.refuse(c, i, r) : this.decide(c, i + 1)),
          (err: unknown) => this.refuse(c, i, CHECK_FAILED, err ?? new Error('rejected with undefined')),
        );
      }
      if (reply) return this.refuse(c, i, reply);
    }
    return undefined;
  }

  /** The checks before `i` admitted it: undo their accounting. The refusal stands even when an undo throws. */
  private refuse(c: ConnectionInfo, i: number, reply: Reply, error?: unknown): GateDecision {
    const failures = this.releaseChecks(c, i);
    const d: NonNullable<GateDecision> = { reply, check: this.checks[i]!.name };
    if (error !== undefined) d.error = error;
    if (failures.length) d.releaseFailures = failures;
    return d;
  }

  /**
   * Gives back what every check took for a closed connection. A check whose release throws (a bug
   * in it) neither stops the others' releases nor escapes: this runs from the socket's close, where
   * an exception would end the process. The failures are returned for the caller to log.
   */
  release(c: ConnectionInfo): ReleaseFailure[] {
    return this.releaseChecks(c, this.checks.length);
  }

  private releaseChecks(c: ConnectionInfo, upTo: number): ReleaseFailure[] {
    const failures: ReleaseFailure[] = [];
    for (let j = 0; j < upTo; j++) {
      try {
        this.checks[j]!.release(c);
      } catch (error) {
        failures.push({ check: this.checks[j]!.name, error: error ?? new Error('threw undefined') });
      }
    }
    return failures;
  }
}

/** What the core's check counts in: SharedState's slots (services/shared-state.ts), by shape. */
export interface SlotSource {
  acquire(key: string): MaybePromise<{ release(): void } | undefined>;
}

/**
 * The core's own check: `limits.connectionsPerIp` simultaneous connections per client address,
 * counted in `slots` (this process's memory, or the cluster primary's for every worker) or, when
 * none is given, in a map of its own.
 *
 * The cost of counting in the primary: one IPC round trip per connection (a request and its
 * answer before the greeting, a notice on close). Measured with test/support/gate-ipc-cost.ts (two
 * workers, connect + greeting + QUIT, 1,500 connections 20 at a time, alternating rounds of one
 * run, shared 2-core machine at load 8–9): this check alone, 716 / 448 connections/s with the
 * slots in the primary against 564 / 420 with each worker counting alone (within the noise) and
 * +143 µs CPU per connection of ≈ 1.7 ms (all processes); with @portcullis/limits' two slots as
 * well, 419 / 247 against 590 / 599 (0.70) and +544 µs. One acquire + release pair costs 82–157 µs
 * CPU (worker + primary) over IPC against 2–3 µs in process. With one process nothing crosses a
 * pipe: `slots` answers synchronously and so does the gate. In the worker mode, on a listener the
 * primary accepts for (cluster/handoff.ts), the primary counts the slot at accept and the verdict
 * comes with the socket (`c.handed`): this check then answers synchronously too, and only the release
 * crosses the pipe.
 */
export function perAddressCheck(limit: number, reply: Reply, slots?: SlotSource): ConnectionCheck {
  const counts = new Map<string, number>();
  const leases = new Map<string, { release(): void }>();
  if (slots) {
    return {
      name: 'connectionsPerIp',
      admit(c) {
        // Decided by the primary at accept (the lease is already counted there): nothing to ask.
        if (c.handed) {
          if (!c.handed.admitted) return reply;
          leases.set(c.id, c.handed);
          return undefined;
        }
        return whenSettled(slots.acquire(c.remoteAddress), (lease) => {
          if (!lease) return reply;
          leases.set(c.id, lease);
          return undefined;
        });
      },
      release(c) {
        leases.get(c.id)?.release();
        leases.delete(c.id);
      },
    };
  }
  return {
    name: 'connectionsPerIp',
    admit(c) {
      const n = counts.get(c.remoteAddress) ?? 0;
      if (n >= limit) return reply;
      counts.set(c.remoteAddress, n + 1);
      return undefined;
    },
    release(c) {
      const n = (counts.get(c.remoteAddress) ?? 1) - 1;
      if (n <= 0) counts.delete(c.remoteAddress);
      else counts.set(c.remoteAddress, n);
    },
  };
}

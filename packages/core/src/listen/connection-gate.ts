import type { Session } from '../api/types.js';
import type { Reply } from '../api/verdicts.js';

/** A connection as the gate sees it: the TCP peer (or the PROXY protocol client) and its listener. */
export interface ConnectionInfo {
  readonly id: string;
  readonly remoteAddress: string;
  readonly listener: Session['listener'];
}

/**
 * A synchronous admission check with its own accounting, run for each new connection before any
 * greeting delay or plugin hook: a refusal costs one `421` line and a close, so a flood of
 * connections is turned away cheaply and cannot crowd out the clients the operator trusts.
 * `release` is called once for every connection this check admitted, when it closes.
 */
export interface ConnectionCheck {
  readonly name: string;
  admit(c: ConnectionInfo): Reply | undefined;
  release(c: ConnectionInfo): void;
}

/**
 * The relay's admission checks (`Tokens.ConnectionGate`): the core's per-address limit first, then
 * whatever plugins add in `setup` (e.g. @portcullis/limits: concurrency per address and per /64,
 * capacity kept for trusted networks and submission).
 */
export class ConnectionGate {
  private readonly checks: ConnectionCheck[] = [];

  add(check: ConnectionCheck): void {
    this.checks.push(check);
  }

  /** The first refusal, or undefined when every check admits (each then owes a `release`). */
  admit(c: ConnectionInfo): Reply | undefined {
    return this.decide(c)?.reply;
  }

  /** As `admit`, naming the check that refused (the reason label of connections_refused_total). */
  decide(c: ConnectionInfo): { reply: Reply; check: string } | undefined {
    for (let i = 0; i < this.checks.length; i++) {
      const reply = this.checks[i]!.admit(c);
      if (reply) {
        // The checks before this one admitted it: undo their accounting.
        for (let j = 0; j < i; j++) this.checks[j]!.release(c);
        return { reply, check: this.checks[i]!.name };
      }
    }
    return undefined;
  }

  release(c: ConnectionInfo): void {
    for (const check of this.checks) check.release(c);
  }
}

/** The core's own check: `limits.connectionsPerIp` simultaneous connections per client address. */
export function perAddressCheck(limit: number, reply: Reply): ConnectionCheck {
  const counts = new Map<string, number>();
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

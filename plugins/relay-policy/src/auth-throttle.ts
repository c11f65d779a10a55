import type { SharedCounter, SharedState } from '@portcullis/core';

/**
 * Counts failed logins per client IP in a fixed window on core's shared state: with
 * `sharedState.redis`, every node sees the same count, so spreading a password-guessing run over
 * the nodes of a cluster gains nothing. Per-connection counts live in the session's notes. A
 * blocked IP is refused before its password is even checked.
 */
export class AuthThrottle {
  private readonly counter: SharedCounter;

  constructor(state: SharedState, windowMs: number, private readonly maxPerIp: number) {
    this.counter = state.counter('relay-policy:auth-failures', maxPerIp, windowMs);
  }

  async blocked(ip: string): Promise<boolean> {
    return (await this.counter.peek(ip)) >= this.maxPerIp;
  }

  /** Records a failure; returns how many this IP has in the window. */
  async fail(ip: string): Promise<number> {
    return (await this.counter.consume(ip)).count;
  }
}

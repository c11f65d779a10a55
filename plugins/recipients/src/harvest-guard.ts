import type { SharedCounter, SharedState } from '@portcullis/core';

export interface HarvestSettings {
  readonly freeUnknown: number;
  readonly delay: number;
  readonly maxDelay: number;
  readonly maxUnknownPerSession: number;
  readonly maxUnknownPerClient: number;
  readonly window: number;
}

/** What to do with an unknown recipient: answer 550 after `delayMs`, or `421 4.7.0` and close. */
export type HarvestDecision = { readonly action: 'reject'; readonly delayMs: number; readonly count: number } | { readonly action: 'close'; readonly scope: 'session' | 'client'; readonly count: number };

/**
 * Directory-harvest defence. Unknown recipients are counted per session (here) and per client
 * address across sessions and nodes (a shared counter). Beyond `freeUnknown` in a session each
 * further one is answered after a growing delay; at `maxUnknownPerSession` in a session, or past
 * `maxUnknownPerClient` within `window` for the address, the client gets `421 4.7.0` and is closed.
 * Known recipients never pass through here, so they are never slowed.
 */
export class HarvestGuard {
  private readonly perSession = new WeakMap<object, number>();
  private readonly perClient: SharedCounter;
  private readonly timers = new Set<{ timer: NodeJS.Timeout; done: () => void }>();

  constructor(state: SharedState, private readonly s: HarvestSettings) {
    this.perClient = state.counter('recipients:unknown:ip', s.maxUnknownPerClient, s.window);
  }

  async unknown(session: object, clientKey: string): Promise<HarvestDecision> {
    const n = (this.perSession.get(session) ?? 0) + 1;
    this.perSession.set(session, n);
    const client = await this.perClient.consume(clientKey);
    if (n >= this.s.maxUnknownPerSession) return { action: 'close', scope: 'session', count: n };
    if (!client.allowed) return { action: 'close', scope: 'client', count: client.count };
    const over = n - this.s.freeUnknown;
    return { action: 'reject', delayMs: over > 0 ? Math.min(over * this.s.delay, this.s.maxDelay) : 0, count: n };
  }

  /** Waits `ms`; `close()` ends every wait at once (shutdown does not wait for harvesters). */
  sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const entry = { timer: setTimeout(() => (this.timers.delete(entry), resolve()), ms), done: resolve };
      this.timers.add(entry);
    });
  }

  close(): void {
    for (const t of this.timers) {
      clearTimeout(t.timer);
      t.done();
    }
    this.timers.clear();
  }
}

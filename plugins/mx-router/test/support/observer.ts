import { definePlugin, type DeliveryEvent } from '@portcullis/core';

/** What a test observer saw, in order. */
export interface ObservedEvent {
  readonly kind: 'delivered' | 'deferred' | 'bounced';
  readonly recipient: string;
  readonly response: string;
  readonly host?: string;
}

/** A plugin that records delivery events into `events`, for tests. */
export function recordingObserver(events: ObservedEvent[]) {
  const note = (kind: ObservedEvent['kind']) => (e: DeliveryEvent) => {
    events.push({ kind, recipient: e.recipient, response: e.response, host: e.host });
  };
  return definePlugin({
    name: 'test-observer',
    setup: () => ({ delivered: note('delivered'), deferred: note('deferred'), bounced: note('bounced') }),
  });
}

/** Polls `check` every 25 ms until it returns a value; throws after `timeoutMs` with `what`. */
export async function waitUntil<T>(what: string, check: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

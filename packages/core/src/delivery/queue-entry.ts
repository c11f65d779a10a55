import type { SpooledMessage } from '../spool/spool.js';
import type { ReplyTimeouts } from './reply-timeouts.js';

/** The delivery settings (the config's `delivery` block plus the host name we greet with). */
export interface DeliveryOptions {
  readonly hostname: string;
  readonly retrySchedule: readonly number[];
  readonly maxQueueTime: number;
  readonly delayWarning: number;
  readonly concurrency: number;
  readonly connectTimeout: number;
  readonly socketTimeout: number;
  readonly timeouts?: ReplyTimeouts;
  readonly maxConnectionsPerHost?: number;
  readonly connectionIdle?: number;
  readonly tlsFallback?: number;
}

/** A message in the queue, with its scheduling state. */
export interface Entry extends SpooledMessage {
  busy: boolean;
  /** Waiting in the due list. */
  queued: boolean;
  /**
   * A flush came while an attempt was in flight: if that attempt defers, the message is due again
   * at once instead of waiting for its next retry slot (what an operator who typed flush means).
   */
  flushAgain?: boolean;
}

/**
 * A queue entry for a spooled message. Its `state.done` is keyed by recipient address, a new key in
 * nearly every message: on a plain `{}` each is a new hidden-class transition of V8's root object map
 * (the attempt's costliest line in the profile); a null-prototype object is a dictionary. Same JSON.
 */
export function entryOf(m: SpooledMessage): Entry {
  const done = m.state.done;
  if (Object.getPrototypeOf(done) !== null) m.state.done = Object.assign(Object.create(null) as typeof done, done);
  return { ...m, busy: false, queued: false };
}

/**
 * What the data pass reads of an abort signal: the flag, and a listener for the moment it is set.
 * An `AbortSignal` is one; so is `StopSignal`, the data pass's own.
 */
export interface AbortLike {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/**
 * A one-shot stop flag with listeners, for the two the data pass makes per message (the graceful
 * stop's, in data-phase.ts, and the end-of-DATA deadline's, in message-intake.ts). An
 * AbortController is an EventTarget: its signal's construction and each listener added and removed
 * cost more than the rest of either job, and the data pass needs none of the rest (no `reason`,
 * no event object, no `AbortSignal.any`). Listeners run once, in the order added, when `abort()`
 * is first called; one added after that is not called (callers check `aborted` first, as with an
 * AbortSignal).
 */
export class StopSignal implements AbortLike {
  private stopped = false;
  private listeners?: Array<() => void>;

  get aborted(): boolean {
    return this.stopped;
  }

  abort(): void {
    if (this.stopped) return;
    this.stopped = true;
    const listeners = this.listeners;
    this.listeners = undefined;
    if (listeners) for (const l of listeners) l();
  }

  /** Every listener is a once-listener (the signal aborts once); `options` is accepted for AbortSignal's shape. */
  addEventListener(_type: 'abort', listener: () => void, _options?: { once?: boolean }): void {
    if (!this.stopped) (this.listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const ls = this.listeners;
    if (!ls) return;
    const i = ls.indexOf(listener);
    if (i >= 0) ls.splice(i, 1);
  }
}

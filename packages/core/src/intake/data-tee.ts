import type { Writable } from 'node:stream';
import type { AbortLike } from './stop-signal.js';

/** One destination of the tee: the spool file, the MIME pass, or a plugin's raw reader. */
export interface TeeBranch {
  readonly stream: Writable;
  /** Who reads this branch (a plugin's name, or `MIME pass`), for the log of a stall. */
  readonly owner?: string;
  /** False for the spool file: a slow disk is not a stalled reader (the end-of-DATA deadline covers it). */
  readonly stallable: boolean;
  /** Set once the tee has let this branch go: nothing is written to it, nothing waits on it. */
  detached: boolean;
  /** Wakes a write that is waiting on this branch (set while one waits). */
  wake?: () => void;
}

/**
 * The DATA tee: every chunk goes to every attached branch, with backpressure, but the data pass never
 * waits on a reader that has stopped. A branch the intake detaches (its reader's promise settled, or
 * the MIME pass ended) is never written again and a write waiting on it goes on at once; its
 * buffered bytes are dropped with it. A stallable branch that takes no data for `stallMs` while the
 * pass waits on it is detached too and reported in `stalled`: the intake ends the transaction with
 * 451 4.3.0. So what a stopped reader can hold is its stream's buffer (highWaterMark plus one chunk),
 * and for no longer than `stallMs`. An aborted `signal` (a graceful stop out of drain time) wakes
 * every waiting write.
 *
 * Written by hand: it is three stream events and a timer, and the policy (detach, deadline, who is
 * to blame) is ours.
 */
export class DataTee {
  private readonly branches: TeeBranch[] = [];
  /** The first branch that stopped taking data for `stallMs`. */
  stalled?: TeeBranch;

  constructor(
    private readonly stallMs: number,
    private readonly signal?: AbortLike,
  ) {}

  add(stream: Writable, owner?: string, stallable = true): TeeBranch {
    const b: TeeBranch = { stream, owner, stallable, detached: false };
    this.branches.push(b);
    return b;
  }

  /** Lets a branch go: no more writes to it, and a write waiting on it goes on. */
  detach(b: TeeBranch | undefined): void {
    if (!b || b.detached) return;
    b.detached = true;
    b.wake?.();
  }

  /** Writes `chunk` to every attached branch; resolves once each took it, was detached, or stalled. */
  write(chunk: Buffer): Promise<void> | void {
    let waits: Promise<void>[] | undefined;
    for (const b of this.branches) {
      const s = b.stream;
      if (b.detached || s.destroyed || s.writableEnded) continue;
      if (!s.write(chunk)) (waits ??= []).push(this.waitFor(b));
    }
    if (waits) return Promise.all(waits).then(() => undefined);
  }

  /** Ends every branch still attached (a detached reader's stream is left as its reader left it). */
  end(): void {
    for (const b of this.branches) if (!b.detached && !b.stream.destroyed && !b.stream.writableEnded) b.stream.end();
  }

  private waitFor(b: TeeBranch): Promise<void> {
    const s = b.stream;
    return new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        s.off('drain', done);
        s.off('close', done);
        s.off('error', done);
        this.signal?.removeEventListener('abort', done);
        if (timer) clearTimeout(timer);
        b.wake = undefined;
        resolve();
      };
      b.wake = done;
      s.on('drain', done);
      s.on('close', done);
      s.on('error', done);
      this.signal?.addEventListener('abort', done, { once: true });
      if (this.signal?.aborted) return done();
      if (b.stallable && this.stallMs > 0) {
        timer = setTimeout(() => {
          this.stalled ??= b;
          b.detached = true;
          done();
        }, this.stallMs);
      }
    });
  }
}

import { closeSync, fsyncSync, openSync } from 'node:fs';
import { open } from 'node:fs/promises';

/**
 * fsync of a directory, grouped: a caller that arrives while a sync is running waits for the next
 * one, which then covers every rename made before it started (group commit). Each caller's rename
 * is durable when its promise resolves.
 */
export class DirSync {
  private running?: Promise<void>;
  private queued?: Promise<void>;

  constructor(private readonly dir: string) {}

  sync(): Promise<void> {
    if (!this.running) {
      this.running = this.runOnce().finally(() => {
        this.running = undefined;
      });
      return this.running;
    }
    if (!this.queued) {
      this.queued = this.running
        .catch(() => undefined)
        .then(() => {
          this.queued = undefined;
          return this.sync();
        });
    }
    return this.queued;
  }

  /**
   * The same fsync, now, on the calling thread (the segment store's batch written from the event
   * loop): durable on return for every rename made before the call.
   */
  syncNow(): void {
    const fd = openSync(this.dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  private async runOnce(): Promise<void> {
    const fh = await open(this.dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}

import { statfs } from 'node:fs/promises';
import type { Logger } from 'pino';
import { RepeatLog } from '../telemetry/repeat-log.js';

/** Below 1.5 × the size limit, or this much, whichever is larger, MAIL FROM gets 452 4.3.1. */
export const DISK_FLOOR_BYTES = 100 * 1024 * 1024;

/** The default free-space threshold (Postfix's rule: 1.5 × message_size_limit), never below the floor. */
export function defaultMinFree(messageSize: number): number {
  return Math.max(Math.ceil(1.5 * messageSize), DISK_FLOOR_BYTES);
}

/**
 * Refuses new transactions while the spool's file system is short of space, so a flood cannot fill
 * the disk and cost acknowledged mail. Asked at every MAIL FROM. A statfs is shared by the MAIL
 * commands that arrive while it runs, and a measurement is reused without a new statfs only while
 * it is younger than `reuseMs` (100 ms) AND the space measured, less `messageSize` for every
 * transaction admitted since, still clears `minFree`: every transaction admitted on an old figure
 * is counted as if it will write a message of the maximum size. So the answer is never more
 * generous than one statfs per MAIL FROM would give; near the threshold every MAIL FROM measures
 * (at 500 msg/s that saves ~98 % of the calls, about 3 % of the relay's CPU). `cacheMs` (tests,
 * status pages) widens the plain reuse window. Refusals are logged through a RepeatLog: the first
 * at once, then one line a minute with the count.
 *
 * The reserve (`spool.reserve`): privileged clients (authenticated users, and the networks a plugin
 * vouches for through `trust`, e.g. relay-policy's trustedNetworks) are refused only below
 * `minFree − reserve`, so the temp space anonymous clients hold cannot lock out the operator's
 * own servers and users, as the limits plugin keeps connections for them.
 */
/** What the guard knows of a client at MAIL FROM. */
export interface PrivilegeInfo {
  readonly remoteAddress: string;
  readonly user?: string;
}

export class DiskGuard {
  private checkedAt = 0;
  private free = Number.POSITIVE_INFINITY;
  private pending?: Promise<void>;
  private readonly repeats = new RepeatLog();
  /** Refusals since start. */
  refused = 0;

  /** Transactions admitted on the current measurement. */
  private admittedSince = 0;

  constructor(
    private readonly dir: string,
    readonly minFree: number,
    private readonly log: Logger,
    private readonly cacheMs = 0,
    /** The most one transaction can write (limits.messageSize); 0: always measure (unless cacheMs). */
    private readonly messageSize = 0,
    private readonly reuseMs = 100,
    /** Of `minFree`, what privileged clients may still use (see the class doc). */
    readonly reserve = 0,
  ) {}

  private readonly trusted: Array<(c: PrivilegeInfo) => boolean> = [];

  /** A plugin vouches for clients (e.g. its trusted networks): they may use the reserve. */
  trust(check: (c: PrivilegeInfo) => boolean): void {
    this.trusted.push(check);
  }

  /** Authenticated users, and clients a plugin vouched for. */
  isPrivileged(c: PrivilegeInfo): boolean {
    if (c.user) return true;
    return this.trusted.some((check) => {
      try {
        return check(c);
      } catch {
        return false;
      }
    });
  }

  /** Free bytes for unprivileged writers (what the relay, not root, can use), as last measured. */
  get lastFree(): number {
    return this.free;
  }

  private async measure(): Promise<void> {
    try {
      const s = await statfs(this.dir);
      this.free = Number(s.bavail) * Number(s.bsize);
    } catch (err) {
      // Cannot tell: do not refuse mail on a failed statfs; the spool write reports real errors.
      this.repeats.log(this.log, 'warn', 'statfs', { err, dir: this.dir }, 'cannot read free space of the spool file system');
      this.free = Number.POSITIVE_INFINITY;
    }
    this.checkedAt = Date.now();
    this.admittedSince = 0;
  }

  /** Whether the last measurement still answers for one more transaction (see the class doc). */
  private stillValid(threshold: number): boolean {
    const age = Date.now() - this.checkedAt;
    if (age < this.cacheMs) return true;
    if (!this.messageSize || age >= this.reuseMs) return false;
    return this.free - (this.admittedSince + 1) * this.messageSize >= threshold;
  }

  /** For /readyz and `portcullis status`: measures now; never counts nor logs a refusal. */
  async status(): Promise<{ tripped: boolean; free: number; minFree: number }> {
    this.pending ??= this.measure().finally(() => (this.pending = undefined));
    await this.pending;
    return { tripped: this.minFree > 0 && this.free < this.minFree, free: this.free, minFree: this.minFree };
  }

  /** True when a new transaction may start; `privileged` clients may use the reserve. */
  async hasRoom(client?: string, privileged = false): Promise<boolean> {
    if (this.minFree <= 0) return true;
    const threshold = privileged ? Math.max(0, this.minFree - this.reserve) : this.minFree;
    if (this.pending || !this.stillValid(threshold)) {
      this.pending ??= this.measure().finally(() => (this.pending = undefined));
      await this.pending;
    }
    if (this.free >= threshold) {
      this.admittedSince++;
      return true;
    }
    this.refused++;
    this.repeats.log(this.log, 'warn', 'low-space', { dir: this.dir, freeBytes: this.free, minFreeBytes: threshold, privileged, client, refusedTotal: this.refused }, 'spool file system low on space: MAIL FROM refused with 452 4.3.1');
    return false;
  }
}

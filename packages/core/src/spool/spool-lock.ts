import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import type { Logger } from 'pino';

interface Owner {
  pid: number;
  who: string;
  since: string;
}

/**
 * One writer per spool folder: the running relay holds this lock for its whole life, and an
 * offline `portcullis queue` or `quarantine release` command holds it while it changes files, so
 * two writers never collide (a relay does not start while a command is rewriting state files; two
 * commands do not interleave). proper-lockfile's lock is a directory created atomically and kept
 * fresh; next to it an owner file names the process. A lock whose owner process no longer exists
 * (a relay killed with SIGKILL) is taken over at once rather than after the staleness timeout, so a
 * restart after a crash does not wait.
 */
export class SpoolLock {
  private constructor(
    private readonly ownerFile: string,
    private readonly unlock: () => Promise<void>,
  ) {}

  static lockPath(spoolDir: string): string {
    return path.join(spoolDir, 'spool.lock');
  }

  /** Waits up to `waitMs` for the lock; then fails naming who holds it. */
  static async acquire(spoolDir: string, who: string, log?: Logger, waitMs = 10_000): Promise<SpoolLock> {
    const lockfilePath = SpoolLock.lockPath(spoolDir);
    const ownerFile = path.join(spoolDir, 'spool.lock.owner');
    const deadline = Date.now() + waitMs;
    for (;;) {
      try {
        const release = await lockfile.lock(spoolDir, {
          lockfilePath,
          realpath: false,
          stale: 10_000,
          update: 2_000,
          // A stalled event loop past `stale` lets another process take the lock: say so loudly, keep running.
          onCompromised: (err) => log?.error({ err }, 'spool lock compromised: another process may be writing the spool'),
        });
        const owner: Owner = { pid: process.pid, who, since: new Date().toISOString() };
        writeFileSync(ownerFile, JSON.stringify(owner));
        return new SpoolLock(ownerFile, release);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
        const owner = readOwner(ownerFile);
        if (owner && owner.pid !== process.pid && !alive(owner.pid)) {
          log?.warn({ pid: owner.pid, who: owner.who }, 'spool lock left by a process that is gone: taking it over');
          // Re-read right before removing: another process may have taken it over meanwhile.
          const again = readOwner(ownerFile);
          if (again && again.pid === owner.pid) {
            rmSync(lockfilePath, { recursive: true, force: true });
            rmSync(ownerFile, { force: true });
          }
          continue;
        }
        if (Date.now() >= deadline) {
          throw new Error(`the spool ${spoolDir} is locked by ${owner ? `${owner.who} (pid ${owner.pid}, since ${owner.since})` : 'another process'}; try again when it is done`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Who holds the lock now, if anyone alive does. */
  static holder(spoolDir: string): Owner | undefined {
    const owner = readOwner(path.join(spoolDir, 'spool.lock.owner'));
    return owner && alive(owner.pid) ? owner : undefined;
  }

  async release(): Promise<void> {
    rmSync(this.ownerFile, { force: true });
    await this.unlock().catch(() => undefined);
  }
}

function readOwner(file: string): Owner | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Owner;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

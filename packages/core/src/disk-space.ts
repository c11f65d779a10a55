import { statfs } from 'node:fs/promises';

/** Bytes available to this (unprivileged) process on the file system holding `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return Number(s.bavail) * Number(s.bsize);
}

/**
 * What `/readyz` asks about disk space. The MAIL FROM disk guard (`452 4.3.1`) registers itself
 * under `Tokens.DiskGuard`; until one is registered the core uses `spoolFreeSpaceGuard`, the same
 * question asked of the spool's file system with `admin.minFreeSpace`.
 */
export interface DiskGuard {
  /** `tripped: true` while new mail would be refused for lack of space. */
  status(): Promise<{ tripped: boolean; detail?: string }>;
}

export function spoolFreeSpaceGuard(dir: string, minFree: number): DiskGuard {
  return {
    async status() {
      const free = await freeBytes(dir);
      return free < minFree ? { tripped: true, detail: `${free} bytes free on the spool's file system, below ${minFree}` } : { tripped: false, detail: `${free} bytes free` };
    },
  };
}

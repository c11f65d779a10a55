import { existsSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { RelayConfig } from '../config/schema.js';

/**
 * The spool shards of the worker mode. Worker i (1..N) owns `<spool.dir>/w<i>`: its own segments,
 * group commit, lock (`w<i>/spool.lock`) and control socket. A restarted worker gets the same index,
 * so it opens its predecessor's shard and the spool's crash recovery delivers what was left.
 *
 * Shard 0 is the spool folder itself, as a single-process relay (`workers: 1`) writes it. A shard
 * no worker owns (the spool of a single-process relay after a switch to N workers, `w3` after a
 * switch from 3 workers to 2) is an orphan: it is adopted, delivered and served by a live worker
 * (see `orphanAssignment`), never left behind.
 */

/** How many workers `workers` means on this machine (`auto`: the cores this process may use). */
export function workerCount(config: Pick<RelayConfig, 'workers'>): number {
  return config.workers === 'auto' ? Math.max(1, os.availableParallelism()) : config.workers;
}

export function shardDir(spoolRoot: string, index: number): string {
  return index === 0 ? spoolRoot : path.join(spoolRoot, `w${index}`);
}

/** Shard indexes present under `spoolRoot` (0 when the root holds messages of its own). */
export function existingShards(spoolRoot: string): number[] {
  let names: string[];
  try {
    names = readdirSync(spoolRoot);
  } catch {
    return [];
  }
  const found = names.flatMap((n) => (/^w([1-9]\d*)$/.exec(n) ? [Number(n.slice(1))] : [])).sort((a, b) => a - b);
  return holdsMessages(spoolRoot) ? [0, ...found] : found;
}

/** True when a spool folder has segments or large messages (an empty one needs no adopter). */
export function holdsMessages(dir: string): boolean {
  const any = (sub: string, ext: string) => {
    const d = path.join(dir, sub);
    return existsSync(d) && readdirSync(d).some((f) => f.endsWith(ext));
  };
  return any('seg', '.seg') || any('queue', '.msg');
}

/**
 * Which worker adopts which orphan shard with `workers` live workers (index 1..workers). Orphans go
 * round-robin by their order, so N → fewer spreads the old shards over the new workers; the
 * assignment is a pure function of the folder listing and N, so a restarted worker adopts the same
 * shards again. With `workers: 1` (no primary) the one relay adopts every `w<i>`.
 */
export function orphanAssignment(shards: readonly number[], workers: number): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (let i = 1; i <= workers; i++) out.set(i, []);
  const orphans = shards.filter((s) => s === 0 || s > workers);
  orphans.forEach((s, k) => out.get((k % workers) + 1)!.push(s));
  return out;
}

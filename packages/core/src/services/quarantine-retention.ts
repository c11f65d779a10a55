import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';

/**
 * Removes quarantined items older than `maxAgeMs` from `dir`: every file sharing an item's base
 * name (`ID.json` with `ID.eml` or `ID.bin`), judged by the `.json` sidecar's modification time.
 * Used by the quarantining plugins (on start and hourly) and by `portcullis quarantine purge`.
 * Returns the ids removed. A missing folder is an empty quarantine.
 */
export async function pruneQuarantine(dir: string, maxAgeMs: number, now = Date.now()): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const f of names) {
    if (!f.endsWith('.json') || f.startsWith('.')) continue;
    const id = f.slice(0, -5);
    const s = await stat(path.join(dir, f)).catch(() => undefined);
    if (!s || now - s.mtimeMs <= maxAgeMs) continue;
    for (const g of names) if (g === f || g.startsWith(`${id}.`)) await rm(path.join(dir, g), { force: true });
    removed.push(id);
  }
  return removed;
}

/** Prunes now and then every hour until `stop()` (the timer never keeps the process alive). */
export function keepQuarantinePruned(dir: string, maxAgeMs: number, onError: (err: unknown) => void): { stop(): void } {
  const run = () => void pruneQuarantine(dir, maxAgeMs).catch(onError);
  run();
  const t = setInterval(run, 3_600_000);
  t.unref();
  return { stop: () => clearInterval(t) };
}

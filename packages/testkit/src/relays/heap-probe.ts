import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitUntil } from '../clients/ports.js';

/** The preload, built beside this file's compiled form (found from src/ under tsx as well). */
const PRELOAD = fileURLToPath(new URL('../../dist/relays/heap-probe-preload.js', import.meta.url));

/**
 * The heap of a relay in its own process, read after a full GC: for leak tests, where the figure
 * must not carry garbage that a collection would free. Start the relay with `env` and `nodeArgs`
 * (they load a preload that answers SIGUSR2 by collecting twice and writing process.memoryUsage()
 * to `file`), then `heapMb(pid)` whenever a reading is due.
 */
export class HeapProbe {
  /** Where the relay writes its reading. */
  readonly file: string;

  constructor(dir: string) {
    this.file = path.join(dir, 'heap.json');
  }

  /** Environment for the relay process. */
  get env(): Record<string, string> {
    return { PORTCULLIS_HEAP_PROBE: this.file };
  }

  /** Node arguments for the relay process: `--expose-gc` (a full GC on demand) and the preload. */
  get nodeArgs(): string[] {
    return ['--expose-gc', '--import', PRELOAD];
  }

  /** `heapUsed` of process `pid` after a full GC, in MB (waits up to 5 s for the reading). */
  async heapMb(pid: number): Promise<number> {
    rmSync(this.file, { force: true });
    process.kill(pid, 'SIGUSR2');
    await waitUntil(() => existsSync(this.file) && readFileSync(this.file, 'utf8').length > 0, 'the heap probe', 5000);
    return (JSON.parse(readFileSync(this.file, 'utf8')) as { heapUsed: number }).heapUsed / 1048576;
  }
}

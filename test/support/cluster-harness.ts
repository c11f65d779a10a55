import cluster, { type Worker } from 'node:cluster';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClusterStateHost, IpcChannel, type WorkerLink } from '@portcullis/core/internal';

const workerFile = path.join(path.dirname(fileURLToPath(import.meta.url)), 'cluster-worker.ts');

export interface HarnessWorker extends WorkerLink {
  readonly id: number;
  readonly worker: Worker;
  readonly channel: IpcChannel;
}

/**
 * A small primary for tests: forks real worker processes with node:cluster (they share one
 * listening port, the kernel hands each accepted connection to one of them round-robin through the
 * primary), holds their shared state in a ClusterStateHost, and frees a worker's slots when it exits.
 * The worker mode's real primary (cluster/) does the same with restarts, reload and the spool.
 */
export class ClusterHarness {
  readonly host = new ClusterStateHost();
  readonly workers = new Map<number, HarnessWorker>();
  readonly spoolDir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-cluster-'));
  /** Leases freed by `detach` when a worker exited, by worker id. */
  readonly freedOnExit = new Map<number, number>();

  private constructor(private readonly config: Record<string, unknown>, private readonly env: Record<string, string>) {}

  /** `env`: extra environment for the workers (PORTCULLIS_WORKER_LOCAL_STATE=1: no state through the primary). */
  static async start(config: Record<string, unknown>, count: number, env: Record<string, string> = {}): Promise<ClusterHarness> {
    const h = new ClusterHarness(config, env);
    cluster.setupPrimary({ exec: workerFile, execArgv: ['--import', 'tsx'], silent: false });
    await Promise.all(Array.from({ length: count }, () => h.fork()));
    return h;
  }

  async fork(): Promise<HarnessWorker> {
    const worker = cluster.fork({ ...this.env, PORTCULLIS_WORKER_CONFIG: JSON.stringify({ ...this.config, spool: { dir: this.spoolDir } }) });
    const channel = new IpcChannel(worker, { timeoutMs: 2000 });
    const link: HarnessWorker = { id: worker.id, worker, channel };
    this.host.attach(channel, worker.id);
    worker.on('error', () => undefined); // a send to an exiting worker: the channel reports it to the caller
    worker.on('exit', () => {
      this.freedOnExit.set(worker.id, this.host.detach(worker.id));
      channel.close();
      this.workers.delete(worker.id);
    });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`worker ${worker.id} not ready within 20 s`)), 20_000);
      worker.once('exit', (code) => reject(new Error(`worker ${worker.id} exited (${code}) before it was ready`)));
      channel.handle('worker.ready', () => {
        clearTimeout(t);
        resolve();
      });
    });
    this.workers.set(worker.id, link);
    return link;
  }

  links(): HarnessWorker[] {
    return [...this.workers.values()];
  }

  /** SIGKILL, as a crash: no goodbye, no release. Resolves once the primary saw it exit. */
  async kill(id: number): Promise<void> {
    const w = this.workers.get(id);
    if (!w) return;
    const exited = new Promise<void>((r) => w.worker.once('exit', () => r()));
    w.worker.process.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.links().map(
        (w) =>
          new Promise<void>((resolve) => {
            const t = setTimeout(() => {
              w.worker.process.kill('SIGKILL');
            }, 10_000);
            w.worker.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
            w.worker.disconnect();
          }),
      ),
    );
    rmSync(this.spoolDir, { recursive: true, force: true });
  }
}

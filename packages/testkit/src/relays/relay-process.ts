import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connects, Daemon, removeDir, tempDir } from '../servers/daemon.js';
import { waitUntil } from '../clients/ports.js';

/**
 * The built CLI of this monorepo (`packages/cli/dist/main.js`, a sibling of this package, from src/ or
 * dist/ alike); PORTCULLIS_CLI overrides it. Found by path, not imported: the CLI depends on the test kit.
 */
const CLI = process.env['PORTCULLIS_CLI'] ?? fileURLToPath(new URL('../../../cli/dist/main.js', import.meta.url));

/**
 * A relay in its own process (`portcullis start`), as an operator runs it: its memory can be
 * measured apart from the test's clients, and several can share one Redis.
 */
export class RelayProcess {
  private daemon?: Daemon;
  private constructor(readonly dir: string, readonly port: number) {}

  /** What the relay wrote to stdout and stderr. */
  get output(): string {
    return this.daemon?.output ?? '';
  }

  /** Writes `config` (JSON is YAML) with a spool in a temp folder, starts the relay, waits for `port`. */
  static async start(config: Record<string, unknown>, port: number): Promise<RelayProcess> {
    const dir = tempDir('portcullis-node-');
    writeFileSync(path.join(dir, 'relay.yaml'), JSON.stringify({ spool: { dir: './spool' }, ...config }, null, 2));
    const r = new RelayProcess(dir, port);
    try {
      r.daemon = await Daemon.start({ name: 'relay', command: process.execPath, args: [CLI, 'start', '--config', path.join(dir, 'relay.yaml')], ready: () => connects(port), readyMs: 20_000, pollMs: 50, killAfterMs: 10_000 });
    } catch (err) {
      removeDir(dir);
      throw err;
    }
    return r;
  }

  /**
   * `count` relays (`node1.test`, `node2.test`, ...) that share state through one Redis (`url`, keys
   * under `keyPrefix`, a 500 ms command timeout) and run `plugins`, each on a free port given by
   * `ports()`, logging at info; resolves once every node has logged "Redis connected". For the
   * cluster tests of stateful plugins (limits, recipients, greylist, ...). If one fails to start, the
   * ones already started are stopped.
   */
  static async sharingRedis(o: { count: number; url: string; keyPrefix: string; plugins: unknown[]; ports: () => Promise<number> }): Promise<RelayProcess[]> {
    const nodes: RelayProcess[] = [];
    try {
      for (let i = 0; i < o.count; i++) {
        const port = await o.ports();
        nodes.push(
          await RelayProcess.start(
            {
              hostname: `node${i + 1}.test`,
              listen: [{ host: '127.0.0.1', port, greetingDelay: 0 }],
              sharedState: { redis: { url: o.url, keyPrefix: o.keyPrefix, timeout: '500ms' } },
              log: { level: 'info' },
              plugins: o.plugins,
            },
            port,
          ),
        );
      }
      await waitUntil(() => nodes.every((n) => n.output.includes('Redis connected')), `all ${o.count} nodes connected to Redis`, 10_000);
    } catch (err) {
      for (const n of nodes) await n.stop();
      throw err;
    }
    return nodes;
  }

  get pid(): number {
    return this.daemon!.pid!;
  }

  /** Peak resident memory (VmHWM) of the relay process, in MB. */
  peakRssMb(): number {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  }

  /** Log lines (JSON) the relay wrote so far. */
  lines(): Array<Record<string, unknown>> {
    return this.output
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** SIGTERM (SIGKILL after 10 s), then the temp folder is removed. */
  async stop(): Promise<void> {
    await this.daemon?.stop();
    removeDir(this.dir);
  }
}

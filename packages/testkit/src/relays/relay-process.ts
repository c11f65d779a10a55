import { spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connects, Daemon, removeDir, tempDir } from '../servers/daemon.js';
import { waitUntil } from '../clients/ports.js';

/**
 * The built CLI of this monorepo (`packages/cli/dist/main.js`, a sibling of this package, from src/ or
 * dist/ alike); PORTCULLIS_CLI overrides it. Found by path, not imported: the CLI depends on the test kit.
 */
export const CLI = process.env['PORTCULLIS_CLI'] ?? fileURLToPath(new URL('../../../cli/dist/main.js', import.meta.url));

/** How a relay process is run besides its config file and port. */
/** What a `portcullis` command printed, and its exit code (null when it was killed). */
export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `portcullis ARGS` (the built CLI) to its end, with `env` added to this process's environment; at most `timeoutMs`. */
export function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 90_000): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The JSON lines of a relay's log file (other lines skipped), parsed. */
export function jsonLogLines(file: string): Array<Record<string, unknown>> {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

export interface RelayProcessOptions {
  /** Every byte the relay writes to stdout and stderr is appended here too (kept across restarts). */
  readonly logFile?: string;
  /** Extra environment for each start (e.g. PORTCULLIS_CRASH_AT for the crash-point tests); may be replaced between starts. */
  env?: Record<string, string>;
  /** Node options before the CLI (e.g. `--expose-gc`, `--import` of a test probe). */
  readonly nodeArgs?: readonly string[];
  /** How long start-up may take (the worker mode's primary validates the config before forking); 60 s unless told. */
  readonly readyMs?: number;
  /** Grace after SIGTERM in `stop()` before SIGKILL; 15 s unless told. */
  readonly killAfterMs?: number;
  /** The CLI to run instead of this monorepo's (`CLI`): an example runs the one it depends on, as its users would. */
  readonly cli?: string;
}

/**
 * A relay in its own process (`portcullis start --config F`), as an operator runs it: its memory can
 * be measured apart from the test's clients, several can share one Redis, and it can be stopped,
 * killed (a crash) and started again on the same config and spool.
 */
export class RelayProcess {
  private daemon?: Daemon;
  private process?: ChildProcess;
  /** The folder `RelayProcess.start` made for the config and spool, removed by `stop()`. */
  private ownDir?: string;

  /** A relay on `configFile` listening on `port`, not started yet (`start()`). */
  constructor(readonly configFile: string, readonly port: number, readonly options: RelayProcessOptions = {}) {}

  /** Writes `config` as `portcullis.json` in `dir` and returns its path. */
  static write(dir: string, config: object): string {
    const file = path.join(dir, 'portcullis.json');
    writeFileSync(file, JSON.stringify(config, null, 2));
    return file;
  }

  /**
   * Writes `config` (JSON is YAML) with a spool in a temp folder, starts the relay, waits for `port`;
   * `stop()` removes the folder.
   */
  static async start(config: Record<string, unknown>, port: number): Promise<RelayProcess> {
    const dir = tempDir('portcullis-node-');
    const file = path.join(dir, 'relay.yaml');
    writeFileSync(file, JSON.stringify({ spool: { dir: './spool' }, ...config }, null, 2));
    const r = new RelayProcess(file, port, { readyMs: 20_000, killAfterMs: 10_000 });
    r.ownDir = dir;
    try {
      await r.start();
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

  /** The file the relay's output is appended to (`options.logFile`). */
  get logFile(): string {
    if (!this.options.logFile) throw new Error('this RelayProcess was made without a logFile');
    return this.options.logFile;
  }

  /** Extra environment for the next `start()`. */
  get env(): Record<string, string> {
    return this.options.env ?? {};
  }

  set env(env: Record<string, string>) {
    this.options.env = env;
  }

  /** Starts the relay (again, after `stop()` or `kill()`: same config and spool) and waits for its port. */
  async start(): Promise<void> {
    // The log file exists from the start (tests read it before the relay has written anything).
    if (this.options.logFile) appendFileSync(this.options.logFile, '');
    this.daemon = await Daemon.start({
      name: 'relay',
      command: process.execPath,
      args: [...(this.options.nodeArgs ?? []), this.options.cli ?? CLI, 'start', '--config', this.configFile],
      env: this.env,
      ready: () => connects(this.port),
      readyMs: this.options.readyMs ?? 60_000,
      pollMs: 50,
      killAfterMs: this.options.killAfterMs ?? 15_000,
      ...(this.options.logFile ? { logFile: this.options.logFile } : {}),
      onSpawn: (child) => (this.process = child),
    });
  }

  /** What the relay wrote to stdout and stderr since its last start. */
  get output(): string {
    return this.daemon?.output ?? '';
  }

  get pid(): number {
    return this.daemon!.pid!;
  }

  /** True while the last started process has not exited. */
  get running(): boolean {
    return this.daemon?.running ?? false;
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

  /** Resolves when the process has exited (by itself: a crash point); at once if it is not running. */
  exited(): Promise<void> {
    return this.daemon?.exited() ?? Promise.resolve();
  }

  /** SIGKILL: no chance to flush or clean up, like a power cut for the process. */
  async kill(): Promise<void> {
    await this.daemon?.kill();
  }

  /**
   * SIGTERM (SIGKILL after `killAfterMs`); resolves with the exit code (null after a signal, or when
   * it never started). A relay made by `RelayProcess.start` also loses its temp folder.
   */
  async stop(): Promise<number | null> {
    await this.daemon?.stop();
    if (this.ownDir) removeDir(this.ownDir);
    return this.process?.exitCode ?? null;
  }
}

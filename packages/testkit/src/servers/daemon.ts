import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** How to run one daemon for a test; the daemon's own config files are the caller's business. */
export interface DaemonSpec {
  /** Names the daemon in errors. */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  /** Added to the test's environment. */
  readonly env?: NodeJS.ProcessEnv;
  /**
   * Answers true once the daemon serves (a PING, an HTTP /ping, or just a connect: `connects`).
   * A rejection counts as "not yet".
   */
  readonly ready: () => Promise<boolean>;
  /** How long start-up may take before the daemon is stopped and start fails. */
  readonly readyMs: number;
  /** Pause between two `ready` probes; 100 ms unless told. */
  readonly pollMs?: number;
  /** Grace after SIGTERM before SIGKILL; 5 s unless told. */
  readonly killAfterMs?: number;
  /** Every byte the daemon writes to stdout and stderr is appended here too (kept after it exits). */
  readonly logFile?: string;
  /** Called with each chunk of output (a helper that keeps a log across restarts). */
  readonly onOutput?: (text: string) => void;
  /** More text for a start-up error, e.g. the tail of the daemon's own log file. */
  readonly diagnostics?: () => string;
  /** Handed the child process as soon as it is spawned (a caller that tracks its children to kill them on a signal). */
  readonly onSpawn?: (child: ChildProcess) => void;
}

/**
 * A real daemon started by a test as a child process in the foreground: its output kept, started
 * when `ready` holds (bounded by a deadline, failing early if it exits), stopped by pid with SIGTERM
 * then SIGKILL, and killed if the test process exits first so no daemon outlives a run.
 */
export class Daemon {
  /** Everything the daemon wrote to stdout and stderr since this start. */
  output = '';
  private constructor(readonly spec: DaemonSpec, private readonly child: ChildProcess) {
    const take = (d: Buffer | string) => {
      const text = d.toString();
      this.output += text;
      spec.onOutput?.(text);
      if (spec.logFile) appendFileSync(spec.logFile, text);
    };
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    child.on('error', (err) => take(`spawn error: ${err.message}\n`));
    killAtExit(child);
  }

  /** Spawns the daemon and resolves once `ready` holds; stops it and rejects with its output if not by the deadline. */
  static async start(spec: DaemonSpec): Promise<Daemon> {
    const child = spawn(spec.command, [...spec.args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...spec.env } });
    spec.onSpawn?.(child);
    const d = new Daemon(spec, child);
    const deadline = Date.now() + spec.readyMs;
    while (Date.now() < deadline) {
      if (!d.running) throw new Error(`${spec.name} exited with ${child.exitCode ?? child.signalCode}: ${d.details()}`);
      if (await spec.ready().catch(() => false)) return d;
      await new Promise((r) => setTimeout(r, spec.pollMs ?? 100));
    }
    await d.stop();
    throw new Error(`${spec.name} did not answer within ${spec.readyMs / 1000} s: ${d.details()}`);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves when the daemon has exited (at once if it has). */
  exited(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => this.child.once('exit', () => resolve()));
  }

  /** SIGTERM, then SIGKILL after `killAfterMs`; resolves when the process has exited. */
  async stop(): Promise<void> {
    if (!this.running) return;
    const gone = this.exited();
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), this.spec.killAfterMs ?? 5_000);
    await gone;
    clearTimeout(t);
  }

  /** SIGKILL at once (no chance to save state, like a crash); resolves when the process has exited. */
  async kill(): Promise<void> {
    if (!this.running) return;
    const gone = this.exited();
    this.child.kill('SIGKILL');
    await gone;
  }

  private details(): string {
    const more = this.spec.diagnostics?.();
    return more ? `${this.output}\n${more}` : this.output;
  }
}

const live = new Set<ChildProcess>();
let exitHooked = false;

/** One 'exit' listener for all daemons (not one each: a suite starts dozens), killing those still running. */
function killAtExit(child: ChildProcess): void {
  if (!exitHooked) {
    exitHooked = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  live.add(child);
  child.once('exit', () => live.delete(child));
}

/** A fresh folder under the OS temp dir for one daemon's config, data and logs (`removeDir` when done). */
export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** True once something accepts a connection on 127.0.0.1:`port`, or on the unix socket `{ path }`. */
export function connects(target: number | { path: string }, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = typeof target === 'number' ? net.connect({ port: target, host }) : net.connect({ path: target.path });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

/**
 * The base of a plugin's helper for one real daemon (clamd, spamd, rspamd, slapd, ...): a temp
 * folder of its own and the running `Daemon`. The subclass writes the daemon's config into `dir`
 * and says how to run it (`spec()`); start, stop, restart and clean-up are the same for all.
 */
export abstract class TestDaemon {
  readonly dir: string;
  protected daemon?: Daemon;

  protected constructor(dirPrefix: string) {
    this.dir = tempDir(dirPrefix);
  }

  /** How to run the daemon on the config in `dir` (called at each start). */
  protected abstract spec(): DaemonSpec;

  /** What the daemon wrote to stdout and stderr since its last start. */
  get output(): string {
    return this.daemon?.output ?? '';
  }

  protected async launch(): Promise<void> {
    this.daemon = await Daemon.start(this.spec());
  }

  /** SIGTERM, then SIGKILL; resolves when it has exited (its folder stays, for a restart). */
  async stop(): Promise<void> {
    await this.daemon?.stop();
  }

  /** Starts it again with the same config, port and socket. */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  /** Stops it and removes its folder. */
  async close(): Promise<void> {
    await this.stop();
    removeDir(this.dir);
  }
}

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The built CLI, as users run it. */
export const CLI = path.resolve(here, '../../packages/cli/dist/main.js');

export { freePort, waitForPort } from '@portcullis/testkit';
import { waitForPort } from '@portcullis/testkit';

/** `portcullis start --config F` as a child process, its logs appended to `logFile`. */
export class RelayProcess {
  child?: ChildProcess;
  /**
   * `env`: extra environment for the next start() (PORTCULLIS_CRASH_AT for the crash-point tests).
   * `nodeArgs` go before the CLI (e.g. `--expose-gc`, `--import` of a test probe).
   */
  constructor(readonly configFile: string, readonly port: number, readonly logFile: string, public env: Record<string, string> = {}, readonly nodeArgs: readonly string[] = []) {}

  static write(dir: string, config: object): string {
    const file = path.join(dir, 'portcullis.json');
    writeFileSync(file, JSON.stringify(config, null, 2));
    return file;
  }

  async start(): Promise<void> {
    const log = createWriteStream(this.logFile, { flags: 'a' });
    this.child = spawn(process.execPath, [...this.nodeArgs, CLI, 'start', '--config', this.configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...this.env } });
    this.child.stdout!.pipe(log);
    this.child.stderr!.pipe(log);
    // A loaded machine (and the worker mode's primary, which validates the config before forking) can take a while.
    await waitForPort(this.port, '127.0.0.1', 60_000);
  }

  /** Resolves when the process has exited (by itself: a crash point). */
  exited(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
    return new Promise((r) => c.once('exit', () => r()));
  }

  /** SIGKILL: no chance to flush or clean up, like a power cut for the process. */
  async kill(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<number | null> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return c?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => c.once('exit', (code) => r(code)));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 15_000);
    const code = await exited;
    clearTimeout(t);
    return code;
  }
}

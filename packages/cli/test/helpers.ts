import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const cliDir = path.resolve(here, '..');
/** The built command, as users run it. */
export const cliMain = path.join(cliDir, 'dist', 'main.js');
export const sampleConfig = path.join(cliDir, 'examples', 'relay.yaml');

export function assertBuilt(): void {
  if (!existsSync(cliMain)) throw new Error(`${cliMain} is missing: build first (cd to the repository root and run npx tsc -b packages/cli)`);
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A running `portcullis` child process, its output collected as it comes. */
export class Cli {
  stdout = '';
  stderr = '';
  exited?: Exit;
  private readonly exitPromise: Promise<Exit>;
  private readonly waiters = new Set<() => void>();

  constructor(readonly child: ChildProcess) {
    child.stdout!.setEncoding('utf8').on('data', (d: string) => ((this.stdout += d), this.notify()));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => ((this.stderr += d), this.notify()));
    this.exitPromise = new Promise((resolve) => {
      child.on('close', (code, signal) => {
        this.exited = { code, signal };
        this.notify();
        resolve(this.exited);
      });
    });
  }

  private notify(): void {
    for (const w of this.waiters) w();
  }

  /** Resolves when `test` holds on the output so far; rejects on timeout or if the process exits first. */
  async waitFor<T>(what: string, test: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = test();
      if (v) return v;
      if (this.exited) throw new Error(`portcullis exited (${JSON.stringify(this.exited)}) before ${what}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        const done = () => (clearTimeout(t), this.waiters.delete(done), resolve());
        const t = setTimeout(done, left);
        this.waiters.add(done);
      });
    }
  }

  /** The JSON log lines written to `stream` so far. */
  logs(stream: 'stdout' | 'stderr' = 'stdout'): Array<Record<string, unknown>> {
    return this[stream]
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** Waits for the `ready` log line and returns the first listener's port. */
  async readyPort(stream: 'stdout' | 'stderr' = 'stdout'): Promise<number> {
    const ready = await this.waitFor('the ready log line', () => this.logs(stream).find((l) => l['msg'] === 'ready'));
    return (ready['listeners'] as Array<{ port: number }>)[0]!.port;
  }

  kill(signal: NodeJS.Signals): void {
    if (!this.exited) this.child.kill(signal);
  }

  /** Resolves with the exit status; rejects if the process is still running after `timeoutMs`. */
  async waitExit(timeoutMs = 10_000): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`portcullis still running after ${timeoutMs} ms\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exitPromise, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

const running = new Set<Cli>();

/** Starts `node dist/main.js ...args`. Every process started here is killed by `killAll()`. */
export function startCli(args: string[], opts: { cwd?: string } = {}): Cli {
  assertBuilt();
  const child = spawn(process.execPath, [cliMain, ...args], { cwd: opts.cwd ?? cliDir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  const cli = new Cli(child);
  running.add(cli);
  void cli.waitExit(3_600_000).then(() => running.delete(cli), () => undefined);
  return cli;
}

/** Runs the command to its end. */
export async function runCli(args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<Exit & { stdout: string; stderr: string }> {
  const cli = startCli(args, opts);
  const exit = await cli.waitExit(opts.timeoutMs ?? 15_000);
  return { ...exit, stdout: cli.stdout, stderr: cli.stderr };
}

/** SIGKILLs every child still running (call from afterEach: tests clean up even when they fail). */
export async function killAll(): Promise<void> {
  const left = [...running];
  for (const c of left) c.kill('SIGKILL');
  await Promise.all(left.map((c) => c.waitExit(5_000).catch(() => undefined)));
}

process.on('exit', () => {
  for (const c of running) c.child.kill('SIGKILL');
});

export { freePort } from '@portcullis/testkit';

/** Whether something accepts TCP connections on the port. */
export function isListening(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

/** A temp folder for one test; `cleanup()` removes every folder made here. */
const dirs: string[] = [];
export function tempDir(prefix = 'portcullis-cli-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}
export function cleanupDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Writes `text` to `<dir>/<name>` and returns the absolute path. */
export function writeConfig(dir: string, name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

/**
 * The config most CLI tests run: one loopback listener without greeting pause, a spool in the
 * config's folder, relay-policy hosting `domains` (domain → next hop, plain text), then `more`
 * plugin entries (YAML list items) and any `extra` top-level YAML before `plugins:`.
 */
export function relayYaml(port: number, domains: Record<string, string>, opts: { extra?: string; more?: string } = {}): string {
  const hosted = Object.entries(domains)
    .map(([d, hop]) => `${d}: { nexthop: "${hop}", tls: none }`)
    .join(', ');
  return `hostname: relay.test
listen: [{ host: 127.0.0.1, port: ${port}, greetingDelay: 0 }]
spool: { dir: ./spool }
${opts.extra ?? ''}plugins:
  - use: relay-policy
    with: { domains: { ${hosted} } }
${opts.more ?? ''}`;
}

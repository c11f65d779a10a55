import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitForPort } from './ports.js';

/**
 * The built CLI of this monorepo (`packages/cli/dist/main.js`, a sibling of this package, from src/ or
 * dist/ alike); PORTCULLIS_CLI overrides it. Found by path, not imported: the CLI depends on the test kit.
 */
const CLI = process.env['PORTCULLIS_CLI'] ?? fileURLToPath(new URL('../../cli/dist/main.js', import.meta.url));

/**
 * A relay in its own process (`portcullis start`), as an operator runs it: its memory can be
 * measured apart from the test's clients, and several can share one Redis.
 */
export class RelayProcess {
  private child?: ChildProcess;
  output = '';
  private constructor(readonly dir: string, readonly port: number) {}

  /** Writes `config` (JSON is YAML) with a spool in a temp folder, starts the relay, waits for `port`. */
  static async start(config: Record<string, unknown>, port: number): Promise<RelayProcess> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-node-'));
    writeFileSync(path.join(dir, 'relay.yaml'), JSON.stringify({ spool: { dir: './spool' }, ...config }, null, 2));
    const r = new RelayProcess(dir, port);
    r.child = spawn(process.execPath, [CLI, 'start', '--config', path.join(dir, 'relay.yaml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    r.child.stdout!.on('data', (d: Buffer) => (r.output += d.toString()));
    r.child.stderr!.on('data', (d: Buffer) => (r.output += d.toString()));
    process.once('exit', () => r.child?.kill('SIGKILL'));
    try {
      await waitForPort(port, '127.0.0.1', 20_000);
    } catch (err) {
      await r.stop();
      throw new Error(`relay did not start: ${(err as Error).message}\n${r.output}`);
    }
    return r;
  }

  get pid(): number {
    return this.child!.pid!;
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

  async stop(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        child.once('exit', () => (clearTimeout(t), resolve()));
        child.kill('SIGTERM');
      });
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { waitForPort } from './ports.js';

const BINARY = process.env['REDIS_SERVER_BIN'] ?? '/usr/bin/redis-server';

/**
 * Debian's redis-server on 127.0.0.1 and a port of the test's choosing, in memory only (no RDB, no
 * AOF), so a restart comes back empty, like a Redis that lost its state.
 */
export class RedisServer {
  private child?: ChildProcess;
  output = '';
  private constructor(readonly port: number) {}

  static async start(port: number): Promise<RedisServer> {
    if (!existsSync(BINARY)) throw new Error(`redis-server not found at ${BINARY}: install Debian's redis-server (scripts/system-deps.sh)`);
    const r = new RedisServer(port);
    await r.launch();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  private async launch(): Promise<void> {
    this.output = '';
    this.child = spawn(BINARY, ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes', '--daemonize', 'no', '--dir', '/tmp'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => (this.output += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()));
    process.once('exit', () => this.child?.kill('SIGKILL'));
    await waitForPort(this.port, '127.0.0.1', 10_000);
  }

  /** Stops the server (its data is gone). */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  /** Starts it again on the same port. */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }
}

import { existsSync } from 'node:fs';
import { connects, Daemon } from './daemon.js';

const BINARY = process.env['REDIS_SERVER_BIN'] ?? '/usr/bin/redis-server';

/**
 * Debian's redis-server on 127.0.0.1 and a port of the test's choosing, in memory only (no RDB, no
 * AOF), so a restart comes back empty, like a Redis that lost its state.
 */
export class RedisServer {
  private daemon?: Daemon;
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

  /** What redis-server wrote since its last start. */
  get output(): string {
    return this.daemon?.output ?? '';
  }

  private async launch(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes', '--daemonize', 'no', '--dir', '/tmp'];
    this.daemon = await Daemon.start({ name: 'redis-server', command: BINARY, args, ready: () => connects(this.port), readyMs: 10_000, pollMs: 50 });
  }

  /** Stops the server with SIGKILL (its data is gone, as after a crash). */
  async stop(): Promise<void> {
    await this.daemon?.kill();
  }

  /** Starts it again on the same port. */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }
}

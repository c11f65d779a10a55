import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * The EICAR test string, assembled at run time from pieces so the repository never carries it
 * verbatim (scanners on developer machines and CI would flag the source file otherwise).
 */
export function eicar(): string {
  return ['X5O!P%@AP[4\\PZX54(P^)7CC)7}$', 'EIC', 'AR-STANDARD-ANTIVIRUS-', 'TEST-FILE!$H+H*'].join('');
}

export interface ClamdOptions {
  /** Largest stream clamd accepts (StreamMaxLength), e.g. `1M`. */
  readonly streamMaxLength?: string;
  readonly clamdPath?: string;
}

/**
 * Debian's real clamd, started as a child process on loopback with a generated clamd.conf and a
 * database holding one signature (EICAR, written by the test as an .ndb line). Nothing here
 * depends on a system clamd or on downloaded signatures.
 */
export class Clamd {
  readonly dir: string;
  readonly socketPath: string;
  port = 0;
  private child?: ChildProcess;
  private stderr = '';

  private constructor(private readonly opts: ClamdOptions) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-clamd-'));
    this.socketPath = path.join(this.dir, 'clamd.sock');
  }

  static async start(opts: ClamdOptions = {}): Promise<Clamd> {
    const c = new Clamd(opts);
    c.port = await freePort();
    c.writeConfig();
    await c.launch();
    return c;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  private writeConfig(): void {
    const db = path.join(this.dir, 'db');
    const tmp = path.join(this.dir, 'tmp');
    mkdirSync(db, { recursive: true });
    mkdirSync(tmp, { recursive: true });
    const hex = Buffer.from(eicar(), 'latin1').toString('hex');
    writeFileSync(path.join(db, 'test.ndb'), `Eicar-Test-Signature:0:*:${hex}\n`);
    const lines = [
      'Foreground yes',
      `TCPSocket ${this.port}`,
      'TCPAddr 127.0.0.1',
      `LocalSocket ${this.socketPath}`,
      `DatabaseDirectory ${db}`,
      `TemporaryDirectory ${tmp}`,
      `PidFile ${path.join(this.dir, 'clamd.pid')}`,
      `LogFile ${path.join(this.dir, 'clamd.log')}`,
      'LogTime yes',
      `StreamMaxLength ${this.opts.streamMaxLength ?? '2M'}`,
      'ScanArchive yes',
      'ScanMail yes',
      'MaxRecursion 10',
      'SelfCheck 0',
      'Bytecode no',
    ];
    // As root, clamd would otherwise switch to the `clamav` user, who may not read our temp dir.
    if (process.getuid?.() === 0) lines.push('User root');
    writeFileSync(path.join(this.dir, 'clamd.conf'), lines.join('\n') + '\n');
  }

  private async launch(): Promise<void> {
    this.stderr = '';
    const child = spawn(this.opts.clamdPath ?? '/usr/sbin/clamd', ['--config-file', path.join(this.dir, 'clamd.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`clamd exited with ${child.exitCode}: ${this.stderr}`);
      if ((await command(this.port, 'PING').catch(() => '')) === 'PONG') return;
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.stop();
    throw new Error(`clamd did not answer PING within 30 s: ${this.stderr}`);
  }

  /** Stops clamd (SIGTERM, then SIGKILL) and waits until it has exited and its port is closed. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }

  /** Starts clamd again on the same port and socket. */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  /** Stops clamd and removes its folder. */
  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Sends one clamd command (`PING`, `VERSION`) and returns the reply without its terminator. */
export function command(port: number, cmd: string, timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let out = '';
    const timer = setTimeout(() => (s.destroy(), reject(new Error('clamd command timed out'))), timeoutMs);
    s.on('connect', () => s.write(`z${cmd}\0`));
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('error', (e) => (clearTimeout(timer), reject(e)));
    s.on('close', () => (clearTimeout(timer), resolve(out.replace(/\0$/, '').trim())));
  });
}

import { freePort } from '@portcullis/testkit';
export { freePort } from '@portcullis/testkit';

/**
 * A "clamd" that accepts connections, reads whatever is sent and never answers: a hang the real
 * clamd cannot be made to produce on demand, so this one fault is simulated.
 */
export async function startSilentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('data', () => undefined);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      srv.close(() => resolve());
    }),
  };
}

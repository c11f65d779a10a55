import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { freePort, waitForPort } from '@portcullis/testkit';

export const SUPPORT = path.dirname(fileURLToPath(import.meta.url));

/** A real daemon started for a test, on a loopback port, stopped (SIGTERM, then SIGKILL) in `after`. */
export class Daemon {
  output = '';
  private constructor(
    readonly port: number,
    private readonly child: ChildProcess,
  ) {
    child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.on('error', (err) => (this.output += `spawn error: ${err.message}\n`));
  }

  static async start(cmd: string, args: (port: number) => string[], opts: { port?: number; socket?: string; env?: NodeJS.ProcessEnv; waitMs?: number } = {}): Promise<Daemon> {
    const port = opts.socket ? 0 : (opts.port ?? (await freePort()));
    const child = spawn(cmd, args(port), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
    const d = new Daemon(port, child);
    d.socket = opts.socket;
    try {
      if (opts.socket) await waitForSocket(opts.socket, opts.waitMs ?? 20_000);
      else await waitForPort(port, '127.0.0.1', opts.waitMs ?? 20_000);
    } catch (err) {
      child.kill('SIGKILL');
      throw new Error(`${cmd} did not start: ${(err as Error).message}\n${d.output}`);
    }
    return d;
  }

  /** The modification milter of these tests (pymilter, Debian's python3-milter): on a port, or a unix socket. */
  static pyMilter(opts: { socket?: string; noreply?: boolean; reporter?: boolean } = {}): Promise<Daemon> {
    const extra = opts.noreply ? ['noreply'] : opts.reporter ? ['reporter'] : [];
    return Daemon.start('/usr/bin/python3', (p) => [path.join(SUPPORT, 'mod-milter.py'), opts.socket ?? String(p), ...extra], { socket: opts.socket });
  }

  socket?: string;

  get address(): string {
    return this.socket ? `unix:${this.socket}` : `inet:127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await gone;
    clearTimeout(t);
  }
}

/** Resolves once something accepts connections on the unix socket `file`. */
async function waitForSocket(file: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ path: file }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${file} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A fake milter for faults a real one cannot be made to produce on demand (a malformed packet
 * after a correct negotiation, an answer that never comes at a chosen stage): it negotiates like
 * libmilter, answers `continue` to everything, and at the stage named misbehaves.
 */
export async function faultyMilter(fault: { at: string; send?: Buffer; silent?: boolean; version?: number }): Promise<{ address: string; close(): Promise<void>; connections: number; commands: string[] }> {
  const sockets = new Set<net.Socket>();
  const state = { connections: 0 };
  const commands: string[] = [];
  const server = net.createServer((s) => {
    state.connections++;
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    let buf = Buffer.alloc(0);
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const len = buf.readUInt32BE(0);
        const cmd = String.fromCharCode(buf[4]!);
        buf = buf.subarray(4 + len);
        commands.push(cmd);
        if (cmd === 'D' || cmd === 'A' || cmd === 'Q') continue; // no answer expected
        if (cmd === fault.at) {
          if (fault.send) s.write(fault.send);
          if (fault.silent || fault.send) continue;
        }
        if (cmd === 'O') {
          const o = Buffer.alloc(17);
          o.writeUInt32BE(13, 0);
          o.write('O', 4);
          o.writeUInt32BE(fault.version ?? 6, 5);
          o.writeUInt32BE(0x3f, 9);
          o.writeUInt32BE(0, 13);
          s.write(o);
          continue;
        }
        const reply = cmd === 'E' ? 'a' : 'c';
        s.write(Buffer.from([0, 0, 0, 1, reply.charCodeAt(0)]));
      }
    });
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    address: `inet:127.0.0.1:${port}`,
    commands,
    get connections() {
      return state.connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

import net from 'node:net';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { connects, Daemon as TestkitDaemon, freePort } from '@portcullis/testkit';

export const SUPPORT = path.dirname(fileURLToPath(import.meta.url));

/** A real daemon started for a test, on a loopback port, stopped (SIGTERM, then SIGKILL) in `after`. */
export class Daemon {
  private constructor(
    readonly port: number,
    private readonly proc: TestkitDaemon,
  ) {}

  /** What the daemon wrote to stdout and stderr. */
  get output(): string {
    return this.proc.output;
  }

  static async start(cmd: string, args: (port: number) => string[], opts: { port?: number; socket?: string; env?: NodeJS.ProcessEnv; waitMs?: number } = {}): Promise<Daemon> {
    const port = opts.socket ? 0 : (opts.port ?? (await freePort()));
    const socket = opts.socket;
    const p = await TestkitDaemon.start({ name: cmd, command: cmd, args: args(port), env: opts.env, ready: () => connects(socket ? { path: socket } : port), readyMs: opts.waitMs ?? 20_000, pollMs: 50, killAfterMs: 3000 });
    const d = new Daemon(port, p);
    d.socket = socket;
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
    await this.proc.stop();
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

import { spawn } from 'node:child_process';
import net from 'node:net';

/** What the tiny server does with one request: answer an action, or misbehave. */
export type Behaviour = { action: string } | { raw: string } | 'hang' | 'close';

/**
 * A policy server written for the tests: for the answers postgrey never gives (REJECT, 5xx, PREPEND
 * of our choosing, HOLD, garbage, silence, a closed connection) and to see exactly what the relay
 * sends. It speaks the protocol as SMTPD_POLICY_README describes it; it is a fake only in that its
 * answers are scripted.
 */
export class TinyPolicyServer {
  readonly requests: Array<Map<string, string>> = [];
  connections = 0;
  /** Connections the relay (or the server) has closed. */
  closed = 0;
  /** Close each connection after one answer (like postgrey --exim). */
  closeAfterAnswer = false;
  private readonly sockets = new Set<net.Socket>();

  private constructor(private readonly server: net.Server, public behave: (req: Map<string, string>, nth: number) => Behaviour) {}

  /** `behave` gets each request and its number on its connection (1 for the first). */
  static async start(behave: (req: Map<string, string>, nth: number) => Behaviour, listen: { port?: number; path?: string } = {}): Promise<TinyPolicyServer> {
    let self: TinyPolicyServer | undefined;
    const server = net.createServer((socket) => self!.serve(socket));
    self = new TinyPolicyServer(server, behave);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (listen.path) server.listen(listen.path, resolve);
      else server.listen(listen.port ?? 0, '127.0.0.1', resolve);
    });
    return self;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  get address(): string {
    return `inet:127.0.0.1:${this.port}`;
  }

  private serve(socket: net.Socket): void {
    this.connections++;
    this.sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed++;
      this.sockets.delete(socket);
    });
    let buf = '';
    let nth = 0;
    socket.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      for (let end = buf.indexOf('\n\n'); end >= 0; end = buf.indexOf('\n\n')) {
        const req = new Map<string, string>();
        for (const line of buf.slice(0, end).split('\n')) {
          const eq = line.indexOf('=');
          req.set(line.slice(0, eq), line.slice(eq + 1));
        }
        buf = buf.slice(end + 2);
        this.requests.push(req);
        const b = this.behave(req, ++nth);
        if (b === 'hang') continue;
        if (b === 'close') {
          socket.destroy();
          return;
        }
        socket.write('raw' in b ? b.raw : `action=${b.action}\n\n`);
        if (this.closeAfterAnswer) socket.end();
      }
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/**
 * Debian's policyd-spf speaks the protocol on stdin/stdout (Postfix spawns it per connection); this
 * listens on loopback and does the same: one policyd-spf process per connection, the socket piped
 * to it both ways.
 */
export async function startSpawnedPolicyd(command: string, args: string[] = []): Promise<{ address: string; close(): Promise<void> }> {
  const children = new Set<ReturnType<typeof spawn>>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'ignore'] });
    children.add(child);
    socket.on('error', () => undefined);
    child.on('error', () => socket.destroy());
    child.stdin!.on('error', () => undefined);
    child.stdout!.on('error', () => undefined);
    socket.pipe(child.stdin!);
    child.stdout!.pipe(socket);
    child.on('exit', () => {
      children.delete(child);
      socket.destroy();
    });
    socket.on('close', () => {
      sockets.delete(socket);
      child.kill('SIGTERM');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    address: `inet:127.0.0.1:${port}`,
    async close() {
      for (const s of sockets) s.destroy();
      for (const c of children) c.kill('SIGKILL');
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

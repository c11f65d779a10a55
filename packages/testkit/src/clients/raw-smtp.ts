import net from 'node:net';
import tls from 'node:tls';

/**
 * A line-level SMTP client for tests that must send exactly the bytes they mean (bare LF,
 * pipelining, smuggling attempts) and read every reply. Binds to `localAddress` so a test can play
 * a trusted or an untrusted client (127.0.0.2, 127.0.0.3, ...).
 */
export class RawSmtp {
  private buffer = '';
  private readonly replies: string[] = [];
  private waiter?: () => void;
  private closed = false;

  private constructor(private socket: net.Socket) {
    this.attach(socket);
  }

  private attach(socket: net.Socket): void {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.buffer += d.toString('latin1');
      let i: number;
      // A reply ends at a line whose 4th char is a space ("250 ok"), not a dash ("250-...").
      while ((i = this.buffer.indexOf('\r\n')) >= 0) {
        const line = this.buffer.slice(0, i);
        this.buffer = this.buffer.slice(i + 2);
        this.pending.push(line);
        if (line.length < 4 || line[3] !== '-') {
          this.replies.push(this.pending.join('\n'));
          this.pending = [];
        }
      }
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    socket.on('error', () => undefined);
  }
  private pending: string[] = [];

  /**
   * Upgrades to TLS after a `220` to STARTTLS. Bytes the server sent after its 220 in plaintext
   * (there should be none) are kept in `plaintextAfterStartTls`.
   */
  async startTls(servername = 'relay.test'): Promise<tls.TLSSocket> {
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    this.plaintextAfterStartTls = this.buffer + this.replies.join('\n');
    this.buffer = '';
    this.replies.length = 0;
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ socket: plain, servername, rejectUnauthorized: false }, () => resolve(s));
      s.once('error', reject);
    });
    this.socket = secure;
    this.attach(secure);
    return secure;
  }
  plaintextAfterStartTls = '';

  /**
   * Opens `n` connections from `localAddress` to `host:port` one after the other, each greeted (or
   * refused) before the next is opened, and leaves them all open: the shape of a per-address
   * concurrency test (in the worker mode, open at once they spread over the workers: the primary's
   * handoff fills worker 1 with two, then goes where the fewest are open; node:cluster alternates).
   * Returns the clients (the caller closes them) and each connection's first reply, in order.
   */
  static async openMany(port: number, localAddress: string, n: number, host = '127.0.0.1'): Promise<{ clients: RawSmtp[]; replies: string[] }> {
    const clients: RawSmtp[] = [];
    const replies: string[] = [];
    for (let i = 0; i < n; i++) {
      const c = await RawSmtp.connect(port, host, localAddress);
      clients.push(c);
      replies.push(await c.read());
    }
    return { clients, replies };
  }

  static connect(port: number, host = '127.0.0.1', localAddress?: string): Promise<RawSmtp> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host, localAddress }, () => resolve(new RawSmtp(socket)));
      socket.once('error', reject);
    });
  }

  /** The next complete reply (multi-line replies joined with \n). */
  async read(timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!this.replies.length) {
      if (this.closed) throw new Error('connection closed while waiting for a reply');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no reply within ' + timeoutMs + ' ms');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => (clearTimeout(t), resolve());
      });
    }
    return this.replies.shift()!;
  }

  /** Writes bytes as given (no CRLF added). */
  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Sends a command line (CRLF appended) and returns its reply. */
  async cmd(line: string): Promise<string> {
    this.write(line + '\r\n');
    return this.read();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Resolves when the server has closed the connection. */
  async waitClosed(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (!this.closed) throw new Error('connection still open');
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Code of a reply, e.g. 250. */
export function codeOf(reply: string): number {
  return Number(reply.slice(0, 3));
}

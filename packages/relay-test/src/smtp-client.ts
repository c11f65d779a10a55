import net from 'node:net';
import tls from 'node:tls';

/** One SMTP reply: its code and its lines (without CRLF), e.g. `{ code: 250, lines: ['250-a', '250 b'] }`. */
export interface SmtpReply {
  readonly code: number;
  readonly lines: readonly string[];
}

/** First line of a reply, trimmed: what the table shows. */
export function firstLine(reply: SmtpReply): string {
  return (reply.lines[0] ?? '').trim();
}

export class SmtpError extends Error {
  constructor(message: string, readonly kind: 'connect' | 'timeout' | 'closed' | 'protocol') {
    super(message);
    this.name = 'SmtpError';
  }
}

export interface SmtpConnectOptions {
  readonly host: string;
  readonly port: number;
  /** Source address to bind (e.g. 127.0.0.9 to play an untrusted client). */
  readonly localAddress?: string;
  /** Milliseconds for the TCP connect and for each reply. */
  readonly timeoutMs: number;
}

/** Longest reply line accepted; a server that sends more without CRLF is broken or hostile. */
const MAX_LINE = 64 * 1024;

/**
 * A minimal SMTP client on a raw socket: it sends exactly the command lines it is given (so it can
 * send the odd addresses relay tests need, which a mail library would refuse or rewrite), one
 * command at a time (no PIPELINING), and reads each reply with its own timeout.
 */
export class SmtpClient {
  private socket: net.Socket;
  private buffer = '';
  private pending: string[] = [];
  private readonly replies: SmtpReply[] = [];
  private waiter?: () => void;
  private closed = false;
  private failure?: SmtpError;
  /** Everything sent and received, for `--verbose` style diagnostics: `C: ...` / `S: ...`. */
  readonly transcript: string[] = [];

  private constructor(socket: net.Socket, private readonly timeoutMs: number) {
    this.socket = socket;
    this.attach(socket);
  }

  static connect(o: SmtpConnectOptions): Promise<SmtpClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: o.host, port: o.port, localAddress: o.localAddress });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new SmtpError(`connect to ${o.host}:${o.port}: no answer within ${o.timeoutMs} ms`, 'connect'));
      }, o.timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new SmtpClient(socket, o.timeoutMs));
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        socket.destroy();
        reject(new SmtpError(`connect to ${o.host}:${o.port}${o.localAddress ? ` from ${o.localAddress}` : ''}: ${err.code ?? err.message}`, 'connect'));
      });
    });
  }

  /** Address of the server as the socket sees it (e.g. `127.0.0.1`). */
  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  get isTls(): boolean {
    return this.socket instanceof tls.TLSSocket;
  }

  private attach(socket: net.Socket): void {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.failure ??= new SmtpError(`connection error: ${err.code ?? err.message}`, 'closed');
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  private onData(d: Buffer): void {
    this.buffer += d.toString('latin1');
    let i: number;
    while ((i = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, i).replace(/\r$/, '');
      this.buffer = this.buffer.slice(i + 1);
      this.transcript.push('S: ' + line);
      this.pending.push(line);
      // The last line of a reply has a space (or nothing) after the code; others have a dash.
      if (!/^\d{3}-/.test(line)) {
        const code = /^\d{3}/.test(line) ? Number(line.slice(0, 3)) : 0;
        this.replies.push({ code, lines: this.pending });
        this.pending = [];
      }
    }
    if (this.buffer.length > MAX_LINE) {
      this.failure ??= new SmtpError('reply line too long', 'protocol');
      this.socket.destroy();
    }
    this.wake();
  }

  /** The next complete reply. Throws SmtpError on timeout or when the connection closes first. */
  async read(): Promise<SmtpReply> {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const r = this.replies.shift();
      if (r) return r;
      if (this.failure) throw this.failure;
      if (this.closed) throw new SmtpError('connection closed by the server', 'closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new SmtpError(`no reply within ${this.timeoutMs} ms`, 'timeout');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** Writes one command line (CRLF appended) and reads its reply. */
  async command(line: string): Promise<SmtpReply> {
    this.send(line);
    return this.read();
  }

  /** Writes one line (CRLF appended) without reading. */
  send(line: string): void {
    if (/[\r\n]/.test(line)) throw new Error('an SMTP command line may not contain CR or LF');
    this.transcript.push('C: ' + line);
    this.socket.write(line + '\r\n', 'latin1');
  }

  /** Writes raw bytes (the DATA body), as given. */
  writeRaw(data: string): void {
    this.transcript.push(`C: <${data.length} bytes of message data>`);
    this.socket.write(data, 'latin1');
  }

  /**
   * Upgrades the connection after a 220 reply to STARTTLS. The certificate is not verified: this is
   * a policy test of one's own server, not a delivery.
   */
  async startTls(servername?: string): Promise<void> {
    if (this.replies.length || this.buffer.length) throw new SmtpError('data after the STARTTLS reply (possible injection)', 'protocol');
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const timer = setTimeout(() => {
        s.destroy();
        reject(new SmtpError(`TLS handshake: no answer within ${this.timeoutMs} ms`, 'timeout'));
      }, this.timeoutMs);
      const s = tls.connect({ socket: plain, rejectUnauthorized: false, servername: servername && net.isIP(servername) === 0 ? servername : undefined }, () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        s.destroy();
        reject(new SmtpError(`TLS handshake: ${err.code ?? err.message}`, 'protocol'));
      });
    });
    this.socket = secure;
    this.closed = false;
    this.attach(secure);
  }

  /** Sends QUIT (best effort, short wait) and closes the socket. */
  async quit(): Promise<void> {
    if (!this.closed && !this.failure) {
      try {
        this.send('QUIT');
        await Promise.race([this.read(), new Promise((r) => setTimeout(r, 1000))]);
      } catch {
        // the server may close first; that is fine
      }
    }
    this.close();
  }

  close(): void {
    this.socket.destroy();
  }
}

import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import type { AddressInfo } from 'node:net';

/** A message as it reached a capture server: the envelope and the exact bytes. */
export interface CapturedMessage {
  readonly from: string;
  readonly to: string[];
  readonly raw: Buffer;
  readonly remoteAddress: string;
}

export interface CaptureServerOptions {
  /** Address to bind (a 127.x address). Default 127.0.0.1. */
  readonly host?: string;
  /** Default 0 (any free port). */
  readonly port?: number;
  /**
   * Decides the reply to each RCPT / end of DATA. Return `undefined` to accept, or `[code, text]`
   * (e.g. `[451, '4.3.0 try later']`).
   */
  readonly onRcpt?: (rcpt: string) => [number, string] | undefined;
  readonly onData?: (msg: CapturedMessage) => [number, string] | undefined;
  /** Extra smtp-server options (TLS, AUTH, ...). */
  readonly server?: Partial<SMTPServerOptions>;
}

/**
 * A real SMTP server (smtp-server) that stores what it receives: the next hop in tests.
 * Messages answered with an error are not stored.
 */
export class CaptureServer {
  readonly messages: CapturedMessage[] = [];
  private waiters: Array<{ n: number; resolve: () => void }> = [];
  private server!: SMTPServer;
  host = '127.0.0.1';
  port = 0;

  constructor(private readonly opts: CaptureServerOptions = {}) {}

  static async start(opts: CaptureServerOptions = {}): Promise<CaptureServer> {
    const s = new CaptureServer(opts);
    await s.listen();
    return s;
  }

  /** `host:port`, as a relay-policy next hop. */
  get address(): string {
    return `${this.host}:${this.port}`;
  }

  async listen(): Promise<void> {
    this.host = this.opts.host ?? '127.0.0.1';
    this.server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      disableReverseLookup: true,
      logger: false,
      ...this.opts.server,
      onRcptTo: (addr, _session, cb) => {
        const r = this.opts.onRcpt?.(addr.address);
        if (r) return cb(Object.assign(new Error(r[1]), { responseCode: r[0] }));
        cb();
      },
      onData: (stream, session, cb) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const msg: CapturedMessage = {
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            to: session.envelope.rcptTo.map((r) => r.address),
            raw: Buffer.concat(chunks),
            remoteAddress: session.remoteAddress,
          };
          const r = this.opts.onData?.(msg);
          if (r) return cb(Object.assign(new Error(r[1]), { responseCode: r[0] }));
          this.messages.push(msg);
          this.waiters = this.waiters.filter((w) => (this.messages.length >= w.n ? (w.resolve(), false) : true));
          cb(null, 'Ok: captured');
        });
      },
    });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port ?? 0, this.host, () => resolve());
    });
    // TLS and socket errors of single connections are the client's business, not the test's.
    this.server.on('error', () => undefined);
    this.port = ((this.server as unknown as { server: { address(): AddressInfo } }).server.address()).port;
  }

  /** Resolves once `n` messages have arrived; rejects after `timeoutMs`. */
  waitFor(n: number, timeoutMs = 10_000): Promise<CapturedMessage[]> {
    if (this.messages.length >= n) return Promise.resolve(this.messages);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`capture server got ${this.messages.length} of ${n} messages within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({ n, resolve: () => (clearTimeout(timer), resolve(this.messages)) });
    });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

import http from 'node:http';
import type net from 'node:net';

export interface CapturedCheck {
  readonly method: string;
  readonly url: string;
  /** Request headers as they came over the wire: `[name, value bytes]`, in order, names repeated. */
  readonly headers: Array<[string, Buffer]>;
  readonly body: Buffer;
}

/**
 * An HTTP server standing in for rspamd in the two tests the real daemon cannot serve: it records
 * every request's headers byte for byte (what reached "rspamd" from hostile envelope values), and
 * it can answer late (an rspamd that hangs past our timeout, which the real one does not do on
 * demand), and it can answer what the real one never does (malformed JSON, hostile texts). It answers `/checkv2` with `reply` after `delayMs`, `/ping` with `pong`.
 */
export class CaptureRspamd {
  readonly requests: CapturedCheck[] = [];
  /** The /checkv2 answer: an object (sent as JSON) or raw text (for malformed answers). */
  reply: object | string = { action: 'no action', score: 1.5, required_score: 15, symbols: {}, messages: {} };
  delayMs = 0;
  port = 0;
  private readonly sockets = new Set<net.Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private constructor(private readonly server: http.Server) {}

  static async start(): Promise<CaptureRspamd> {
    let self!: CaptureRspamd;
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('error', () => undefined);
      res.on('error', () => undefined);
      req.on('end', () => {
        const headers: Array<[string, Buffer]> = [];
        for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i]!, Buffer.from(req.rawHeaders[i + 1]!, 'latin1')]);
        self.requests.push({ method: req.method ?? '', url: req.url ?? '', headers, body: Buffer.concat(chunks) });
        const answer = () => {
          if (req.url === '/ping') res.end('pong\r\n');
          else res.setHeader('Content-Type', 'application/json').end(typeof self.reply === 'string' ? self.reply : JSON.stringify(self.reply));
        };
        if (self.delayMs <= 0) return answer();
        const t = setTimeout(() => {
          self.timers.delete(t);
          answer();
        }, self.delayMs);
        self.timers.add(t);
      });
    });
    self = new CaptureRspamd(server);
    server.on('connection', (s) => {
      self.sockets.add(s);
      s.on('close', () => self.sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    self.port = (server.address() as net.AddressInfo).port;
    return self;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

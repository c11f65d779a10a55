import http from 'node:http';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { ReadinessReport } from './readiness.js';

export interface AdminServerOptions {
  readonly host: string;
  readonly port: number;
  /** When set, every request needs `Authorization: Bearer <token>`. */
  readonly token?: string;
  /**
   * Where `/metrics` comes from: this process's Registry, or in the worker mode's primary the
   * totals across workers (cluster/metrics-aggregate.ts's ClusterMetrics).
   */
  readonly registry: { metrics(): Promise<string>; readonly contentType: string };
  readonly readiness: () => Promise<ReadinessReport>;
  readonly log: Logger;
}

/**
 * The admin HTTP listener: `/metrics` (Prometheus text format), `/healthz` (the process answers)
 * and `/readyz` (200 when every readiness check passes, else 503, with the checks as JSON). GET and
 * HEAD only; nothing here changes the relay. Loopback by default: metrics tell an outsider how
 * busy the relay is and which plugins run.
 */
export class AdminServer {
  private server?: http.Server;

  constructor(private readonly opts: AdminServerOptions) {}

  async start(): Promise<void> {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.opts.log.error({ err }, 'admin request failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error\n');
      });
    });
    server.on('clientError', (_err, socket) => socket.destroy());
    // A scraper that stops reading must not hold a socket for ever.
    server.requestTimeout = 10_000;
    server.headersTimeout = 5_000;
    server.keepAliveTimeout = 5_000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.opts.log.warn({ err }, 'admin listener error'));
    this.opts.log.info({ host: this.opts.host, port: this.address().port, token: !!this.opts.token }, 'admin listener open');
  }

  address(): AddressInfo {
    return this.server!.address() as AddressInfo;
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }

  private authorized(req: http.IncomingMessage): boolean {
    const token = this.opts.token;
    if (!token) return true;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!m) return false;
    // Hashes first: timingSafeEqual needs equal lengths, and the length must not leak either.
    const a = createHash('sha256').update(m[1]!).digest();
    const b = createHash('sha256').update(token).digest();
    return timingSafeEqual(a, b);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    if (!this.authorized(req)) {
      res.writeHead(401, { 'www-authenticate': 'Bearer realm="portcullis"', 'content-type': 'text/plain' }).end('unauthorized\n');
      return;
    }
    switch (url.pathname) {
      case '/metrics': {
        const body = await this.opts.registry.metrics();
        res.writeHead(200, { 'content-type': this.opts.registry.contentType }).end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      case '/healthz':
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
        return;
      case '/readyz': {
        const report = await this.opts.readiness();
        res.writeHead(report.ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(report) + '\n');
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz or /readyz\n');
    }
  }
}

import net from 'node:net';
import { rm } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { DeliveryQueue } from '../delivery/queue.js';

/** A request to a running relay, one JSON object per line on its control socket. */
export type ControlRequest =
  | { cmd: 'list' }
  | { cmd: 'show' | 'hold' | 'release' | 'delete' | 'bounce'; id: string }
  | { cmd: 'flush'; id?: string; includeHeld?: boolean }
  /**
   * A message an operator tool wrote to `<spool>/tmp/` (a quarantine release): the relay queues
   * it in its own spool (one writer) and delivers it; `note` is logged as the operator action.
   */
  | { cmd: 'enqueue'; file: string; mailFrom: string; recipients: string[]; headers?: string; note?: string }
  | { cmd: 'reload' }
  | { cmd: 'status' };

/** What the relay answers beyond the queue's own commands. */
export interface ControlHandlers {
  reload?(): Promise<unknown>;
  status?(): Promise<unknown>;
}

export type ControlResponse = { ok: true; result: unknown } | { ok: false; error: string };

/** Answers any control request (the worker mode's primary asks its workers instead of one queue). */
export type ControlAnswer = (req: ControlRequest) => Promise<ControlResponse>;

/**
 * Serves `portcullis queue ...` while the relay runs: a unix socket (mode 0600, so only the
 * relay's user and root can use it) at `<spool.dir>/control.sock`. The queue's own methods do the
 * work, so the commands see and change exactly what the delivery side uses.
 */
export class ControlServer {
  private server?: net.Server;

  constructor(private readonly path: string, private readonly queue: DeliveryQueue | ControlAnswer, private readonly log: Logger, private readonly handlers: ControlHandlers = {}) {}

  async start(): Promise<void> {
    await rm(this.path, { force: true });
    this.server = net.createServer((socket) => {
      let buf = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => {
        buf += d;
        if (buf.length > 64 * 1024) return socket.destroy();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          this.handle(line).then((res) => {
            if (!socket.destroyed) socket.write(JSON.stringify(res) + '\n');
          });
        }
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen({ path: this.path, readableAll: false, writableAll: false }, () => resolve());
    });
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await rm(this.path, { force: true });
  }

  private async handle(line: string): Promise<ControlResponse> {
    let req: ControlRequest;
    try {
      req = JSON.parse(line) as ControlRequest;
    } catch {
      return { ok: false, error: 'not JSON' };
    }
    const q = this.queue;
    try {
      if (typeof q === 'function') return await q(req);
      return await answerControl(q, req, this.log, this.handlers);
    } catch (err) {
      this.log.error({ err, req }, 'control command failed');
      return { ok: false, error: (err as Error).message };
    }
  }
}

/** A control request against one relay's queue (its socket, or a worker asked by the primary). */
export async function answerControl(q: DeliveryQueue, req: ControlRequest, log: Logger, handlers: ControlHandlers = {}): Promise<ControlResponse> {
  const answered = await queueRequest(q, req);
  if (answered) return answered;
  switch (req.cmd) {
    case 'enqueue': {
      if (!Array.isArray(req.recipients) || !req.recipients.length || typeof req.mailFrom !== 'string') return { ok: false, error: 'enqueue needs mailFrom and recipients' };
      const id = await q.enqueueFile(req.file, { mailFrom: req.mailFrom, recipients: req.recipients, headers: req.headers ?? '' });
      log.warn({ id, note: req.note, recipients: req.recipients }, `operator action: ${req.note ?? 'message added to the queue'}`);
      return { ok: true, result: { id } };
    }
    case 'reload':
      if (!handlers.reload) return { ok: false, error: 'reload is not available' };
      return { ok: true, result: await handlers.reload() };
    case 'status':
      if (!handlers.status) return { ok: false, error: 'status is not available' };
      return { ok: true, result: await handlers.status() };
    default:
      return { ok: false, error: `unknown command ${JSON.stringify((req as { cmd?: unknown }).cmd)}` };
  }
}

/**
 * Answers the queue's own commands (list, show, flush, hold, release, delete, bounce) against a
 * queue, running or opened offline: the one place both the control socket and `portcullis queue`
 * with the relay stopped take them from. Anything else: undefined (the caller decides).
 */
export async function queueRequest(q: DeliveryQueue, req: ControlRequest): Promise<ControlResponse | undefined> {
  const need = (found: boolean | undefined, what: string): ControlResponse => (found ? { ok: true, result: true } : { ok: false, error: `no such message, or it is being delivered right now: ${what}` });
  switch (req.cmd) {
    case 'list':
      return { ok: true, result: q.list() };
    case 'show': {
      const m = await q.show(req.id);
      return m ? { ok: true, result: m } : { ok: false, error: `no such message: ${req.id}` };
    }
    case 'flush':
      return { ok: true, result: { flushed: q.flush(req.id, !!req.includeHeld) } };
    case 'hold':
      return need(await q.hold(req.id), req.id);
    case 'release':
      return need(await q.release(req.id), req.id);
    case 'delete':
      return need(await q.delete(req.id), req.id);
    case 'bounce':
      return need(await q.bounceNow(req.id), req.id);
    default:
      return undefined;
  }
}

/** Sends one request to a running relay's control socket. */
export function controlRequest(socketPath: string, req: ControlRequest, timeoutMs = 10_000): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer from ${socketPath} within ${timeoutMs} ms`));
    }, timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', () => s.write(JSON.stringify(req) + '\n'));
    s.on('data', (d: string) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i >= 0) {
        clearTimeout(timer);
        s.end();
        resolve(JSON.parse(buf.slice(0, i)) as ControlResponse);
      }
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot reach the relay's control socket ${socketPath}: ${err.message} (is the relay running with this config?)`));
    });
  });
}

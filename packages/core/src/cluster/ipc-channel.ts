/**
 * Request/response over a Node IPC endpoint: `process` in a worker, a `cluster.Worker` (or a forked
 * `ChildProcess`) in the primary. Node's IPC only carries one-way messages; the worker mode needs
 * answers (a counter's count, a concurrency slot granted or not, a worker's metrics), so each
 * request carries an id and its reply names it.
 *
 * Written by hand rather than taken from a library: the protocol is a dozen lines, and the libraries
 * that exist (e.g. node-ipc, cluster-messages) either bring their own transport or do not tag their
 * messages, which matters here because the same pipe carries node:cluster's internal messages
 * (`{ cmd: 'NODE_CLUSTER', ... }`) and prom-client's AggregatorRegistry messages
 * (`{ type: 'prom-client:getMetricsReq', ... }`). Ours carry `portcullis: 1`, and everything
 * without that tag is ignored, so neither side ever answers the other's traffic.
 *
 * Failure rules: a send on a dead channel (worker exited, pipe closed, ERR_IPC_CHANNEL_CLOSED) never
 * throws out of the caller; `request` then rejects, `notify` drops the message. Every request has a
 * timeout (default 2 s) so a primary that stops answering never stalls an SMTP reply; `close()`
 * rejects every pending request at once (the worker exited: its pending calls cannot be answered).
 */

export interface IpcEndpoint {
  /** `process.send` and `Worker#send` take a callback; with one, a send on a closed pipe reports there instead of as an 'error' event. */
  send(msg: unknown, callback?: (err: Error | null) => void): boolean;
  /** False once the pipe is closed (process and Worker both have it). */
  readonly connected?: boolean;
  on(ev: 'message', fn: (m: unknown) => void): unknown;
  off(ev: 'message', fn: (m: unknown) => void): unknown;
}

/** The tag on every message this channel sends; messages without it belong to someone else. */
export const IPC_TAG = 'portcullis';

interface RequestMsg {
  portcullis: 1;
  id?: number;
  type: string;
  payload?: unknown;
}
interface ReplyMsg {
  portcullis: 1;
  re: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}

/** Why a request failed without an answer from the other side (timeout, closed channel, no handler). */
export class IpcError extends Error {
  constructor(message: string, readonly code: 'timeout' | 'closed' | 'send-failed' | 'no-handler' | 'remote') {
    super(message);
    this.name = 'IpcError';
  }
}

type Handler = (payload: unknown) => unknown;

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
  type: string;
}

const isOurs = (m: unknown): m is RequestMsg | ReplyMsg =>
  typeof m === 'object' && m !== null && (m as Record<string, unknown>)[IPC_TAG] === 1;

export class IpcChannel {
  private readonly handlers = new Map<string, Handler>();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  private readonly timeoutMs: number;
  private readonly onMessage = (m: unknown) => this.receive(m);

  constructor(private readonly endpoint: IpcEndpoint, opts: { timeoutMs?: number } = {}) {
    this.timeoutMs = opts.timeoutMs ?? 2000;
    endpoint.on('message', this.onMessage);
  }

  /** Answers requests (and notifications) of `type`; a second call for the same type replaces the first. */
  handle(type: string, fn: (payload: unknown) => unknown | Promise<unknown>): void {
    this.handlers.set(type, fn);
  }

  /** Sends `type` and resolves with the other side's answer; rejects on timeout, a handler error, or close. */
  request<T = unknown>(type: string, payload?: unknown, timeoutMs = this.timeoutMs): Promise<T> {
    if (this.closed) return Promise.reject(new IpcError(`IPC channel closed (${type})`, 'closed'));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new IpcError(`IPC request ${type} got no answer within ${timeoutMs} ms`, 'timeout'));
      }, timeoutMs);
      timer.unref?.();
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer, type });
      if (!this.trySend({ portcullis: 1, id, type, payload })) {
        this.settle(id, undefined, new IpcError(`IPC request ${type} could not be sent (channel closed)`, 'send-failed'));
      }
    });
  }

  /** Fire and forget: no answer, no error when the other side is gone. */
  notify(type: string, payload?: unknown): void {
    if (!this.closed) this.trySend({ portcullis: 1, type, payload });
  }

  /** Stops listening and rejects every pending request. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.endpoint.off('message', this.onMessage);
    for (const id of [...this.pending.keys()]) this.settle(id, undefined, new IpcError('IPC channel closed', 'closed'));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Requests sent and not yet answered (for tests and status). */
  get pendingCount(): number {
    return this.pending.size;
  }

  private trySend(msg: RequestMsg | ReplyMsg): boolean {
    const ep = this.endpoint;
    if (ep.connected === false) return false;
    try {
      // Without a callback, a send on a closed pipe emits ERR_IPC_CHANNEL_CLOSED as an 'error'
      // event on the process, which kills a worker that has no listener for it. With one, the error
      // comes here; the request it belonged to then times out (or is rejected by close()).
      // `false` only means the pipe is backed up: the message is queued and will go.
      ep.send(msg, (err) => {
        if (err && 'id' in msg && msg.id !== undefined) this.settle(msg.id, undefined, new IpcError(`IPC request ${msg.type} could not be sent: ${err.message}`, 'send-failed'));
      });
      return true;
    } catch {
      return false;
    }
  }

  private settle(id: number, result: unknown, err?: Error): void {
    const p = this.pending.get(id);
    if (!p) return; // answered after its timeout: dropped
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve(result);
  }

  private receive(m: unknown): void {
    if (this.closed || !isOurs(m)) return;
    if ('re' in m) {
      const r = m as ReplyMsg;
      if (r.ok) this.settle(r.re, r.result);
      else this.settle(r.re, undefined, new IpcError(r.error ?? 'IPC handler failed', r.error?.startsWith('no handler') ? 'no-handler' : 'remote'));
      return;
    }
    const q = m as RequestMsg;
    const handler = this.handlers.get(q.type);
    if (q.id === undefined) {
      // A notification: errors have nobody to go to, so they are swallowed rather than crash the process.
      if (handler) {
        try {
          Promise.resolve(handler(q.payload)).catch(() => undefined);
        } catch {
          /* see above */
        }
      }
      return;
    }
    const id = q.id;
    if (!handler) {
      this.trySend({ portcullis: 1, re: id, ok: false, error: `no handler for ${q.type}` });
      return;
    }
    let out: unknown;
    try {
      out = handler(q.payload);
    } catch (err) {
      this.trySend({ portcullis: 1, re: id, ok: false, error: errorText(err) });
      return;
    }
    // Synchronous answers go back in the same tick (the connection gate's round trip is on the hot path).
    if (!isThenable(out)) {
      this.trySend({ portcullis: 1, re: id, ok: true, result: out });
      return;
    }
    out.then(
      (result) => {
        if (!this.closed) this.trySend({ portcullis: 1, re: id, ok: true, result });
      },
      (err) => {
        if (!this.closed) this.trySend({ portcullis: 1, re: id, ok: false, error: errorText(err) });
      },
    );
  }
}

const isThenable = (v: unknown): v is PromiseLike<unknown> =>
  typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

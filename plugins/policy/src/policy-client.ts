import net from 'node:net';
import { AnswerEnd, encodeRequest, MAX_ANSWER_BYTES, parseAnswer, ProtocolError } from './protocol.js';
import { describeBackendTarget, type BackendTarget } from '@portcullis/core';

/** Where the policy service listens: TCP (`inet:host:port`) or a unix socket (`unix:/path`). */
export type PolicyTarget = BackendTarget;

export const describeTarget = (t: PolicyTarget): string => describeBackendTarget(t, 'inet:');

export interface PoolLimits {
  /** Time to open one connection. */
  readonly connectTimeout: number;
  /** Whole request: waiting for a connection, connecting, writing and reading the answer. */
  readonly timeout: number;
  /** An idle connection is closed after this long (Postfix `smtpd_policy_service_max_idle`). */
  readonly maxIdle: number;
  /** A connection is not reused once this old (Postfix `smtpd_policy_service_max_ttl`). */
  readonly maxTtl: number;
  /** Connections open at once; further requests wait (within their timeout). */
  readonly maxConnections: number;
}

/** Why a request got no answer. */
export type FailureReason = 'unavailable' | 'timeout' | 'protocol' | 'closed';

export class PolicyRequestError extends Error {
  constructor(readonly reason: FailureReason, message: string) {
    super(message);
    this.name = 'PolicyRequestError';
  }
}

interface Pending {
  resolve(attrs: Map<string, string>): void;
  reject(err: Error): void;
  /** Bytes of the answer seen so far: a connection that dies before any may be retried. */
  got: number;
}

/** One persistent connection; one request at a time (the protocol has no request ids). */
class Connection {
  readonly createdAt = Date.now();
  requests = 0;
  /** The pieces of the answer being read, joined once it is whole (AnswerEnd). */
  private pieces: Buffer[] = [];
  private size = 0;
  private end = new AnswerEnd();
  private pending?: Pending;
  private idleTimer?: NodeJS.Timeout;
  dead = false;

  constructor(readonly socket: net.Socket, private readonly onDead: (c: Connection) => void) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    // Every socket keeps its error listener for its whole life: a reset never reaches the process.
    socket.on('error', (err) => this.fail(new PolicyRequestError('closed', `policy connection failed: ${err.message}`)));
    socket.on('close', () => this.fail(new PolicyRequestError('closed', 'policy service closed the connection')));
  }

  send(request: Buffer): Promise<Map<string, string>> {
    this.clearIdle();
    this.requests++;
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject, got: 0 };
      this.socket.write(request);
    });
  }

  /** While the request is answered, any bytes at all. */
  get answerStarted(): boolean {
    return (this.pending?.got ?? 0) > 0;
  }

  idle(ms: number): void {
    this.clearIdle();
    this.idleTimer = setTimeout(() => this.destroy(), ms);
    this.idleTimer.unref();
  }

  /** Closes it; the 'close' event then takes it out of the pool and fails a request in flight. */
  destroy(): void {
    this.clearIdle();
    this.socket.destroy();
  }

  private clearIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  private onData(chunk: Buffer): void {
    if (!this.pending) {
      // Bytes nobody asked for: the stream is out of step; never reuse it.
      this.fail(new PolicyRequestError('protocol', 'policy service sent data without a request'));
      return;
    }
    this.pending.got += chunk.length;
    this.pieces.push(chunk);
    this.size += chunk.length;
    if (this.end.scan(chunk) < 0) {
      if (this.size > MAX_ANSWER_BYTES) this.fail(new PolicyRequestError('protocol', `answer longer than ${MAX_ANSWER_BYTES} bytes without an empty line`));
      return;
    }
    const buf = this.pieces.length === 1 ? this.pieces[0]! : Buffer.concat(this.pieces, this.size);
    this.pieces = [];
    this.size = 0;
    this.end = new AnswerEnd();
    let parsed: ReturnType<typeof parseAnswer>;
    try {
      parsed = parseAnswer(buf);
    } catch (err) {
      this.fail(new PolicyRequestError('protocol', (err as ProtocolError).message));
      return;
    }
    if (!parsed) {
      this.fail(new PolicyRequestError('protocol', 'policy answer framing out of step'));
      return;
    }
    const rest = buf.subarray(parsed.used);
    const p = this.pending;
    this.pending = undefined;
    if (rest.length) {
      // More than one answer to one request: a broken server; neither answer can be trusted, and
      // whatever comes next would be misattributed.
      this.pending = p;
      this.fail(new PolicyRequestError('protocol', 'policy service sent more than one answer'));
      return;
    }
    p.resolve(parsed.attrs);
  }

  private fail(err: PolicyRequestError): void {
    const p = this.pending;
    this.pending = undefined;
    if (!this.dead) {
      this.dead = true;
      this.clearIdle();
      this.socket.destroy();
      this.onDead(this);
    }
    p?.reject(err);
  }
}

/**
 * Persistent connections to one policy service, as Postfix keeps them: reused across sessions,
 * closed when idle for `maxIdle` or older than `maxTtl`, reopened when the server closed one. A
 * request on a reused connection that the server had closed meanwhile (no answer byte yet) is sent
 * again once on a new connection, inside the same timeout.
 */
export class PolicyClient {
  private readonly idle: Connection[] = [];
  private readonly all = new Set<Connection>();
  private readonly waiting: Array<(c: Connection | Error) => void> = [];
  private opening = 0;
  private closed = false;

  constructor(readonly target: PolicyTarget, private readonly limits: PoolLimits) {}

  /** Connections open now (for tests and metrics). */
  get size(): number {
    return this.all.size;
  }

  async request(attrs: ReadonlyArray<readonly [string, string]>): Promise<Map<string, string>> {
    if (this.closed) throw new PolicyRequestError('unavailable', 'policy client closed');
    const payload = encodeRequest(attrs);
    const deadline = Date.now() + this.limits.timeout;
    let current: Connection | undefined;
    let over = false;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        over = true;
        // A late answer on this connection would belong to no request: drop the connection.
        current?.destroy();
        reject(new PolicyRequestError('timeout', `no answer from ${describeTarget(this.target)} within ${this.limits.timeout} ms`));
      }, this.limits.timeout);
    });
    const attempt = async (): Promise<Map<string, string>> => {
      for (let tries = 0; ; tries++) {
        const c = await this.acquire(deadline);
        if (over) {
          this.release(c);
          throw new PolicyRequestError('timeout', 'request timed out while waiting for a connection');
        }
        current = c;
        const reused = c.requests > 0;
        try {
          const answer = await c.send(payload);
          this.release(c);
          return answer;
        } catch (err) {
          const e = err as PolicyRequestError;
          // The server closed an idle connection just as we used it: Postfix retries too.
          if (!over && reused && tries === 0 && e.reason === 'closed') continue;
          throw e;
        }
      }
    };
    const work = attempt();
    // Whichever loses the race must not become an unhandled rejection.
    work.catch(() => undefined);
    timedOut.catch(() => undefined);
    try {
      return await Promise.race([work, timedOut]);
    } finally {
      over = true;
      clearTimeout(timer);
    }
  }

  /** Opens one connection and closes it: is the service there? (for readiness, never on the SMTP path). */
  async probe(): Promise<void> {
    const c = await this.open();
    c.destroy();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w(new PolicyRequestError('unavailable', 'policy client closed'));
    for (const c of this.all) c.destroy();
    this.all.clear();
    this.idle.length = 0;
  }

  private acquire(deadline: number): Promise<Connection> {
    while (this.idle.length) {
      const c = this.idle.pop()!;
      if (c.dead) continue;
      // Past maxTtl while it waited: closed, not reused (its 'close' takes it out of the pool).
      if (Date.now() - c.createdAt >= this.limits.maxTtl) {
        c.destroy();
        continue;
      }
      return Promise.resolve(c);
    }
    if (this.all.size + this.opening < this.limits.maxConnections) return this.open();
    return new Promise((resolve, reject) => {
      const waiter = (c: Connection | Error) => (c instanceof Error ? reject(c) : resolve(c));
      this.waiting.push(waiter);
      // The request's own timeout rejects the caller; this drops the stale waiter.
      const t = setTimeout(() => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
      }, Math.max(0, deadline - Date.now()));
      t.unref();
    });
  }

  private release(c: Connection): void {
    if (c.dead) return;
    if (this.closed || Date.now() - c.createdAt >= this.limits.maxTtl) {
      c.destroy();
      return;
    }
    const next = this.waiting.shift();
    if (next) return next(c);
    c.idle(this.limits.maxIdle);
    this.idle.push(c);
  }

  private drop(c: Connection): void {
    this.all.delete(c);
    const i = this.idle.indexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
    // A slot is free: a waiting request may open a new connection.
    const next = this.waiting.shift();
    if (next) this.open().then(next, next);
  }

  private open(): Promise<Connection> {
    this.opening++;
    return new Promise<Connection>((resolve, reject) => {
      const socket = 'socket' in this.target ? net.connect({ path: this.target.socket }) : net.connect({ host: this.target.host, port: this.target.port });
      const timer = setTimeout(() => {
        socket.destroy();
        settle(new PolicyRequestError('unavailable', `could not connect to ${describeTarget(this.target)} within ${this.limits.connectTimeout} ms`));
      }, this.limits.connectTimeout);
      let done = false;
      const settle = (r: Connection | Error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.opening--;
        if (r instanceof Error) reject(r);
        else resolve(r);
      };
      socket.on('error', (err) => settle(new PolicyRequestError('unavailable', `could not connect to ${describeTarget(this.target)}: ${err.message}`)));
      socket.once('connect', () => {
        if (this.closed) {
          socket.destroy();
          return settle(new PolicyRequestError('unavailable', 'policy client closed'));
        }
        const c = new Connection(socket, (dead) => this.drop(dead));
        this.all.add(c);
        settle(c);
      });
    });
  }
}

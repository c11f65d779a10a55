import net from 'node:net';
import { encode, PacketReader, ProtocolError, type Packet } from './protocol.js';
import { describeBackendTarget, type BackendTarget } from '@portcullis/core';

/** Where a milter listens: `inet:host:port` or `unix:/path` in the config. */
export type MilterTarget = BackendTarget;

export const describeTarget = (t: MilterTarget): string => describeBackendTarget(t, 'inet:');

export class MilterTimeoutError extends Error {
  constructor(what: string, ms: number) {
    super(`milter did not answer ${what} within ${ms} ms`);
    this.name = 'MilterTimeoutError';
  }
}

/**
 * One socket to one milter, for one SMTP session (as Postfix keeps one per session). Packets
 * come in through PacketReader; `next()` hands them out one at a time, each wait bounded. Any
 * socket error, close, malformed packet or timeout fails the connection for good: a milter that
 * is out of step is never spoken to again.
 */
export class MilterConnection {
  private readonly reader: PacketReader;
  private readonly queued: Packet[] = [];
  private waiter?: { resolve(p: Packet): void; reject(e: Error): void };
  private failure?: Error;

  private constructor(private readonly socket: net.Socket, maxPacket: number) {
    this.reader = new PacketReader(maxPacket);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      let packets: Packet[];
      try {
        packets = this.reader.push(chunk);
      } catch (err) {
        this.fail(err as Error);
        return;
      }
      for (const p of packets) {
        if (this.waiter) {
          const w = this.waiter;
          this.waiter = undefined;
          w.resolve(p);
        } else this.queued.push(p);
      }
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('milter closed the connection')));
  }

  /** Connects within `timeoutMs`. */
  static open(target: MilterTarget, timeoutMs: number, maxPacket: number): Promise<MilterConnection> {
    return new Promise((resolve, reject) => {
      const socket = 'socket' in target ? net.connect({ path: target.socket }) : net.connect({ host: target.host, port: target.port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new MilterTimeoutError('the connection', timeoutMs));
      }, timeoutMs);
      const onError = (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        resolve(new MilterConnection(socket, maxPacket));
      });
    });
  }

  get failed(): Error | undefined {
    return this.failure;
  }

  /** Writes one packet, waiting for the socket to drain when its buffer is full. */
  async send(cmd: string, data?: Buffer | string): Promise<void> {
    if (this.failure) throw this.failure;
    // The 5-byte head and the data go as two writes in one cork: a body chunk is never copied.
    const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : (data ?? Buffer.alloc(0));
    const head = Buffer.allocUnsafe(5);
    head.writeUInt32BE(body.length + 1, 0);
    head.write(cmd, 4, 'latin1');
    this.socket.cork();
    let ok = this.socket.write(head);
    if (body.length) ok = this.socket.write(body);
    this.socket.uncork();
    if (ok) return;
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        if (this.failure) reject(this.failure);
        else resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** The milter's next packet, within `timeoutMs` (what: for the error message). */
  next(timeoutMs: number, what: string): Promise<Packet> {
    if (this.failure) return Promise.reject(this.failure);
    const p = this.queued.shift();
    if (p) return Promise.resolve(p);
    return new Promise<Packet>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        const err = new MilterTimeoutError(what, timeoutMs);
        this.fail(err);
        reject(err);
      }, timeoutMs);
      this.waiter = {
        resolve: (pk) => {
          clearTimeout(timer);
          resolve(pk);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  /** Says goodbye (SMFIC_QUIT, no answer expected) and closes. */
  close(quitCmd?: string): void {
    if (!this.failure && quitCmd) this.socket.write(encode(quitCmd));
    this.failure ??= new Error('connection closed');
    this.socket.end();
    this.socket.destroySoon?.();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err instanceof ProtocolError || err.name === 'MilterTimeoutError' ? err : new Error(`milter connection failed: ${err.message}`);
    this.socket.destroy();
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(this.failure);
  }
}

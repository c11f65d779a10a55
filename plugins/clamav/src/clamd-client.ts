import net from 'node:net';
import { Readable } from 'node:stream';
import { describeBackendTarget, type BackendTarget } from '@portcullis/core';

/** One clamd: TCP `host:port` or a unix socket path. */
export type ClamdTarget = BackendTarget;

export interface ScanLimits {
  /** Time allowed to connect to one clamd before trying the next. */
  readonly connectTimeout: number;
  /** Longest clamd may stall: not reading our data, or not answering once the data has ended. */
  readonly timeout: number;
  /** Bytes sent at most; beyond it the scan stops and the result is `oversize`. */
  readonly maxSize: number;
}

/** What a scan found. `error` covers every way a verdict could not be had: fail-closed callers treat it as unscanned. */
export type ScanResult =
  | { readonly kind: 'clean'; readonly server: string }
  | { readonly kind: 'infected'; readonly viruses: string[]; readonly server: string }
  | { readonly kind: 'oversize'; readonly size: number }
  | { readonly kind: 'error'; readonly reason: 'unavailable' | 'timeout' | 'limit' | 'failed'; readonly detail: string; readonly server?: string };

export const describeTarget = (t: ClamdTarget): string => describeBackendTarget(t);

/** Connects to the first clamd that answers, in order (failover). */
export async function connectFirst(targets: readonly ClamdTarget[], connectTimeout: number): Promise<{ socket: net.Socket; server: string } | { error: string }> {
  const failures: string[] = [];
  for (const t of targets) {
    const server = describeTarget(t);
    try {
      const socket = await connectOne(t, connectTimeout);
      return { socket, server };
    } catch (err) {
      failures.push(`${server}: ${(err as Error).message}`);
    }
  }
  return { error: failures.join('; ') || 'no clamd configured' };
}

function connectOne(t: ClamdTarget, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = 'socket' in t ? net.connect({ path: t.socket }) : net.connect({ host: t.host, port: t.port });
    const timer = setTimeout(() => fail(new Error(`connect timed out after ${timeoutMs} ms`)), timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('error', fail);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', fail);
      resolve(socket);
    });
  });
}

/**
 * Streams `input` to clamd with INSTREAM while it is read, honouring backpressure both ways: a slow
 * clamd slows the reader (and so the SMTP client). Always consumes `input` to its end, whatever
 * happens to the scan, so the other branches of the core's tee keep flowing.
 */
export async function scanStream(input: Readable, targets: readonly ClamdTarget[], limits: ScanLimits, tap?: (chunk: Buffer) => void | Promise<void>): Promise<ScanResult> {
  const conn = await connectFirst(targets, limits.connectTimeout);
  if ('error' in conn) {
    await drain(input, tap);
    return { kind: 'error', reason: 'unavailable', detail: conn.error };
  }
  const { socket, server } = conn;
  let reply = '';
  let closed = false;
  let socketError: Error | undefined;
  const replyDone = new Promise<void>((resolve) => {
    socket.on('data', (d: Buffer) => {
      reply += d.toString('utf8');
      if (reply.includes('\0')) resolve();
    });
    socket.on('error', (err) => {
      socketError = err;
      resolve();
    });
    socket.on('close', () => {
      closed = true;
      resolve();
    });
  });

  let sent = 0;
  let total = 0;
  let stopped: ScanResult | undefined;
  socket.write('zINSTREAM\0');
  for await (const chunk of input as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (tap) await tap(chunk);
    if (stopped) continue;
    if (closed || socketError) {
      // clamd gave up early (size limit) or went away: keep reading, decide below.
      stopped = interpret(reply, server, socketError) ?? { kind: 'error', reason: 'failed', detail: 'clamd closed the connection during the scan', server };
      continue;
    }
    if (sent + chunk.length > limits.maxSize) {
      stopped = { kind: 'oversize', size: 0 };
      socket.destroy();
      continue;
    }
    sent += chunk.length;
    const len = Buffer.alloc(4);
    len.writeUInt32BE(chunk.length, 0);
    socket.write(len);
    if (!socket.write(chunk) && !(await drained(socket, limits.timeout))) {
      stopped = { kind: 'error', reason: 'timeout', detail: `clamd read nothing for ${limits.timeout} ms`, server };
      socket.destroy();
    }
  }
  // Report the full size, so logs show how far over the limit the message was.
  if (stopped?.kind === 'oversize') return { kind: 'oversize', size: total };
  if (stopped) return stopped;
  if (!closed && !socketError) socket.write(Buffer.alloc(4)); // zero-length chunk: end of stream

  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    replyDone.then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), limits.timeout))),
  ]);
  clearTimeout(timer);
  socket.destroy();
  if (timedOut) return { kind: 'error', reason: 'timeout', detail: `no answer from clamd within ${limits.timeout} ms`, server };
  return interpret(reply, server, socketError) ?? { kind: 'error', reason: 'failed', detail: `unexpected reply from clamd: ${JSON.stringify(reply.slice(0, 200))}`, server };
}

/** Reads clamd's reply: `stream: OK`, `stream: Name FOUND`, `INSTREAM size limit exceeded. ERROR`. */
export function interpret(raw: string, server: string, socketError?: Error): ScanResult | undefined {
  const reply = raw.replace(/\0/g, '\n').trim();
  if (!reply) {
    if (!socketError) return undefined;
    // A reset while streaming is most often clamd's StreamMaxLength: its answer can be lost with the reset.
    return { kind: 'error', reason: 'failed', detail: `${socketError.message} (clamd closed the connection while the message was streaming; over StreamMaxLength?)`, server };
  }
  const viruses = [...reply.matchAll(/^(?:[^:\n]*:\s+)?(.+?) FOUND$/gm)].map((m) => m[1]!.trim());
  if (viruses.length) return { kind: 'infected', viruses: [...new Set(viruses)], server };
  if (/size limit exceeded/i.test(reply)) return { kind: 'error', reason: 'limit', detail: reply, server };
  if (/:\s+OK$/m.test(reply) && !/ERROR$/m.test(reply)) return { kind: 'clean', server };
  return { kind: 'error', reason: 'failed', detail: reply.slice(0, 200), server };
}

function drained(socket: net.Socket, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.off('drain', onDrain);
      socket.off('close', onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(true); // the loop notices the close on its next chunk
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on('drain', onDrain);
    socket.on('close', onClose);
  });
}

async function drain(input: Readable, tap?: (chunk: Buffer) => void | Promise<void>): Promise<void> {
  for await (const chunk of input as AsyncIterable<Buffer>) if (tap) await tap(chunk);
}

/** Scans one buffer (a decoded MIME part) with INSTREAM. */
export function scanBuffer(data: Buffer, targets: readonly ClamdTarget[], limits: ScanLimits): Promise<ScanResult> {
  return scanStream(Readable.from(data.length ? [data] : []), targets, limits);
}

/**
 * Asks clamd for `PONG` (readiness): the first server in order that answers makes the plugin
 * ready, as the first that accepts a connection is the one that scans.
 */
export async function ping(targets: readonly ClamdTarget[], connectTimeout: number, timeout: number): Promise<{ ok: true; server: string } | { ok: false; error: string }> {
  const c = await connectFirst(targets, connectTimeout);
  if ('error' in c) return { ok: false, error: c.error };
  const { socket, server } = c;
  return new Promise((resolve) => {
    let buf = '';
    const done = (r: { ok: true; server: string } | { ok: false; error: string }) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ ok: false, error: `${server}: no answer to PING within ${timeout} ms` }), timeout);
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (buf.includes('\0')) done(buf.replace(/\0.*$/s, '') === 'PONG' ? { ok: true, server } : { ok: false, error: `${server}: answered ${JSON.stringify(buf.slice(0, 80))} to PING` });
    });
    socket.on('error', (err) => done({ ok: false, error: `${server}: ${err.message}` }));
    socket.on('close', () => done({ ok: false, error: `${server}: closed the connection without answering PING` }));
    socket.write('zPING\0');
  });
}

import http from 'node:http';
import net from 'node:net';
import type { Readable } from 'node:stream';
import { parseCheckReply, type CheckReply } from './check-reply.js';
import { describeBackendTarget, type BackendTarget } from '@portcullis/core';

/** One rspamd normal worker: TCP `host:port` or a unix socket path. */
export type RspamdTarget = BackendTarget;

export interface CheckLimits {
  /** Time allowed to connect to one rspamd before trying the next. */
  readonly connectTimeout: number;
  /** Longest rspamd may stall: not reading our data, or not answering once the data has ended. */
  readonly timeout: number;
  /** Bytes sent at most; beyond it the request is abandoned and the result is `oversize`. */
  readonly maxSize: number;
}

/** What a check gave. `error` covers every way no verdict could be had: fail-closed callers treat it as unscanned. */
export type CheckResult =
  | { readonly kind: 'scanned'; readonly reply: CheckReply; readonly server: string }
  | { readonly kind: 'oversize'; readonly size: number }
  | { readonly kind: 'error'; readonly reason: 'unavailable' | 'timeout' | 'failed'; readonly detail: string; readonly server?: string };

/** Request headers, already made safe (see header-values.ts): `[name, value]` pairs, names may repeat. */
export type RequestHeaders = ReadonlyArray<readonly [string, string]>;

export const describeTarget = (t: RspamdTarget): string => describeBackendTarget(t);

/** Longest reply body read from rspamd (a reply with every symbol and its options stays far below). */
const MAX_REPLY = 4 * 1024 * 1024;

/**
 * What is held before anything is sent: a message up to this size goes to rspamd in one write, with
 * `Content-Length`, once its end is read; a larger one is sent chunked in batches of this size while
 * DATA is read. On loopback or a LAN the transfer of 64 KiB at the end is far shorter than rspamd's
 * scan of it, which cannot start before the last byte anyway, while each separate write costs a
 * system call here and a wake-up of rspamd's worker there (the benchmark's profile, bench/README.md).
 * It also bounds what one check holds in memory.
 */
export const SEND_BATCH = 64 * 1024;

interface OpenRequest {
  readonly req: http.ClientRequest;
  readonly server: string;
  /** Settles with the response (or its failure) whenever it comes, even while we still write. */
  readonly response: Promise<{ status: number; body: Buffer } | { error: Error }>;
}

/** A connection to one rspamd, made before the message ends so its set-up overlaps DATA. */
interface Connection {
  readonly socket: net.Socket;
  readonly server: string;
}

/**
 * Connects to the first rspamd that accepts the connection, in order (failover). Nothing is sent
 * yet: the request is written on this connection later (`startRequest`, from `checkStream`).
 */
async function connectFirst(targets: readonly RspamdTarget[], connectTimeout: number): Promise<Connection | { error: string }> {
  const failures: string[] = [];
  for (const t of targets) {
    const server = describeTarget(t);
    try {
      return { socket: await connectOne(t, connectTimeout), server };
    } catch (err) {
      failures.push(`${server}: ${(err as Error).message}`);
    }
  }
  return { error: failures.join('; ') || 'no rspamd configured' };
}

function connectOne(t: RspamdTarget, connectTimeout: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = 'socket' in t ? net.connect({ path: t.socket }) : net.connect({ host: t.host, port: t.port });
    socket.setNoDelay(true);
    const timer = setTimeout(() => socket.destroy(new Error(`connect timed out after ${connectTimeout} ms`)), connectTimeout);
    const failed = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    socket.once('error', failed);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', failed);
      // Until the request takes the socket over (and listens itself), an error or a close by rspamd is
      // only noted: `send` sees a destroyed socket and connects again.
      socket.on('error', () => socket.destroy());
      // Read (rspamd sends nothing before our request) so that a close by rspamd is seen as one.
      socket.resume();
      resolve(socket);
    });
  });
}

/**
 * Starts `method path` on `conn`: with `Content-Length: length` when the whole body is known, else
 * chunked. Node writes the header block with the first body write (or `end()`), as latin1, byte for
 * byte (a header block flushed on its own is written as UTF-8, which would double-encode 8-bit values).
 */
function startRequest(conn: Connection, path: string, headers: RequestHeaders, method: 'GET' | 'POST', length?: number): OpenRequest {
  // A flat [name, value, name, value] list: Node sends repeated names (one Rcpt per recipient) as given.
  const flat: string[] = ['Host', 'localhost'];
  for (const [n, v] of headers) flat.push(n, v);
  if (length !== undefined) flat.push('Content-Length', String(length));
  else if (method === 'POST') flat.push('Transfer-Encoding', 'chunked');
  // No agent, our own connection: rspamd answers `Connection: close` (3.4 keeps no connection alive),
  // so each check has its own, made while the message was still arriving.
  const req = http.request({ createConnection: () => conn.socket, method, path, setHost: false, headers: flat });
  const response = new Promise<{ status: number; body: Buffer } | { error: Error }>((settle) => {
    req.on('error', (err) => settle({ error: err }));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (d: Buffer) => {
        size += d.length;
        if (size > MAX_REPLY) res.destroy(new Error(`reply larger than ${MAX_REPLY} bytes`));
        else chunks.push(d);
      });
      res.on('error', (err) => settle({ error: err }));
      res.on('end', () => settle({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('close', () => settle({ error: new Error('rspamd closed the connection during its reply') }));
    });
  });
  return { req, server: conn.server, response };
}

/**
 * A connection still open for the first byte of the request: the one made early if rspamd kept it,
 * else a new one (failover again). Nothing was sent on it yet, so changing server is still safe.
 */
async function usable(conn: Connection, targets: readonly RspamdTarget[], connectTimeout: number): Promise<Connection | { error: string }> {
  if (!conn.socket.destroyed && conn.socket.writable && !conn.socket.readableEnded) return conn;
  conn.socket.destroy();
  return connectFirst(targets, connectTimeout);
}

/**
 * Sends `input` to rspamd's `/checkv2` while it is read: up to `SEND_BATCH` bytes are held and sent
 * in one write with `Content-Length` at the end; a larger message is sent chunked in batches of
 * `SEND_BATCH`, honouring backpressure both ways (a slow rspamd slows the reader, and so the SMTP
 * client), its last batch and the chunked terminator in one write. Always consumes `input` to its
 * end, whatever happens to the check, so the other branches of the core's tee keep flowing.
 */
export async function checkStream(input: Readable, targets: readonly RspamdTarget[], headers: RequestHeaders, limits: CheckLimits): Promise<CheckResult> {
  const first = await connectFirst(targets, limits.connectTimeout);
  if ('error' in first) {
    await drain(input);
    return { kind: 'error', reason: 'unavailable', detail: first.error };
  }
  let conn: Connection = first;
  let open: OpenRequest | undefined;
  let answered: { status: number; body: Buffer } | { error: Error } | undefined;
  const held: Buffer[] = [];
  let heldBytes = 0;
  let sent = 0;
  let total = 0;
  let stopped: CheckResult | undefined;
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (stopped) continue;
      if (answered) {
        // rspamd answered (or failed) before the end of the message: keep reading, decide below.
        stopped = fromAnswer(answered, open!.server) ?? { kind: 'error', reason: 'failed', detail: 'rspamd answered before the end of the message', server: open!.server };
        if (stopped.kind === 'scanned') stopped = { kind: 'error', reason: 'failed', detail: 'rspamd answered before the end of the message', server: open!.server };
        continue;
      }
      if (sent + heldBytes + chunk.length > limits.maxSize) {
        stopped = { kind: 'oversize', size: 0 };
        (open?.req ?? conn.socket).destroy();
        continue;
      }
      held.push(chunk);
      heldBytes += chunk.length;
      if (heldBytes < SEND_BATCH) continue;
      if (!open) {
        const c = await usable(conn, targets, limits.connectTimeout);
        if ('error' in c) {
          stopped = { kind: 'error', reason: 'unavailable', detail: c.error };
          continue;
        }
        open = startRequest((conn = c), '/checkv2', headers, 'POST');
        void open.response.then((r) => (answered = r));
      }
      const batch = held.length === 1 ? held[0]! : Buffer.concat(held, heldBytes);
      held.length = 0;
      sent += heldBytes;
      heldBytes = 0;
      if (!open.req.write(batch) && !(await drained(open.req, limits.timeout))) {
        stopped = { kind: 'error', reason: 'timeout', detail: `rspamd read nothing for ${limits.timeout} ms`, server: open.server };
        open.req.destroy();
      }
    }
  } catch (err) {
    // The message stream failed (the client went away): nothing to scan, nothing left open.
    (open?.req ?? conn.socket).destroy();
    throw err;
  }
  // Report the full size, so logs show how far over the limit the message was.
  if (stopped?.kind === 'oversize') return { kind: 'oversize', size: total };
  if (stopped) return stopped;
  if (!open) {
    // The whole message is held: one request, its length known, written at once.
    const c = await usable(conn, targets, limits.connectTimeout);
    if ('error' in c) return { kind: 'error', reason: 'unavailable', detail: c.error };
    open = startRequest(c, '/checkv2', headers, 'POST', heldBytes);
  }
  open.req.end(held.length === 1 ? held[0]! : Buffer.concat(held, heldBytes));

  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([open.response, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), limits.timeout)))]);
  clearTimeout(timer);
  if (!r) {
    open.req.destroy();
    return { kind: 'error', reason: 'timeout', detail: `no answer from rspamd within ${limits.timeout} ms`, server: open.server };
  }
  return fromAnswer(r, open.server)!;
}

function fromAnswer(r: { status: number; body: Buffer } | { error: Error }, server: string): CheckResult | undefined {
  if ('error' in r) return { kind: 'error', reason: 'failed', detail: r.error.message, server };
  if (r.status !== 200) return { kind: 'error', reason: 'failed', detail: `HTTP ${r.status}: ${r.body.toString('utf8').slice(0, 200)}`, server };
  const reply = parseCheckReply(r.body);
  if ('error' in reply) return { kind: 'error', reason: 'failed', detail: reply.error, server };
  return { kind: 'scanned', reply, server };
}

function drained(req: http.ClientRequest, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      req.off('drain', onDrain);
      req.off('close', onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(true); // the loop notices the answer or error on its next chunk
    const timer = setTimeout(() => done(false), timeoutMs);
    req.on('drain', onDrain);
    req.on('close', onClose);
  });
}

async function drain(input: Readable): Promise<void> {
  for await (const _ of input as AsyncIterable<Buffer>) void _;
}

/**
 * Asks rspamd's `/ping` (readiness): the first server in order that answers `pong` makes the plugin
 * ready, as the first that accepts a connection is the one that scans.
 */
export async function ping(targets: readonly RspamdTarget[], connectTimeout: number, timeout: number): Promise<{ ok: true; server: string } | { ok: false; error: string }> {
  const failures: string[] = [];
  for (const t of targets) {
    const server = describeTarget(t);
    let socket: net.Socket;
    try {
      socket = await connectOne(t, connectTimeout);
    } catch (err) {
      failures.push(`${server}: ${(err as Error).message}`);
      continue;
    }
    const open = startRequest({ socket, server }, '/ping', [], 'GET');
    open.req.end();
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([open.response, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeout)))]);
    clearTimeout(timer);
    open.req.destroy();
    if (!r) failures.push(`${server}: no answer to /ping within ${timeout} ms`);
    else if ('error' in r) failures.push(`${server}: ${r.error.message}`);
    else if (r.status === 200 && r.body.toString('latin1').trim() === 'pong') return { ok: true, server };
    else failures.push(`${server}: answered HTTP ${r.status} ${JSON.stringify(r.body.toString('latin1').slice(0, 80))} to /ping`);
  }
  return { ok: false, error: failures.join('; ') || 'no rspamd configured' };
}

import http from 'node:http';
import type { Readable } from 'node:stream';
import { parseCheckReply, type CheckReply } from './check-reply.js';

/** One rspamd normal worker: TCP `host:port` or a unix socket path. */
export type RspamdTarget = { readonly host: string; readonly port: number } | { readonly socket: string };

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

export function describeTarget(t: RspamdTarget): string {
  return 'socket' in t ? `unix:${t.socket}` : `${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
}

/** Longest reply body read from rspamd (a reply with every symbol and its options stays far below). */
const MAX_REPLY = 4 * 1024 * 1024;

interface OpenRequest {
  readonly req: http.ClientRequest;
  readonly server: string;
  /** Settles with the response (or its failure) whenever it comes, even while we still write. */
  readonly response: Promise<{ status: number; body: Buffer } | { error: Error }>;
}

/**
 * Opens `POST path` to the first rspamd that accepts the connection, in order (failover). The body
 * is not started: failing over is only possible before the first byte of the message is sent,
 * because the message is streamed, never kept.
 */
async function openFirst(targets: readonly RspamdTarget[], path: string, headers: RequestHeaders, method: 'GET' | 'POST', connectTimeout: number): Promise<OpenRequest | { error: string }> {
  const failures: string[] = [];
  for (const t of targets) {
    const server = describeTarget(t);
    try {
      return await openOne(t, server, path, headers, method, connectTimeout);
    } catch (err) {
      failures.push(`${server}: ${(err as Error).message}`);
    }
  }
  return { error: failures.join('; ') || 'no rspamd configured' };
}

function openOne(t: RspamdTarget, server: string, path: string, headers: RequestHeaders, method: 'GET' | 'POST', connectTimeout: number): Promise<OpenRequest> {
  return new Promise((resolve, reject) => {
    // A flat [name, value, name, value] list: Node sends repeated names (one Rcpt per recipient) as given.
    const flat: string[] = [];
    for (const [n, v] of headers) flat.push(n, v);
    if (method === 'POST') flat.push('Transfer-Encoding', 'chunked');
    // agent: false = a fresh connection per check. rspamd answers and closes; a kept-alive socket it
    // had closed would fail our POST half-way, and a POST cannot be retried once its body is streaming.
    const req = http.request({
      ...('socket' in t ? { socketPath: t.socket } : { host: t.host, port: t.port }),
      method,
      path,
      agent: false,
      setHost: false,
      headers: ['Host', 'localhost', ...flat],
    });
    let connected = false;
    const timer = setTimeout(() => req.destroy(new Error(`connect timed out after ${connectTimeout} ms`)), connectTimeout);
    const response = new Promise<{ status: number; body: Buffer } | { error: Error }>((settle) => {
      req.on('error', (err) => {
        clearTimeout(timer);
        if (!connected) reject(err);
        settle({ error: err });
      });
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
    req.on('socket', (s) => {
      s.setNoDelay(true);
      const ready = () => {
        connected = true;
        clearTimeout(timer);
        resolve({ req, server, response });
      };
      if ((s as { connecting?: boolean }).connecting) s.once('connect', ready);
      else ready();
    });
    // No flushHeaders(): Node writes a header block flushed on its own as UTF-8 (each byte of our
    // latin1 string would become two), but with the first body chunk or end() as latin1, byte for byte.
    // The connection is made either way, so failover still happens before the first byte.
  });
}

/**
 * Streams `input` to rspamd's `/checkv2` as a chunked body while it is read, honouring backpressure
 * both ways (a slow rspamd slows the reader, and so the SMTP client). Always consumes `input` to its
 * end, whatever happens to the check, so the other branches of the core's tee keep flowing.
 */
export async function checkStream(input: Readable, targets: readonly RspamdTarget[], headers: RequestHeaders, limits: CheckLimits): Promise<CheckResult> {
  const open = await openFirst(targets, '/checkv2', headers, 'POST', limits.connectTimeout);
  if ('error' in open) {
    await drain(input);
    return { kind: 'error', reason: 'unavailable', detail: open.error };
  }
  const { req, server } = open;
  let answered: { status: number; body: Buffer } | { error: Error } | undefined;
  void open.response.then((r) => (answered = r));

  let sent = 0;
  let total = 0;
  let stopped: CheckResult | undefined;
  for await (const chunk of input as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (stopped) continue;
    if (answered) {
      // rspamd answered (or failed) before the end of the message: keep reading, decide below.
      stopped = fromAnswer(answered, server) ?? { kind: 'error', reason: 'failed', detail: 'rspamd answered before the end of the message', server };
      if (stopped.kind === 'scanned') stopped = { kind: 'error', reason: 'failed', detail: 'rspamd answered before the end of the message', server };
      continue;
    }
    if (sent + chunk.length > limits.maxSize) {
      stopped = { kind: 'oversize', size: 0 };
      req.destroy();
      continue;
    }
    sent += chunk.length;
    if (!req.write(chunk) && !(await drained(req, limits.timeout))) {
      stopped = { kind: 'error', reason: 'timeout', detail: `rspamd read nothing for ${limits.timeout} ms`, server };
      req.destroy();
    }
  }
  // Report the full size, so logs show how far over the limit the message was.
  if (stopped?.kind === 'oversize') return { kind: 'oversize', size: total };
  if (stopped) return stopped;
  req.end();

  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([open.response, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), limits.timeout)))]);
  clearTimeout(timer);
  if (!r) {
    req.destroy();
    return { kind: 'error', reason: 'timeout', detail: `no answer from rspamd within ${limits.timeout} ms`, server };
  }
  return fromAnswer(r, server)!;
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
    let open: OpenRequest;
    try {
      open = await openOne(t, server, '/ping', [], 'GET', connectTimeout);
    } catch (err) {
      failures.push(`${server}: ${(err as Error).message}`);
      continue;
    }
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

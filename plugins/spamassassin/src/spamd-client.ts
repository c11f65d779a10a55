import net from 'node:net';
import type { Readable } from 'node:stream';
import { describeBackendTarget, type BackendTarget } from '@portcullis/core';

/** Where spamd listens: TCP (`host`, `port`) or a unix socket path. */
export type SpamdTarget = BackendTarget;

/** The SPAMD/1.5 commands that scan a message (PING is `ping` below). */
export type SpamdCommand = 'CHECK' | 'SYMBOLS' | 'REPORT' | 'HEADERS';

export interface SpamdRequest {
  readonly command: SpamdCommand;
  /** spamd's `User:` header: whose per-user preferences it applies (with its `--virtual-config-dir` or SQL prefs). */
  readonly user?: string;
  /** Bytes sent before the message (a Received line for spamd's relay rules); counted in Content-length. */
  readonly prefix?: Buffer;
  /** Byte length of what `open()` streams. */
  readonly size: number;
  /** A fresh stream over the message bytes (CRLF). */
  open(): Readable;
}

export interface SpamdLimits {
  /** Time to connect to one spamd before the next is tried. */
  readonly connectTimeout: number;
  /** Longest the whole exchange may take once connected (send, scan, answer). */
  readonly timeout: number;
  /** Largest answer read (REPORT and HEADERS bodies); more is an error, never buffered. */
  readonly maxAnswer?: number;
}

export type SpamdResult =
  | {
      readonly kind: 'scanned';
      readonly server: string;
      /** spamd's own verdict: score at or above its `required_score`. */
      readonly isSpam: boolean;
      readonly score: number;
      /** spamd's `required_score` for this user. */
      readonly required: number;
      /** SYMBOLS: the rule names that hit. */
      readonly symbols?: readonly string[];
      /** REPORT: the report text; HEADERS: the message's header section as spamd rewrote it. */
      readonly body?: string;
    }
  | { readonly kind: 'error'; readonly reason: 'unavailable' | 'timeout' | 'failed'; readonly detail: string; readonly server?: string };

export const describeTarget = (t: SpamdTarget): string => describeBackendTarget(t);

/** Connects to the first target that accepts within `connectTimeout`; failover happens only here. */
async function connectFirst(targets: readonly SpamdTarget[], connectTimeout: number): Promise<{ socket: net.Socket; server: string } | { error: string }> {
  const errors: string[] = [];
  for (const t of targets) {
    const server = describeTarget(t);
    try {
      const socket = await new Promise<net.Socket>((resolve, reject) => {
        const s = 'socket' in t ? net.connect({ path: t.socket }) : net.connect({ host: t.host, port: t.port });
        const timer = setTimeout(() => (s.destroy(), reject(new Error('connect timed out'))), connectTimeout);
        s.once('connect', () => (clearTimeout(timer), s.setNoDelay(true), resolve(s)));
        s.once('error', (err) => (clearTimeout(timer), s.destroy(), reject(err)));
      });
      return { socket, server };
    } catch (err) {
      errors.push(`${server}: ${(err as Error).message}`);
    }
  }
  return { error: errors.join('; ') || 'no spamd servers configured' };
}

/** Reads the whole answer (spamd closes after it), at most `max` bytes. */
function collectAnswer(socket: net.Socket, max: number, onTooLarge: () => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    socket.on('data', (d: Buffer) => {
      n += d.length;
      if (n > max) return onTooLarge();
      chunks.push(d);
    });
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('close', () => resolve(Buffer.concat(chunks)));
    socket.once('error', reject);
  });
}

/** A SPAMD/1.x answer: status line, headers, body. */
export function parseAnswer(raw: string): { code: number; message: string; headers: Map<string, string>; body: string } {
  const end = raw.indexOf('\r\n\r\n');
  const head = end >= 0 ? raw.slice(0, end) : raw;
  const body = end >= 0 ? raw.slice(end + 4) : '';
  const [status = '', ...lines] = head.split('\r\n');
  const m = /^SPAMD\/\d+\.\d+ (\d+) (.*)$/.exec(status);
  if (!m) throw new Error(`not a spamd answer: ${JSON.stringify(status.slice(0, 80))}`);
  const headers = new Map<string, string>();
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
  }
  return { code: Number(m[1]), message: m[2]!, headers, body };
}

/**
 * One scan: `<COMMAND> SPAMC/1.5`, `Content-length`, optional `User`, a blank line, then the
 * message streamed with the socket's backpressure (never held whole in memory), then spamd's
 * answer. Every failure is a result (`error`), never a throw; the socket is always closed.
 */
export async function scan(req: SpamdRequest, targets: readonly SpamdTarget[], limits: SpamdLimits): Promise<SpamdResult> {
  const conn = await connectFirst(targets, limits.connectTimeout);
  if ('error' in conn) return { kind: 'error', reason: 'unavailable', detail: conn.error };
  const { socket, server } = conn;
  const length = (req.prefix?.length ?? 0) + req.size;
  let source: Readable | undefined;
  let failure: SpamdResult | undefined;
  const fail = (reason: 'timeout' | 'failed', detail: string) => {
    failure ??= { kind: 'error', reason, detail, server };
    source?.destroy();
    socket.destroy();
  };
  const timer = setTimeout(() => fail('timeout', `no answer within ${limits.timeout} ms`), limits.timeout);
  socket.on('error', (err) => fail('failed', err.message));
  const answer = collectAnswer(socket, limits.maxAnswer ?? 1024 * 1024, () => fail('failed', 'answer too large')).catch((err: Error) => (fail('failed', err.message), Buffer.alloc(0)));
  try {
    const user = req.user ? `User: ${req.user.replace(/[^\x21-\x7e]/g, '')}\r\n` : '';
    socket.write(`${req.command} SPAMC/1.5\r\nContent-length: ${length}\r\n${user}\r\n`);
    if (req.prefix) socket.write(req.prefix);
    const src = (source = req.open());
    src.on('error', (err) => fail('failed', `reading the spooled message: ${err.message}`));
    let sent = 0;
    for await (const chunk of src as AsyncIterable<Buffer>) {
      if (failure) break;
      sent += chunk.length;
      if (!socket.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = () => (socket.off('drain', done), socket.off('close', done), resolve());
          socket.on('drain', done);
          socket.on('close', done);
        });
      }
    }
    if (!failure && sent !== req.size) fail('failed', `the message was ${sent} bytes, not the ${req.size} announced`);
    const raw = await answer;
    if (failure) return failure;
    // The status line and headers are ASCII; a REPORT or HEADERS body is UTF-8 text.
    const a = parseAnswer(raw.toString('utf8'));
    if (a.code !== 0) return { kind: 'error', reason: 'failed', detail: `spamd answered ${a.code} ${a.message}`, server };
    const spam = /^(True|False|Yes|No)\s*;\s*(-?[\d.]+)\s*\/\s*(-?[\d.]+)/i.exec(a.headers.get('spam') ?? '');
    if (!spam) return { kind: 'error', reason: 'failed', detail: `spamd answered without a Spam header: ${JSON.stringify(raw.toString('latin1').slice(0, 120))}`, server };
    const body = a.body;
    return {
      kind: 'scanned',
      server,
      isSpam: /^(true|yes)$/i.test(spam[1]!),
      score: Number(spam[2]),
      required: Number(spam[3]),
      // Rule names are [A-Z0-9_]; anything else spamd might send is left out of our header.
      ...(req.command === 'SYMBOLS' ? { symbols: body.split(',').map((s) => s.trim()).filter((s) => /^[A-Za-z0-9_.:-]{1,100}$/.test(s)) } : {}),
      ...(req.command === 'REPORT' || req.command === 'HEADERS' ? { body } : {}),
    };
  } catch (err) {
    fail('failed', (err as Error).message);
    return failure!;
  } finally {
    clearTimeout(timer);
    source?.destroy();
    socket.destroy();
  }
}

/** `PING SPAMC/1.5` to each target in order until one answers `PONG`. */
export async function ping(targets: readonly SpamdTarget[], connectTimeout: number, timeout: number): Promise<{ ok: true; server: string } | { ok: false; error: string }> {
  const errors: string[] = [];
  for (const t of targets) {
    const conn = await connectFirst([t], connectTimeout);
    if ('error' in conn) {
      errors.push(conn.error);
      continue;
    }
    const { socket, server } = conn;
    const timer = setTimeout(() => socket.destroy(), timeout);
    try {
      socket.write('PING SPAMC/1.5\r\n\r\n');
      const raw = await collectAnswer(socket, 4096, () => socket.destroy());
      if (/^SPAMD\/\d+\.\d+ 0 PONG\r?\n/.test(raw.toString('latin1'))) return { ok: true, server };
      errors.push(`${server}: answered ${JSON.stringify(raw.toString('latin1').slice(0, 60))}`);
    } catch (err) {
      errors.push(`${server}: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
      socket.destroy();
    }
  }
  return { ok: false, error: errors.join('; ') || 'no spamd servers configured' };
}

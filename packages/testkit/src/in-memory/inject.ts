import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { duplexPair, type Duplex } from 'node:stream';
import { parseConfig, Relay, Tokens, type PluginDefinition, type RelayConfigInput, type SpooledMessage, type StreamClient } from '@portcullis/core';
import { DeliveryCapture, type CaptureResponder, type CapturedDelivery } from './delivery-capture.js';
import type { FakeClock } from './fake-clock.js';
import { memoryLogger, type LogEntry } from './memory-log.js';
import { ScriptedResolver, type DnsScript } from './scripted-dns.js';

/** A plugin for an in-memory relay: a definition given in code, or a config entry (`use` may be a definition). */
export type PluginSpec =
  | PluginDefinition
  | { readonly use: PluginDefinition | string; readonly with?: unknown; readonly timeout?: number | string; readonly enabled?: boolean };

/**
 * One step of a transcript: a command line (sent with CRLF), or the message after `DATA` (a string
 * has its bare LFs turned into CRLF; a Buffer goes as it is; both are dot-stuffed and get the
 * final `.`), or `{ raw }` bytes sent exactly as given (then one reply is read).
 */
export type TranscriptStep = string | Buffer | { readonly message: string | Buffer } | { readonly raw: string | Buffer };

/** One SMTP reply, as the client saw it. */
export interface SmtpReply {
  /** The step it answers: the command line, `<message>`, `<raw>`, or `<greeting>`. */
  readonly command: string;
  readonly code: number;
  /** The enhanced status code of the last line, when there is one. */
  readonly enhanced?: string;
  /** The last line's text after the codes. */
  readonly text: string;
  /** Every line, as received, without CRLF. */
  readonly lines: readonly string[];
}

/** A message as it was committed to the spool: envelope and the exact bytes the next hop gets. */
export interface SpooledCapture {
  readonly id: string;
  readonly mailFrom: string;
  readonly recipients: readonly string[];
  /** Our headers (Received, plugin headers), then the message as stored. */
  readonly bytes: Buffer;
  readonly isBounce: boolean;
}

export interface InMemoryRelayOptions {
  /** Config as in the YAML file (spool and listen have test defaults); plugins go in `plugins`. */
  readonly config?: Partial<RelayConfigInput>;
  /** The plugins, in order. */
  readonly plugins?: readonly PluginSpec[];
  /** Scripted DNS (registered as `Tokens.Resolver`); default: an empty script (every name NXDOMAIN). */
  readonly dns?: ScriptedResolver | DnsScript;
  /** A clock for `Tokens.Clock` (see `fakeClock()`); default the real time. */
  readonly clock?: FakeClock | (() => number);
  /** How the captured next hops answer each recipient; default `250`. */
  readonly nextHop?: CaptureResponder;
  /** Run the delivery queue into the capture (default true). */
  readonly deliver?: boolean;
  /** Folder relative plugin paths (`use: ./x.js`) resolve against; default the working folder. */
  readonly configDir?: string;
  /** Extra `[token, value]` services for the container. */
  readonly services?: ReadonlyArray<readonly [symbol, unknown]>;
}

export interface SessionResult {
  /** The greeting first, then one reply per step, in order. */
  readonly replies: SmtpReply[];
  /** True when the relay closed the connection before the transcript ended. */
  readonly closedEarly: boolean;
}

export interface InjectResult extends SessionResult {
  readonly spooled: SpooledCapture[];
  readonly deliveries: CapturedDelivery[];
  readonly logs: LogEntry[];
  /** The DNS queries plugins made. */
  readonly dnsQueries: ScriptedResolver['queries'];
}

/**
 * A whole relay without any socket: SMTP sessions run over in-memory stream pairs (smtp-server
 * serves any duplex stream), deliveries go to a capture. Open several sessions, then `close()`.
 */
export class InMemoryRelay {
  readonly spooled: SpooledCapture[] = [];
  readonly logs: LogEntry[];
  private closed = false;

  private constructor(
    readonly relay: Relay,
    readonly capture: DeliveryCapture,
    readonly resolver: ScriptedResolver,
    logs: LogEntry[],
    private readonly spoolDir: string,
  ) {
    this.logs = logs;
  }

  get deliveries(): CapturedDelivery[] {
    return this.capture.deliveries;
  }

  static async create(opts: InMemoryRelayOptions = {}): Promise<InMemoryRelay> {
    const spoolDir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-inject-'));
    const builtins: Record<string, PluginDefinition> = {};
    const entries = (opts.plugins ?? []).map((spec, i) => {
      const entry = 'kind' in spec && spec.kind === 'portcullis-plugin' ? { use: spec as PluginDefinition } : (spec as Exclude<PluginSpec, PluginDefinition>);
      let use: string;
      if (typeof entry.use === 'string') use = entry.use;
      else {
        use = builtins[entry.use.name] && builtins[entry.use.name] !== entry.use ? `${entry.use.name}#${i}` : entry.use.name;
        builtins[use] = entry.use;
      }
      return { use, ...(entry.with !== undefined ? { with: entry.with } : {}), ...(entry.timeout !== undefined ? { timeout: entry.timeout } : {}), ...(entry.enabled !== undefined ? { enabled: entry.enabled } : {}) };
    });
    const config = parseConfig({
      hostname: 'relay.test',
      listen: [{ host: '127.0.0.1', port: 25 }],
      ...opts.config,
      spool: { dir: spoolDir },
      plugins: [...((opts.config?.plugins as unknown[]) ?? []), ...entries],
    });
    const resolver = opts.dns instanceof ScriptedResolver ? opts.dns : new ScriptedResolver(opts.dns ?? {});
    const capture = new DeliveryCapture(opts.nextHop);
    const { logger, entries: logs } = memoryLogger();
    const services: Array<readonly [symbol, unknown]> = [[Tokens.Resolver, resolver]];
    if (opts.clock) services.push([Tokens.Clock, opts.clock]);
    services.push(...(opts.services ?? []));
    let self: InMemoryRelay | undefined;
    let relay: Relay;
    try {
      relay = await Relay.create({
        config,
        configFile: opts.configDir ? path.join(opts.configDir, 'inject.yaml') : undefined,
        logger,
        builtins,
        listen: false,
        deliver: opts.deliver ?? true,
        transport: capture,
        services,
        onSpooled: (m) => self?.record(m),
      });
    } catch (err) {
      rmSync(spoolDir, { recursive: true, force: true });
      throw err;
    }
    self = new InMemoryRelay(relay, capture, resolver, logs, spoolDir);
    await relay.start();
    return self;
  }

  private record(m: SpooledMessage): void {
    // Opened at once, through the spool's own reader (file or segment), before delivery can
    // remove it; `settle()` waits for the bytes.
    const entry = { id: m.meta.id, mailFrom: m.meta.mailFrom, recipients: [...m.meta.recipients], bytes: Buffer.alloc(0), isBounce: !!m.meta.isBounce };
    this.spooled.push(entry);
    const chunks: Buffer[] = [];
    const stream = this.relay.spool.openMessage(m.meta);
    this.reads.push(
      (async () => {
        for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
        entry.bytes = Buffer.concat(chunks);
      })(),
    );
  }
  private readonly reads: Array<Promise<void>> = [];

  /** Runs one SMTP session through the transcript and returns every reply. */
  async session(transcript: readonly TranscriptStep[], client: StreamClient & { readonly timeoutMs?: number } = {}): Promise<SessionResult> {
    if (this.closed) throw new Error('InMemoryRelay: closed');
    const [ours, theirs] = duplexPair();
    const reader = new ReplyReader(ours, client.timeoutMs ?? 15_000);
    this.relay.connectStream(theirs, client);
    const replies: SmtpReply[] = [];
    let closedEarly = false;
    try {
      replies.push(await reader.next('<greeting>'));
      let lastCode = replies[0]!.code;
      for (const step of transcript) {
        if (reader.ended) {
          closedEarly = true;
          break;
        }
        if (typeof step === 'string') {
          ours.write(step + '\r\n');
          const r = await reader.next(step);
          replies.push(r);
          lastCode = r.code;
        } else if (Buffer.isBuffer(step) || 'message' in step) {
          const body = Buffer.isBuffer(step) ? step : step.message;
          if (lastCode !== 354) continue; // DATA was refused: there is nothing to send the message into
          ours.write(dotStuff(body));
          const r = await reader.next('<message>');
          replies.push(r);
          lastCode = r.code;
        } else {
          ours.write(step.raw);
          const r = await reader.next('<raw>');
          replies.push(r);
          lastCode = r.code;
        }
      }
    } catch (err) {
      if (!(err instanceof ConnectionEnded)) throw err;
      closedEarly = true;
    } finally {
      ours.end();
      await reader.closed();
      // A transcript that stops without QUIT: hang up, as a client that drops the connection.
      if (!reader.ended) theirs.destroy();
    }
    return { replies, closedEarly };
  }

  /** Waits until no delivery is in progress or due. */
  async settle(): Promise<void> {
    await this.relay.queue.idle();
    await Promise.all(this.reads);
  }

  /** Stops the relay (plugins close) and removes the temp spool. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.settle();
      await this.relay.stop();
    } finally {
      this.resolver.cancel();
      rmSync(this.spoolDir, { recursive: true, force: true });
    }
  }
}

export interface InjectOptions extends InMemoryRelayOptions {
  /** The client's side of the session. Default: greet, nothing else. */
  readonly transcript?: readonly TranscriptStep[];
  /** Shortcut for the usual session: EHLO, MAIL FROM, RCPT TO each, DATA, the message, QUIT. */
  readonly mail?: { readonly from: string; readonly to: string | readonly string[]; readonly message: string | Buffer; readonly helo?: string };
  /** Who the client is: address, port, listener, `secure` (treated as TLS: AUTH is offered). */
  readonly client?: StreamClient;
}

/**
 * Drives a whole relay (these plugins, this config) through one SMTP session in memory, like
 * Fastify's `inject()`: no port, no socket. Returns every reply, what was spooled and what each
 * next hop would have received.
 *
 * ```ts
 * const r = await inject({ plugins: [policy], mail: { from: 'a@x.test', to: 'b@hosted.test', message } });
 * assert.equal(r.replies.at(-2)!.code, 250);
 * ```
 */
export async function inject(opts: InjectOptions): Promise<InjectResult> {
  const relay = await InMemoryRelay.create(opts);
  try {
    const transcript = opts.transcript ?? (opts.mail ? mailTranscript(opts.mail) : []);
    const result = await relay.session(transcript, opts.client);
    await relay.settle();
    return { ...result, spooled: relay.spooled, deliveries: relay.deliveries, logs: relay.logs, dnsQueries: relay.resolver.queries };
  } finally {
    await relay.close();
  }
}

/** EHLO, MAIL FROM, RCPT TO (each), DATA, the message, QUIT. */
export function mailTranscript(mail: NonNullable<InjectOptions['mail']>): TranscriptStep[] {
  const to = typeof mail.to === 'string' ? [mail.to] : mail.to;
  return [`EHLO ${mail.helo ?? 'client.test'}`, `MAIL FROM:<${mail.from}>`, ...to.map((r) => `RCPT TO:<${r}>`), 'DATA', { message: mail.message }, 'QUIT'];
}

/** CRLF line ends (for strings), a leading dot doubled, then the end-of-data marker. */
export function dotStuff(message: string | Buffer): Buffer {
  let buf = typeof message === 'string' ? Buffer.from(message.replace(/\r?\n/g, '\r\n')) : message;
  if (buf.length && !(buf[buf.length - 2] === 0x0d && buf[buf.length - 1] === 0x0a)) buf = Buffer.concat([buf, Buffer.from('\r\n')]);
  const text = buf.toString('latin1');
  const stuffed = (text.startsWith('.') ? '.' : '') + text.replace(/\r\n\./g, '\r\n..');
  return Buffer.concat([Buffer.from(stuffed, 'latin1'), Buffer.from('.\r\n')]);
}

class ConnectionEnded extends Error {}

/** Reads whole SMTP replies (`250-...` lines up to the `250 ` one) from the client side of the pair. */
class ReplyReader {
  private buffer = '';
  private lines: string[] = [];
  private waiter?: () => void;
  ended = false;
  private readonly done: Promise<void>;

  constructor(private readonly stream: Duplex, private readonly timeoutMs: number) {
    stream.setEncoding('latin1');
    stream.on('data', (chunk: string) => {
      this.buffer += chunk;
      let i: number;
      while ((i = this.buffer.indexOf('\r\n')) >= 0) {
        this.lines.push(this.buffer.slice(0, i));
        this.buffer = this.buffer.slice(i + 2);
      }
      this.waiter?.();
    });
    this.done = new Promise<void>((resolve) => {
      const end = () => {
        this.ended = true;
        this.waiter?.();
        resolve();
      };
      stream.once('end', end);
      stream.once('close', end);
      stream.on('error', end);
    });
  }

  async next(command: string): Promise<SmtpReply> {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const last = this.lines.findIndex((l) => /^\d{3}(?: |$)/.test(l));
      if (last >= 0) {
        const lines = this.lines.splice(0, last + 1);
        const final = lines[lines.length - 1]!;
        const m = /^(\d{3})(?: (\d\.\d{1,3}\.\d{1,3}))?(?: (.*))?$/.exec(final)!;
        return { command, code: Number(m[1]), enhanced: m[2], text: m[3] ?? '', lines };
      }
      if (this.ended) throw new ConnectionEnded(`connection closed while waiting for the reply to ${command}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`inject: no reply to ${JSON.stringify(command)} within ${this.timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          this.waiter = undefined;
          resolve();
        };
      });
    }
  }

  closed(): Promise<void> {
    // The relay answers QUIT and ends its side at once; without QUIT the caller hangs up.
    this.stream.resume();
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([this.done, new Promise<void>((r) => (timer = setTimeout(r, 50)))]).finally(() => clearTimeout(timer));
  }
}

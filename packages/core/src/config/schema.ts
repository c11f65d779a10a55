import { z } from 'zod';
import { networkList } from './networks.js';
import { parseDuration, parseSize } from './units.js';

/** A size such as `25MB`, `512KB` or a number of bytes. */
export const size = () =>
  z.union([z.string(), z.number()]).transform((v, ctx) => {
    const n = parseSize(v);
    if (n === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected a size such as 25MB, 512KB or a number of bytes, got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return n;
  }).meta({ docType: 'size' });

/** A duration such as `30s`, `5m`, `250ms` or a number of milliseconds. */
export const duration = () =>
  z.union([z.string(), z.number()]).transform((v, ctx) => {
    const n = parseDuration(v);
    if (n === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected a duration such as 30s, 5m, 2h, 250ms or a number of milliseconds, got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return n;
  }).meta({ docType: 'duration' });

const hostPort = /^(\[[0-9a-fA-F:.]+\]|[^\s:]+):(\d{1,5})$/;
/** `host:port` or `[v6]:port`. */
export const hostAndPort = () =>
  z.string().transform((v, ctx) => {
    const m = hostPort.exec(v);
    const port = m ? Number(m[2]) : NaN;
    if (!m || port < 1 || port > 65535) {
      ctx.addIssue({ code: 'custom', message: `expected host:port (e.g. 10.0.0.5:25 or [::1]:2525), got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
  }).meta({ docType: 'host:port' });

export const listenerSchema = z.strictObject({
  /** Name used in logs; defaults to `host:port`. */
  name: z.string().min(1).optional(),
  /** Address to bind. Defaults to loopback: exposing the relay is an explicit choice. */
  host: z.string().min(1).default('127.0.0.1'),
  port: z.number().int().min(0).max(65535),
  tls: z.enum(['none', 'starttls', 'implicit']).default('none'),
  auth: z.enum(['off', 'optional', 'required']).default('off'),
  /**
   * Pause before the 220 greeting (early-talker detection). smtp-server's built-in 100 ms is kept
   * as the default for anonymous listeners; `0` for trusted or submission listeners.
   */
  greetingDelay: duration().optional(),
  /**
   * Peers (networks, parsed strictly by networks.ts) allowed to send XCLIENT: their word replaces the
   * client address, for policy too. None by default; `0.0.0.0/0` works but is warned about at start.
   */
  xclient: networkList(),
  /** Peers allowed to send XFORWARD: the forwarded client is recorded (logs, Received), never trusted. None by default. */
  xforward: networkList(),
  /** Peers that must start with a PROXY protocol v1 header (a load balancer); the header's source becomes the client. None by default. */
  proxyProtocol: networkList(),
});

export const pluginEntrySchema = z.strictObject({
  /** Short name (`relay-policy` = `@portcullis/relay-policy`), package name, or `./path.js`. */
  use: z.string().min(1),
  /** The plugin's own options, validated by its schema. */
  with: z.unknown().optional(),
  /** How long one hook call may take before it counts as failed (451 4.3.0). */
  timeout: duration().default(30_000),
  /** Leave the plugin out without deleting its entry. */
  enabled: z.boolean().default(true),
});

export const logFileSchema = z.strictObject({
  /** The log file; rotated files get `.1`, `.2` ... before the extension. Relative to the config file. */
  path: z.string().min(1),
  /** Rotate when the current file reaches this size. */
  size: size().default(100 * 1024 * 1024),
  /** Also rotate on a schedule: `daily`, `hourly`, or a duration such as `6h`. */
  frequency: z.union([z.enum(['daily', 'hourly']), duration()]).optional(),
  /** Files kept, the current one included: the oldest are removed at each rotation. Total size stays below (size + 16 KB) × files. */
  files: z.number().int().min(2).max(1000).default(10),
  /**
   * Log lines held in memory while the disk is slow or full; past this, new lines are dropped and
   * counted (portcullis_log_lines_dropped_total): mail never waits for, nor is refused by, the log.
   */
  buffer: size().default(4 * 1024 * 1024),
});

export const adminSchema = z.strictObject({
  enabled: z.boolean().default(false),
  /** Loopback by default: metrics and readiness are for the operator's scraper, not the Internet. */
  host: z.string().min(1).default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(9025),
  /** When set, every request needs `Authorization: Bearer <token>`. */
  token: z.string().min(16, 'a token of at least 16 characters').optional(),
  /** The token read from a file (first line), relative to the config file; keeps it out of the config. */
  tokenFile: z.string().min(1).optional(),
  /** Longest one readiness check (a plugin's) may take before it counts as not ready. */
  readyTimeout: duration().default(2_000),
});

export const configSchema = z.strictObject({
  /** Our name in the greeting, in Received headers and in bounces. */
  hostname: z.string().min(1).default('localhost'),
  listen: z.array(listenerSchema).min(1, 'at least one listener is needed'),
  /**
   * Where `RCPT TO:<postmaster>` (no domain, RFC 5321 section 4.5.1) goes. Default: postmaster@ the
   * first hosted domain (relay-policy's `domains`).
   */
  postmaster: z.string().regex(/^[^\s@<>]+@[^\s@<>]+$/, 'expected a mail address such as postmaster@example.com').optional(),
  tls: z
    .strictObject({
      key: z.string().min(1),
      cert: z.string().min(1),
      /** Lowest protocol accepted from clients. */
      minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
    })
    .optional(),
  spool: z
    .strictObject({
      dir: z.string().min(1).default('./var/spool'),
      /**
       * Messages up to this size are held in memory while they arrive and committed to an
       * append-only segment, many at once (one fdatasync per batch); larger ones get a file each.
       */
      inlineMax: size().default(256 * 1024),
      /** A segment takes appends until it reaches this size; then a new one starts. */
      segmentSize: size().default(32 * 1024 * 1024),
      /**
       * Free space the spool's file system must keep: below it, MAIL FROM gets 452 4.3.1.
       * Default: the larger of 1.5 × limits.messageSize and 100MB. 0 turns the guard off.
       */
      minFree: size().optional(),
      /**
       * Of `minFree`, how much trusted clients (authenticated users, and networks a plugin vouches
       * for, such as relay-policy's trustedNetworks) may still use once everyone else gets 452 4.3.1:
       * they are refused only below minFree − reserve, so temp space held by anonymous clients never
       * locks them out. Default: half of minFree.
       */
      reserve: size().optional(),
    })
    .prefault({}),
  limits: z
    .strictObject({
      /** Largest message accepted (advertised as SIZE); over it: 552 5.3.4. */
      messageSize: size().default(25 * 1024 * 1024),
      /** Recipients per message; over it: 452 4.5.3. */
      recipients: z.number().int().min(1).default(100),
      /** Simultaneous connections in total; over it: 421. */
      connections: z.number().int().min(1).default(1000),
      /** Simultaneous connections per client IP; over it: 421 4.7.0. */
      connectionsPerIp: z.number().int().min(1).default(20),
      /** Idle time allowed between client commands; then 421 and close. */
      idleTimeout: duration().default(300_000),
      /** Longest a whole connection may last; then 421 4.4.2 and close. */
      sessionTimeout: duration().default(1_800_000),
      /** Largest top-level header section; over it: 552 5.3.4. */
      headerSize: size().default(256 * 1024),
      /** Most header fields in the top-level header section; over it: 552 5.3.4. */
      headerFields: z.number().int().min(1).default(1000),
      /** Most Received fields a message may carry; over it: 554 5.4.6 (a mail loop). Postfix uses 50. */
      maxReceived: z.number().int().min(1).default(50),
      /** Slowest DATA accepted, in bytes per second over each `dataRateWindow`; 0 turns it off. Then 421 4.4.2. */
      minDataRate: z.number().int().min(0).default(256),
      /** The window over which `minDataRate` is measured. */
      dataRateWindow: duration().default(30_000),
      /**
       * How long the DATA pass waits on a plugin's raw reader (or the MIME pass) that takes no data
       * while its promise is still pending; then the transaction ends with 451 4.3.0, the plugin is
       * named in the log and the temp file is removed. A reader whose promise settled is never waited on.
       */
      readerStall: duration().default(10_000),
      /**
       * Longest from the end of DATA (the final dot) to the reply: raw readers, part screeners, the
       * message hook and the spool commit together. Past it: 451 4.3.0, nothing queued.
       */
      dataDeadline: duration().default(120_000),
      /** Longest one command line may take to arrive (first byte to CRLF, outside DATA); then 421 4.4.2. 0 = off. */
      commandTimeout: duration().default(60_000),
      /** NOOP/RSET/VRFY/EXPN/HELP/ETRN per session before each one counts as an error (Postfix's smtpd_junk_command_limit). */
      junkCommands: z.number().int().min(0).default(100),
      /** MAIL commands per session; past it: 421 4.7.0 and close. 0 = no limit. */
      transactionsPerSession: z.number().int().min(0).default(1000),
      /** Unrecognised commands per session; past it: 421 4.7.0 and close. */
      unknownCommands: z.number().int().min(0).default(10),
      /** Error replies (4xx/5xx) in a session before its commands are slowed down (Postfix's soft error limit). */
      tarpitAfter: z.number().int().min(0).default(10),
      /** The pause before each command of a tarpitted session, times the errors past tarpitAfter. 0 = no tarpit. */
      tarpitDelay: duration().default(1_000),
      /** The tarpit pause never exceeds this. */
      tarpitMax: duration().default(10_000),
      /** Error replies in a session before 421 4.7.0 and close (Postfix's hard error limit). 0 = no limit. */
      maxErrors: z.number().int().min(0).default(20),
      /**
       * Recipients past `recipients` (each answered 452 4.5.3) a session may send before those
       * replies count as errors (Postfix's smtpd_recipient_overshoot_limit): a client that pipelines
       * its whole list gets 452 for the extras and DATA for the rest, without tarpit or disconnect.
       */
      recipientOvershoot: z.number().int().min(0).default(1000),
      /** Longest a TLS handshake after STARTTLS may take; then the connection is closed (the idle timeout would hold it for minutes). 0 = off. */
      tlsHandshakeTimeout: duration().default(30_000),
      /**
       * MIME structure limits for the part-screening pass (only parsed when a plugin screens parts).
       * Kept well below mailsplit's own hard limit of 1,000 nodes, which it reports as an error.
       */
      mime: z
        .strictObject({
          /** Most MIME parts (every node, multipart containers included); over it: 552 5.3.4. */
          parts: z.number().int().min(1).max(999).default(500),
          /** Deepest nesting of multiparts and attached messages; over it: 554 5.6.0. */
          depth: z.number().int().min(1).max(999).default(50),
          /** Most header fields in one MIME part's header; over it (or a part header over limits.headerSize): 552 5.3.4. */
          partHeaderFields: z.number().int().min(1).default(200),
          /** `reject` (default) refuses such a message; `pass-unscreened` lets it through without part screening (raw readers still run). */
          overLimit: z.enum(['reject', 'pass-unscreened']).default('reject'),
        })
        .prefault({}),
    })
    .prefault({}),
  bareLineEndings: z
    .strictObject({
      /**
       * Client networks (CIDR) whose bare CR / bare LF are turned into CRLF instead of rejected
       * (legacy internal applications). Everyone else gets 550 5.6.0. NUL is refused from everyone.
       */
      normalize: networkList(),
    })
    .prefault({}),
  shutdown: z
    .strictObject({
      /** On SIGTERM: how long transactions in DATA may take to finish and get their real reply. */
      drainTime: duration().default(30_000),
    })
    .prefault({}),
  delivery: z
    .strictObject({
      /** Waits between attempts; the last one repeats until maxQueueTime. */
      retrySchedule: z.array(duration()).min(1).default([60_000, 300_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 14_400_000]),
      /** After this, a deferred recipient bounces. */
      maxQueueTime: duration().default(5 * 86_400_000),
      /** After this, the sender of a still-deferred message gets one delay warning (RFC 3464 `Action: delayed`); 0 turns it off. */
      delayWarning: duration().default(4 * 3_600_000),
      /** Messages delivered at once. */
      concurrency: z.number().int().min(1).default(20),
      /** Simultaneous connections to one next-hop host (idle reused ones count). */
      maxConnectionsPerHost: z.number().int().min(1).default(10),
      /** How long an idle connection to a next hop is kept for reuse; 0 closes after each message. */
      connectionIdle: duration().default(2_000),
      /** How long a host whose STARTTLS handshake failed gets plaintext (opportunistic TLS only). */
      tlsFallback: duration().default(3_600_000),
      /** Time to open the TCP connection to a next hop. */
      connectTimeout: duration().default(30_000),
      /** Longest a next hop may stay silent after commands without an RFC 5321 timeout (EHLO, STARTTLS, AUTH, RSET). */
      socketTimeout: duration().default(300_000),
      /** How long to wait for each reply of the next hop, RFC 5321 section 4.5.3.2 (defaults are its minimums). */
      timeouts: z
        .strictObject({
          greeting: duration().default(300_000),
          mail: duration().default(300_000),
          rcpt: duration().default(300_000),
          /** The 354 after DATA. */
          data: duration().default(120_000),
          /** Each block of message data written (the next hop reading it). */
          dataBlock: duration().default(180_000),
          /** The reply after the final dot: short values make duplicates (the next hop may have the message). */
          finalDot: duration().default(600_000),
        })
        .prefault({}),
    })
    .prefault({}),
  sharedState: z
    .strictObject({
      /**
       * Share rate counters, the AUTH failure throttle and the DNSBL cache with every node using the
       * same Redis. Without it, state stays in this process. When Redis is down, each node falls back
       * to its own local state (logged, counted) and shares again once it returns.
       */
      redis: z
        .strictObject({
          url: z.string().regex(/^rediss?:\/\//, 'expected a redis:// or rediss:// URL'),
          /** Prefix of every key; nodes of one cluster use the same. */
          keyPrefix: z.string().default('portcullis:'),
          /** Longest one Redis command may take before the node answers from local state. */
          timeout: duration().default(500),
        })
        .optional(),
    })
    .prefault({}),
  dns: z
    .strictObject({
      /** Resolver addresses (`127.0.0.1`, `127.0.0.1:5353`); default: the system's. */
      servers: z.array(z.string().min(1)).optional(),
      timeout: duration().default(5_000),
    })
    .prefault({}),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      /** Write the log to rotated files instead of stdout (see log-destination.ts). */
      file: logFileSchema.optional(),
    })
    .prefault({}),
  /**
   * Processes that run the relay (packages/core/README.md, "Workers"). 1: one process, as before
   * (no primary). N > 1: a primary owns the listening sockets, the admin and control servers and
   * the log stream, and N worker processes each run the whole pipeline on their own spool shard
   * (`<spool.dir>/w<i>`). `auto`: one worker per core the process may use
   * (`os.availableParallelism()`). Read at start; a reload cannot change it.
   */
  workers: z.union([z.number().int().min(1).max(256), z.literal('auto')]).default(1),
  /** The admin HTTP listener: /metrics, /healthz, /readyz. Off by default. */
  admin: adminSchema.prefault({}),
  plugins: z.array(pluginEntrySchema).default([]),
});

export type RelayConfig = z.output<typeof configSchema>;
export type ListenerConfig = RelayConfig['listen'][number];
export type PluginEntry = RelayConfig['plugins'][number];
export type RelayConfigInput = z.input<typeof configSchema>;

import path from 'node:path';
import { duration, size, z } from '@portcullis/core';
import type { ClamdTarget } from './clamd-client.js';
import { parseCidr } from './networks.js';

/** Debian's clamd.conf `LocalSocket`. */
export const DEFAULT_SOCKET = '/run/clamav/clamd.ctl';

const hostPort = /^(\[[0-9a-fA-F:.]+\]|[^\s:/]+):(\d{1,5})$/;

/** `host:port`, `[v6]:port`, or an absolute path to clamd's unix socket. */
const target = () =>
  z.string().min(1).transform((v, ctx): ClamdTarget => {
    if (v.startsWith('/')) return { kind: 'unix', path: v };
    const m = hostPort.exec(v);
    const port = m ? Number(m[2]) : NaN;
    if (!m || port < 1 || port > 65535) {
      ctx.addIssue({ code: 'custom', message: `expected host:port (e.g. 127.0.0.1:3310) or an absolute unix socket path, got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return { kind: 'tcp', host: m[1]!.replace(/^\[|\]$/g, ''), port };
  });

const policy = z.enum(['tempfail', 'accept', 'reject']);

export const optionsSchema = z
  .strictObject({
    /** clamd's unix socket; shorthand for a one-element `servers`. */
    socket: z.string().min(1).optional(),
    /** clamd instances in failover order: `host:port` or a unix socket path. */
    servers: z.array(target()).min(1).optional(),
    /** Time to connect to one clamd before trying the next. */
    connectTimeout: duration().default(2_000),
    /** Longest clamd may leave the stream unread, or take to answer once the message has ended. */
    timeout: duration().default(20_000),
    /** After a failure, a clamd is tried after the others for this long. */
    downFor: duration().default(30_000),
    /** What an infected message gets: reject it, strip the infected parts, or quarantine and strip them. */
    action: z.enum(['reject', 'strip', 'quarantine']).default('reject'),
    /** Where `quarantine` keeps infected parts (relative to the config file). */
    quarantineDir: z.string().min(1).optional(),
    /** clamd down, timing out, or over its stream limit: tempfail (451), accept (unscanned), or reject (554). */
    onError: policy.default('tempfail'),
    /** Largest message sent to clamd; keep it at or under clamd's StreamMaxLength (default 25M). */
    maxSize: size().default(25 * 1024 * 1024),
    /** A message over `maxSize`: reject (552), tempfail (451), or accept unscanned. */
    onOversize: policy.default('reject'),
    /** Header carrying the result (`clean`, `infected (Name)`, `unscanned (...)`); `false` for none. */
    header: z.union([z.string().regex(/^[\x21-\x39\x3b-\x7e]+$/, 'a header name (printable ASCII, no colon)'), z.literal(false)]).default('X-Portcullis-ClamAV'),
    /** Senders whose mail is not scanned. Nothing is skipped unless listed here. */
    skip: z
      .strictObject({
        /** Mail from clients that logged in with SMTP AUTH. */
        authenticated: z.boolean().default(false),
        /** Mail from these client networks (`10.0.0.0/8`, `::1`). */
        networks: z
          .array(z.string())
          .default([])
          .transform((list, ctx) =>
            list.map((v, i) => {
              try {
                return parseCidr(v);
              } catch {
                ctx.addIssue({ code: 'custom', path: [i], message: `expected an address or CIDR network such as 10.0.0.0/8, got ${JSON.stringify(v)}` });
                return z.NEVER;
              }
            }),
          ),
      })
      .prefault({}),
  })
  .superRefine((o, ctx) => {
    if (o.socket && o.servers) ctx.addIssue({ code: 'custom', path: ['socket'], message: 'give either socket or servers, not both' });
    if (o.action === 'quarantine' && !o.quarantineDir) ctx.addIssue({ code: 'custom', path: ['quarantineDir'], message: 'action "quarantine" needs a quarantineDir' });
  });

export type ClamavOptions = z.output<typeof optionsSchema>;

/** The clamd targets the options name, in failover order. */
export function targetsOf(o: ClamavOptions, configDir: string): ClamdTarget[] {
  if (o.servers) return o.servers.map((t) => (t.kind === 'unix' ? { kind: 'unix', path: path.resolve(configDir, t.path) } : t));
  return [{ kind: 'unix', path: path.resolve(configDir, o.socket ?? DEFAULT_SOCKET) }];
}

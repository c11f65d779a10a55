import path from 'node:path';
import { z } from 'zod';

/**
 * Where a backend a plugin talks to listens (clamd, rspamd, spamd, a milter, a policy service):
 * a TCP host and port, or a unix socket path. A relative socket path is left as written: the plugin
 * resolves it against the config file's folder (`ctx.configDir`), as every path in a config is.
 */
export type BackendTarget = { readonly host: string; readonly port: number } | { readonly socket: string };

/** What a backend address is expected to look like, for the error text a user sees. */
export interface BackendTargetOptions {
  /**
   * A TCP address of this backend as its users write it, named in the error text: `127.0.0.1:3310`
   * (then the error reads `host:port (127.0.0.1:3310)`) or, for the Postfix-style services,
   * `inet:127.0.0.1:8891` (then `inet:host:port (inet:127.0.0.1:8891)`).
   */
  readonly example: string;
  /** A bare socket path example such as `/path/to/clamd.ctl`, named in the error text when given. */
  readonly socketExample?: string;
}

// One grammar for every backend, so that the plugins cannot drift apart (they did: five copies with
// slightly different host characters). Accepted, in any plugin:
//   host:port · [v6]:port · inet:host:port · inet6:host:port · inet:[v6]:port   (Postfix's spelling too)
//   unix:/path · local:/path (Postfix's synonym) · /path · ./path · ../path      (a socket)
// A host is anything without white space, colon, slash or brackets (names and v4 literals); a v6
// literal is bracketed. A bare path must start with `/` or `.` so that it cannot be a mistyped host.
const SOCKET_PREFIX = /^(?:unix|local):/;
const BARE_PATH = /^\.{0,2}\//;
const HOST_PORT = /^(?:inet6?:)?(?:\[([0-9a-fA-F:.]+)\]|([^\s:/[\]]+)):(\d{1,5})$/;

/**
 * Parses a backend address (see the grammar above); `undefined` with `problem` set when it is not one.
 * The zod schema `backendTarget()` wraps this for a plugin's options.
 */
export function parseBackendTarget(value: string, options: BackendTargetOptions): { target: BackendTarget; problem?: undefined } | { target?: undefined; problem: string } {
  if (SOCKET_PREFIX.test(value)) {
    const socket = value.slice(value.indexOf(':') + 1);
    return socket ? { target: { socket } } : { problem: `expected a socket path after ${value}` };
  }
  if (BARE_PATH.test(value)) return { target: { socket: value } };
  const m = HOST_PORT.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) return { problem: `expected ${expected(options)}, got ${JSON.stringify(value)}` };
  return { target: { host: m[1] ?? m[2]!, port } };
}

/**
 * A plugin option holding one backend address: `host:port`, `[v6]:port`, `inet:host:port`,
 * `unix:/path` or a bare socket path (`/path`, `./path`). A bad value is a config error at its key
 * path (`plugins[2].with.servers[0]: expected host:port (127.0.0.1:3310), unix:/path or
 * /path/to/clamd.ctl, got "x"`), before any port is opened.
 */
export const backendTarget = (options: BackendTargetOptions) =>
  z.string().transform((v, ctx): BackendTarget => {
    const r = parseBackendTarget(v, options);
    if (r.target) return r.target;
    ctx.addIssue({ code: 'custom', message: r.problem });
    return z.NEVER;
  });

/**
 * The target a plugin connects to: a relative socket path resolved against the config file's folder
 * (`ctx.configDir`), as every path in a config is; an absolute path and a TCP target as they are.
 */
export function resolveBackendTarget<T extends BackendTarget>(target: T, configDir: string): T {
  return 'socket' in target ? ({ socket: path.resolve(configDir, target.socket) } as T) : target;
}

/**
 * How logs and replies name a target: `unix:/path`, or `host:port` with an IPv6 literal in brackets
 * (`[::1]:3310`); `prefix` `inet:` for the backends whose own configs spell TCP that way (milters,
 * policy services). The one spelling of clamav, rspamd, spamassassin, milter and policy.
 */
export function describeBackendTarget(t: BackendTarget, prefix: '' | 'inet:' = ''): string {
  return 'socket' in t ? `unix:${t.socket}` : `${prefix}${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
}

/** `host:port (127.0.0.1:3310), unix:/path or /path/to/clamd.ctl`; `inet:host:port (inet:…) or unix:/path`. */
function expected(o: BackendTargetOptions): string {
  const tcp = `${o.example.startsWith('inet:') ? 'inet:' : ''}host:port (${o.example})`;
  return o.socketExample ? `${tcp}, unix:/path or ${o.socketExample}` : `${tcp} or unix:/path`;
}

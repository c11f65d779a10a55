import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Debian's rspamd. */
export const RSPAMD_BINARY = '/usr/bin/rspamd';

/**
 * rspamd modules that look things up on the network (DNS lists, URL maps, fuzzy storage) or need
 * Redis: turned off, so that a scan never leaves loopback and never waits on a lookup.
 */
export const RSPAMD_OFFLINE_DISABLED = ['rbl', 'fuzzy_check', 'multimap', 'mime_types', 'mid', 'phishing', 'url_redirector', 'whitelist', 'dkim', 'spf', 'dmarc', 'arc', 'asn', 'emails', 'mx_check', 'neural', 'reputation', 'ratelimit', 'greylist', 'history_redis', 'dkim_signing', 'rspamd_update', 'hfilter', 'replies', 'dcc', 'bimi', 'external_relay', 'p0f', 'spamtrap', 'maillist', 'metadata_exporter', 'clickhouse', 'elastic'] as const;

export interface RspamdConfigOptions {
  /** The normal worker's TCP port on 127.0.0.1 (`/checkv2`, `/ping`). */
  readonly port: number;
  /** A unix socket the normal worker binds too (mode 0600). */
  readonly socketPath?: string;
  /** Where rspamd sends DNS queries: a loopback port where nothing answers (0.1 s timeout, one retry). */
  readonly dnsPort: number;
  /** `info` logs one line per scan (tests read it); `warning` keeps a benchmark's log quiet. */
  readonly logLevel: 'info' | 'warning';
  /** Normal workers; default rspamd's own (one per core). */
  readonly workers?: number;
  /** More lines for `local.d/options.inc` (for example `filters = "regexp";`). */
  readonly options?: string;
}

/**
 * Writes a private rspamd config into `dir` for a test or a benchmark: Debian's stock rules
 * (`$CONFDIR/common.conf`), one normal worker (no controller, no proxy), DNS pointed at a dead
 * loopback port, the network and Redis modules off (`RSPAMD_OFFLINE_DISABLED`), hyperscan off (its
 * rules would compile in the background for minutes after start, changing the speed of a run in
 * its middle), map watching hourly, no control socket. Nothing is downloaded. More `local.d/`
 * files can be written after it. Returns the arguments for `RSPAMD_BINARY` (foreground, as root,
 * every run-time folder inside `dir`).
 */
export function writeRspamdConfig(dir: string, o: RspamdConfigOptions): string[] {
  for (const sub of ['local.d', 'db', 'run', 'log']) mkdirSync(path.join(dir, sub), { recursive: true });
  const bind = [`  bind_socket = "127.0.0.1:${o.port}";`, ...(o.socketPath ? [`  bind_socket = "${o.socketPath} mode=0600";`] : [])];
  writeFileSync(
    path.join(dir, 'rspamd.conf'),
    [
      '.include "$CONFDIR/common.conf"',
      'options {',
      '  pidfile = "$RUNDIR/rspamd.pid";',
      '  .include "$CONFDIR/options.inc"',
      '  .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"',
      '}',
      `logging { type = "file"; filename = "$LOGDIR/rspamd.log"; level = "${o.logLevel}"; }`,
      'worker "normal" {',
      ...bind,
      '  .include "$CONFDIR/worker-normal.inc"',
      ...(o.workers ? [`  count = ${o.workers};`] : []),
      '}',
      '',
    ].join('\n'),
  );
  const local = (name: string, text: string) => writeFileSync(path.join(dir, 'local.d', name), text);
  local('options.inc', `${o.options ? o.options.replace(/\n?$/, '\n') : ''}dns { nameserver = ["127.0.0.1:${o.dnsPort}"]; timeout = 0.1s; retransmits = 1; }\ndisable_hyperscan = true;\nmap_watch_interval = 1h;\ncontrol_socket = "";\n`);
  for (const m of RSPAMD_OFFLINE_DISABLED) local(`${m}.conf`, 'enabled = false;\n');
  return ['-f', '-u', 'root', '-g', 'root', '-c', path.join(dir, 'rspamd.conf'), '--var', `LOCAL_CONFDIR=${dir}`, '--var', `DBDIR=${dir}/db`, '--var', `RUNDIR=${dir}/run`, '--var', `LOGDIR=${dir}/log`];
}

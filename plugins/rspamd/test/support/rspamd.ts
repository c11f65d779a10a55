import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { freePort, TestDaemon, type DaemonSpec } from '@portcullis/testkit';

export { freePort };

/**
 * Subjects that make the test rspamd answer with one action (regexp rule → force_actions rule,
 * both written by `Rspamd.start`): the way to get soft reject, greylist, rewrite subject and add
 * header on demand from the real daemon.
 */
export const FORCE = {
  softReject: 'force-soft-reject',
  greylist: 'force-greylist',
  rewrite: 'force-rewrite',
  addHeader: 'force-add-header',
  reject: 'force-reject',
} as const;

/** The settings id the test config defines for outbound mail (reject at 1000, add header from -10: every message). */
export const OUTBOUND_SETTINGS = 'portcullis-outbound';

/** Modules that look things up on the network or need Redis: off, so a scan never leaves loopback. */
const DISABLED = ['rbl', 'fuzzy_check', 'multimap', 'mime_types', 'mid', 'phishing', 'url_redirector', 'whitelist', 'dkim', 'spf', 'dmarc', 'arc', 'asn', 'emails', 'mx_check', 'neural', 'reputation', 'ratelimit', 'greylist', 'history_redis', 'dkim_signing', 'rspamd_update', 'hfilter', 'replies', 'dcc', 'bimi', 'external_relay', 'p0f', 'spamtrap', 'maillist', 'metadata_exporter', 'clickhouse', 'elastic'];

/**
 * Debian's real rspamd, started as a child process on loopback with a config this test writes:
 * Debian's stock rules (`$CONFDIR/common.conf`), one normal worker on a free port (no controller,
 * no proxy), DNS pointed at a loopback port where nothing answers, modules that would fetch maps
 * or query DNS lists disabled, no Redis, hyperscan off (quick start). Nothing is downloaded.
 */
export class Rspamd extends TestDaemon {
  readonly socketPath: string;
  port = 0;
  private constructor() {
    super('portcullis-rspamd-');
    this.socketPath = path.join(this.dir, 'rspamd.sock');
  }

  static async start(): Promise<Rspamd> {
    const r = new Rspamd();
    r.port = await freePort();
    r.writeConfig(await freePort());
    await r.launch();
    return r;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** rspamd's log (one line per scan: `rspamd_task_write_log`). */
  log(): string {
    try {
      return readFileSync(path.join(this.dir, 'log', 'rspamd.log'), 'utf8');
    } catch {
      return '';
    }
  }

  private writeConfig(dnsPort: number): void {
    const d = this.dir;
    for (const sub of ['local.d', 'db', 'run', 'log']) mkdirSync(path.join(d, sub), { recursive: true });
    writeFileSync(
      path.join(d, 'rspamd.conf'),
      `.include "$CONFDIR/common.conf"
options {
  pidfile = "$RUNDIR/rspamd.pid";
  .include "$CONFDIR/options.inc"
  .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}
logging {
  type = "file";
  filename = "$LOGDIR/rspamd.log";
  level = "info";
}
worker "normal" {
  bind_socket = "127.0.0.1:${this.port}";
  bind_socket = "${this.socketPath} mode=0600";
  .include "$CONFDIR/worker-normal.inc"
  count = 1;
}
`,
    );
    const local = (name: string, text: string) => writeFileSync(path.join(d, 'local.d', name), text);
    local('options.inc', `filters = "regexp";\ndns { nameserver = ["127.0.0.1:${dnsPort}"]; timeout = 0.1s; retransmits = 1; }\ndisable_hyperscan = true;\nmap_watch_interval = 1h;\ncontrol_socket = "";\n`);
    for (const m of DISABLED) local(`${m}.conf`, 'enabled = false;\n');
    local(
      'regexp.conf',
      Object.entries({ TEST_SOFT_REJECT: FORCE.softReject, TEST_GREYLIST: FORCE.greylist, TEST_REWRITE: FORCE.rewrite, TEST_ADD_HEADER: FORCE.addHeader, TEST_REJECT: FORCE.reject })
        .map(([sym, marker]) => `${sym} { re = "Subject=/${marker}/H"; score = 0.0; description = "test marker"; }\n`)
        .join(''),
    );
    local(
      'force_actions.conf',
      `rules {
  FORCE_SOFT { action = "soft reject"; expression = "TEST_SOFT_REJECT"; message = "Come back later (test)"; }
  FORCE_GREY { action = "greylist"; expression = "TEST_GREYLIST"; }
  FORCE_RW { action = "rewrite subject"; expression = "TEST_REWRITE"; }
  FORCE_AH { action = "add header"; expression = "TEST_ADD_HEADER"; }
  FORCE_REJ { action = "reject"; expression = "TEST_REJECT"; message = "Go away (test)"; }
}
`,
    );
    // milter_headers: X-Spamd-Result added, X-Remove-Me removed (milter.add_headers / remove_headers).
    local('milter_headers.conf', `use = ["x-spamd-result", "remove-header"];\nskip_local = false;\nskip_authenticated = false;\nroutines { remove-header { header = "X-Remove-Me"; } }\n`);
    local('settings.conf', `outbound_test { id = "${OUTBOUND_SETTINGS}"; apply { actions { reject = 1000; "add header" = -10; greylist = null; "rewrite subject" = null; } } }\n`);
  }

  protected spec(): DaemonSpec {
    const d = this.dir;
    const args = ['-f', '-u', 'root', '-g', 'root', '-c', path.join(d, 'rspamd.conf'), '--var', `LOCAL_CONFDIR=${d}`, '--var', `DBDIR=${d}/db`, '--var', `RUNDIR=${d}/run`, '--var', `LOGDIR=${d}/log`];
    return {
      name: 'rspamd',
      command: '/usr/bin/rspamd',
      args,
      ready: async () => (await get(this.port, '/ping')) === 'pong',
      // Start-up compiles the URL suffix list (seconds on an idle machine, a minute on a loaded one).
      readyMs: 200_000,
      pollMs: 200,
      diagnostics: () => this.log().slice(-3000),
    };
  }
}

/** One GET to rspamd (`/ping`), the body as text. */
export function get(port: number, urlPath: string, timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(body.trim()));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

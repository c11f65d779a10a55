import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { freePort, RSPAMD_BINARY, TestDaemon, writeRspamdConfig, type DaemonSpec } from '@portcullis/testkit';

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

/**
 * Debian's real rspamd, started as a child process on loopback with a config this test writes (the
 * common part by the test kit's writeRspamdConfig, shared with the benchmark):
 * Debian's stock rules (`$CONFDIR/common.conf`), one normal worker on a free port (no controller,
 * no proxy), DNS pointed at a loopback port where nothing answers, modules that would fetch maps
 * or query DNS lists disabled, no Redis, hyperscan off (quick start). Nothing is downloaded.
 */
export class Rspamd extends TestDaemon {
  readonly socketPath: string;
  port = 0;
  private args: string[] = [];
  private constructor() {
    super('portcullis-rspamd-');
    this.socketPath = path.join(this.dir, 'rspamd.sock');
  }

  static async start(): Promise<Rspamd> {
    const r = new Rspamd();
    r.port = await freePort();
    r.args = writeRspamdConfig(r.dir, { port: r.port, socketPath: r.socketPath, dnsPort: await freePort(), logLevel: 'info', workers: 1, options: 'filters = "regexp";' });
    r.writeRules();
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

  /** The test's own rules beside the common config: actions on demand (FORCE), milter headers, outbound settings. */
  private writeRules(): void {
    const d = this.dir;
    const local = (name: string, text: string) => writeFileSync(path.join(d, 'local.d', name), text);
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
    return {
      name: 'rspamd',
      command: RSPAMD_BINARY,
      args: this.args,
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

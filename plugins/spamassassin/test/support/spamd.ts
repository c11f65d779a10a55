import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freePort, TestDaemon, type DaemonSpec } from '@portcullis/testkit';

/** A hung "spamd" (accepts, never answers) is the test kit's silent server. */
export { freePort, startSilentServer } from '@portcullis/testkit';

const SPAMD = process.env['SPAMD_BIN'] ?? '/usr/sbin/spamd';
/** Debian's shipped rules (no sa-update has run here: /var/lib/spamassassin holds no compiled set). */
const RULES = ['/var/lib/spamassassin/4.000001/updates_spamassassin_org', '/usr/share/spamassassin'].find((d) => existsSync(d) && readdirSync(d).some((f) => f.endsWith('.cf')))!;
/** The plugin loaders (`loadplugin` lines, v320.pre loads Check) Debian ships in its site config dir. */
const PRE_DIR = '/etc/spamassassin';

export interface SpamdOptions {
  /** Extra lines for the site's local.cf the test writes (required_score, test rules). */
  readonly localCf?: string;
}

/**
 * Debian's real spamd, started on 127.0.0.1 and a free port (or, with `socket: true`, on a unix
 * socket in its temp dir) with a site config the test writes: the
 * package's rules, its .pre files, `--local` (no DNS or network tests), no Bayes, no auto-learning,
 * `--allow-tell` off, pid file and log in a temp dir. Nothing is fetched.
 */
export class Spamd extends TestDaemon {
  readonly socketPath: string;
  port = 0;
  private constructor(private readonly opts: SpamdOptions & { socket?: boolean }) {
    super('portcullis-spamd-');
    // As root, spamd drops to `nobody` (-u), who must read the site config and write the socket here.
    if (process.getuid?.() === 0) chmodSync(this.dir, 0o777);
    this.socketPath = path.join(this.dir, 'spamd.sock');
  }

  static async start(opts: SpamdOptions & { socket?: boolean } = {}): Promise<Spamd> {
    if (!existsSync(SPAMD)) throw new Error(`spamd not found at ${SPAMD}: install Debian's spamd and spamassassin (scripts/system-deps.sh)`);
    const s = new Spamd(opts);
    s.port = await freePort();
    s.writeConfig();
    await s.launch();
    return s;
  }

  /** What the plugin's `servers` takes. */
  get address(): string {
    return this.opts.socket ? `unix:${this.socketPath}` : `127.0.0.1:${this.port}`;
  }

  private writeConfig(): void {
    const site = path.join(this.dir, 'site');
    rmSync(site, { recursive: true, force: true });
    mkdirSync(site, { recursive: true });
    for (const f of readdirSync(PRE_DIR).filter((f) => f.endsWith('.pre'))) copyFileSync(path.join(PRE_DIR, f), path.join(site, f));
    writeFileSync(
      path.join(site, 'local.cf'),
      ['required_score 5.0', 'use_bayes 0', 'bayes_auto_learn 0', 'skip_rbl_checks 1', 'dns_available no', this.opts.localCf ?? ''].join('\n') + '\n',
    );
  }

  protected spec(): DaemonSpec {
    const listen = this.opts.socket ? ['--socketpath', this.socketPath] : ['-i', '127.0.0.1', '-p', String(this.port)];
    const args = [
      '--local', '--nouser-config', ...listen,
      `--siteconfigpath=${path.join(this.dir, 'site')}`, '-C', RULES,
      '--pidfile', path.join(this.dir, 'spamd.pid'), '-s', 'stderr',
      '--max-children', '2', '--min-children', '1', '--min-spare', '1', '--max-spare', '1',
      ...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []),
    ];
    // spamd's parent ends its own children on SIGTERM.
    return { name: 'spamd', command: SPAMD, args, ready: async () => (await this.ping()).includes('PONG'), readyMs: 60_000, pollMs: 200, killAfterMs: 10_000 };
  }

  /** PING over the configured transport; the raw answer. */
  ping(): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = this.opts.socket ? net.connect({ path: this.socketPath }) : net.connect({ host: '127.0.0.1', port: this.port });
      let out = '';
      const t = setTimeout(() => (s.destroy(), reject(new Error('timeout'))), 2_000);
      s.on('connect', () => s.write('PING SPAMC/1.5\r\n\r\n'));
      s.on('data', (d: Buffer) => (out += d.toString()));
      s.on('error', (e) => (clearTimeout(t), reject(e)));
      s.on('close', () => (clearTimeout(t), resolve(out)));
    });
  }
}

/** SpamAssassin's shipped samples (Debian: /usr/share/doc/spamassassin/examples), LF turned into CRLF for SMTP. */
export function sample(name: 'sample-spam.txt' | 'sample-nonspam.txt'): string {
  const p = path.join('/usr/share/doc/spamassassin/examples', name);
  return readFileSync(p, 'latin1').replace(/\r?\n/g, '\r\n');
}

/**
 * The GTUBE line, assembled at run time so the repository never carries it verbatim (a scanner
 * on a developer machine would score this source file).
 */
export function gtube(): string {
  return ['XJS*C4JDBQADN1.NSBN3*2IDNEN*', 'GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL', '*C.34X'].join('');
}

/** A plain text message. */
export function textMessage(subject: string, body: string): string {
  return `From: Alice <alice@remote.test>\r\nTo: Bob <bob@example.com>\r\nSubject: ${subject}\r\nDate: Sun, 06 Dec 2026 12:00:00 +0000\r\nMessage-ID: <${subject.replace(/\W+/g, '-')}-${Date.now()}@remote.test>\r\n\r\n${body.replace(/\r?\n/g, '\r\n')}\r\n`;
}

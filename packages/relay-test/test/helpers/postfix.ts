import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * A private Postfix instance for tests: its own config, queue and data folders in a temp folder,
 * smtpd on 127.0.0.1:<free port>, nothing shared with /etc/postfix or /var/spool/postfix.
 * Needs root and Debian's postfix package (scripts/system-deps.sh installs it in CI).
 */
export interface PrivatePostfix {
  readonly port: number;
  readonly dir: string;
  readonly version: string;
  readonly masterPid: number;
  /** postlogd's log file (for diagnostics). */
  log(): string;
  stop(): Promise<void>;
}

export interface PostfixOptions {
  /** `relay_domains` (the hosted domain). */
  readonly relayDomain: string;
  /** `mynetworks`. The test client binds to another 127.x address, so it is untrusted. */
  readonly mynetworks: string;
  /** `smtpd_relay_restrictions`; default `permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination`. */
  readonly relayRestrictions?: string;
}

const POSTFIX = '/usr/sbin/postfix';
const POSTCONF = '/usr/sbin/postconf';

export { freePort } from '@portcullis/testkit';
import { freePort } from '@portcullis/testkit';

/** /proc start time of a pid (field 22), or undefined when it is gone or a zombie. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return f[0] === 'Z' || f[0] === 'X' ? undefined : f[19];
  } catch {
    return undefined;
  }
}

async function waitGone(pid: number, st: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (startTime(pid) !== st) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return startTime(pid) !== st;
}

async function waitGreeting(port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  let last = '';
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      const t = setTimeout(() => (s.destroy(), resolve(false)), 2000);
      s.once('data', (d) => {
        last = d.toString();
        clearTimeout(t);
        s.end('QUIT\r\n');
        s.destroy();
        resolve(last.startsWith('220'));
      });
      s.once('error', (e) => {
        last = String(e);
        clearTimeout(t);
        resolve(false);
      });
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`postfix smtpd on 127.0.0.1:${port} did not greet within ${ms} ms (last: ${last})`);
}

export function postfixAvailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'the Postfix test needs root (a private Postfix instance runs as root, like the package does)';
  if (!existsSync(POSTFIX) || !existsSync(POSTCONF)) return `${POSTFIX} not found: install Debian's postfix (scripts/system-deps.sh does)`;
  return undefined;
}

export async function startPostfix(o: PostfixOptions): Promise<PrivatePostfix> {
  const missing = postfixAvailable();
  if (missing) throw new Error(missing);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'relay-test-postfix-'));
  chmodSync(dir, 0o755); // Postfix's unprivileged daemons must reach the queue below it
  const etc = path.join(dir, 'etc');
  const spool = path.join(dir, 'spool');
  const data = path.join(dir, 'data');
  for (const d of [etc, spool, data]) mkdirSync(d, { recursive: true });
  spawnSync('chown', ['postfix', data]);
  const port = await freePort();
  const closedPort = await freePort(); // nothing listens there: nothing can leave this instance
  const mainCf = [
    '# Private Postfix instance of the @portcullis/relay-test suite (generated; removed afterwards).',
    'compatibility_level = 3.6',
    `queue_directory = ${spool}`,
    `data_directory = ${data}`,
    'mail_owner = postfix',
    'setgid_group = postdrop',
    'myhostname = postfix.relay-test.invalid',
    'mydomain = relay-test.invalid',
    'myorigin = $myhostname',
    'append_dot_mydomain = no',
    'biff = no',
    'inet_interfaces = loopback-only',
    'inet_protocols = ipv4',
    'mydestination =',
    `relay_domains = ${o.relayDomain}`,
    `mynetworks = ${o.mynetworks}`,
    `relayhost = [127.0.0.1]:${closedPort}`,
    // Debian's main.cf says defer_unauth_destination (454); the usual production choice is reject.
    `smtpd_relay_restrictions = ${o.relayRestrictions ?? 'permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination'}`,
    'alias_maps =',
    'alias_database =',
    'smtp_dns_support_level = disabled',
    'lmtp_dns_support_level = disabled',
    'smtpd_peername_lookup = no',
    'smtp_tls_security_level = none',
    'smtpd_tls_security_level = none',
    `maillog_file_prefixes = ${dir}`,
    `maillog_file = ${path.join(dir, 'postfix.log')}`,
    '',
  ].join('\n');
  const masterCf = [
    '# service type  private unpriv  chroot  wakeup  maxproc command + args',
    `127.0.0.1:${port} inet n - n - - smtpd`,
    'pickup    unix  n       -       n       60      1       pickup',
    'cleanup   unix  n       -       n       -       0       cleanup',
    'qmgr      unix  n       -       n       300     1       qmgr',
    'rewrite   unix  -       -       n       -       -       trivial-rewrite',
    'bounce    unix  -       -       n       -       0       bounce',
    'defer     unix  -       -       n       -       0       bounce',
    'trace     unix  -       -       n       -       0       bounce',
    'verify    unix  -       -       n       -       1       verify',
    'flush     unix  n       -       n       1000?   0       flush',
    'proxymap  unix  -       -       n       -       -       proxymap',
    'proxywrite unix -       -       n       -       1       proxymap',
    'smtp      unix  -       -       n       -       -       smtp',
    'relay     unix  -       -       n       -       -       smtp',
    'showq     unix  n       -       n       -       -       showq',
    'error     unix  -       -       n       -       -       error',
    'retry     unix  -       -       n       -       -       error',
    'discard   unix  -       -       n       -       -       discard',
    'local     unix  -       n       n       -       -       local',
    'anvil     unix  -       -       n       -       1       anvil',
    'scache    unix  -       -       n       -       1       scache',
    'postlog   unix-dgram n  -       n       -       1       postlogd',
    '',
  ].join('\n');
  writeFileSync(path.join(etc, 'main.cf'), mainCf);
  writeFileSync(path.join(etc, 'master.cf'), masterCf);
  const logFile = path.join(dir, 'postfix.log');
  const readLog = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '(no postfix.log)');
  const run = (args: string[]) => spawnSync(POSTFIX, ['-c', etc, ...args], { encoding: 'utf8', timeout: 30_000 });
  const version = spawnSync(POSTCONF, ['-c', etc, '-h', 'mail_version'], { encoding: 'utf8' }).stdout.trim();
  const cleanupDir = () => rmSync(dir, { recursive: true, force: true });
  // 'postfix check' creates the queue folders with the right owners.
  const check = run(['check']);
  if (check.status !== 0) {
    cleanupDir();
    throw new Error(`postfix check failed (${check.status}): ${check.stderr}${check.stdout}`);
  }
  const start = run(['start']);
  const pidFile = path.join(spool, 'pid', 'master.pid');
  const masterPid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : 0;
  const st = masterPid ? startTime(masterPid) : undefined;
  const stop = async () => {
    if (masterPid && st && startTime(masterPid) === st) {
      run(['stop']);
      if (!(await waitGone(masterPid, st, 10_000))) {
        process.kill(masterPid, 'SIGKILL');
        await waitGone(masterPid, st, 5_000);
      }
    }
    cleanupDir();
  };
  if (start.status !== 0 || !masterPid) {
    const log = readLog();
    await stop();
    throw new Error(`postfix start failed (${start.status}): ${start.stderr}${start.stdout}\n${log}`);
  }
  try {
    await waitGreeting(port, 20_000);
  } catch (err) {
    const log = readLog();
    await stop();
    throw new Error(`${(err as Error).message}\n${log}`);
  }
  return { port, dir, version, masterPid, log: readLog, stop };
}

import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connects, Daemon, freePort, removeDir, tempDir } from '@portcullis/testkit';

/**
 * Debian's postgrey on loopback, in the foreground (no --daemonize: the test owns the process), with
 * its database and whitelist files in a temp folder the test writes. `--user root` when the tests
 * run as root (postgrey refuses to stay root otherwise), the current user else.
 */
export class Postgrey {
  private constructor(readonly port: number, readonly dir: string, private readonly daemon: Daemon) {}

  /** What postgrey wrote to stdout and stderr. */
  get output(): string {
    return this.daemon.output;
  }

  get address(): string {
    return `inet:127.0.0.1:${this.port}`;
  }

  static async start(opts: { delay: number }): Promise<Postgrey> {
    const dir = tempDir('portcullis-postgrey-');
    writeFileSync(path.join(dir, 'whitelist_clients'), '# written by the test: nobody is whitelisted\n');
    writeFileSync(path.join(dir, 'whitelist_recipients'), '# written by the test: postmaster@ is whitelisted\npostmaster@\n');
    const port = await freePort();
    const user = os.userInfo().username;
    const group = user === 'root' ? 'root' : user;
    const args = [
      `--inet=127.0.0.1:${port}`, `--dbdir=${dir}`, `--delay=${opts.delay}`, `--pidfile=${path.join(dir, 'postgrey.pid')}`,
      `--user=${user}`, `--group=${group}`, `--hostname=greylist.test`, '--auto-whitelist-clients=0',
      `--whitelist-clients=${path.join(dir, 'whitelist_clients')}`, `--whitelist-recipients=${path.join(dir, 'whitelist_recipients')}`,
    ];
    const daemon = await Daemon.start({ name: 'postgrey', command: '/usr/sbin/postgrey', args, ready: () => connects(port), readyMs: 20_000, pollMs: 50 });
    return new Postgrey(port, dir, daemon);
  }

  async stop(): Promise<void> {
    await this.daemon.stop();
    removeDir(this.dir);
  }
}

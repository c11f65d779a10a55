import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, waitForPort } from '@portcullis/testkit';

/**
 * Debian's postgrey on loopback, in the foreground (no --daemonize: the test owns the process), with
 * its database and whitelist files in a temp folder the test writes. `--user root` when the tests
 * run as root (postgrey refuses to stay root otherwise), the current user else.
 */
export class Postgrey {
  private constructor(readonly port: number, readonly dir: string, private child: ChildProcess, readonly output: string[]) {}

  get address(): string {
    return `inet:127.0.0.1:${this.port}`;
  }

  static async start(opts: { delay: number }): Promise<Postgrey> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-postgrey-'));
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
    const child = spawn('/usr/sbin/postgrey', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const output: string[] = [];
    child.stdout!.on('data', (d: Buffer) => output.push(d.toString()));
    child.stderr!.on('data', (d: Buffer) => output.push(d.toString()));
    child.on('error', (err) => output.push(`spawn error: ${err.message}`));
    try {
      await waitForPort(port, '127.0.0.1', 20_000);
    } catch (err) {
      child.kill('SIGKILL');
      throw new Error(`postgrey did not start: ${(err as Error).message}\n${output.join('')}`);
    }
    return new Postgrey(port, dir, child, output);
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

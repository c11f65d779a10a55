import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freePort, TestDaemon, type DaemonSpec } from '@portcullis/testkit';

/** A hung "clamd" (accepts, never answers) is the test kit's silent server. */
export { freePort, startSilentServer } from '@portcullis/testkit';

/**
 * The EICAR test string, assembled at run time from pieces so the repository never carries it
 * verbatim (scanners on developer machines and CI would flag the source file otherwise).
 */
export function eicar(): string {
  return ['X5O!P%@AP[4\\PZX54(P^)7CC)7}$', 'EIC', 'AR-STANDARD-ANTIVIRUS-', 'TEST-FILE!$H+H*'].join('');
}

export interface ClamdOptions {
  /** Largest stream clamd accepts (StreamMaxLength), e.g. `1M`. */
  readonly streamMaxLength?: string;
  readonly clamdPath?: string;
}

/**
 * Debian's real clamd, started as a child process on loopback with a generated clamd.conf and a
 * database holding one signature (EICAR, written by the test as an .ndb line). Nothing here
 * depends on a system clamd or on downloaded signatures.
 */
export class Clamd extends TestDaemon {
  readonly socketPath: string;
  port = 0;
  private constructor(private readonly opts: ClamdOptions) {
    super('portcullis-clamd-');
    this.socketPath = path.join(this.dir, 'clamd.sock');
  }

  static async start(opts: ClamdOptions = {}): Promise<Clamd> {
    const c = new Clamd(opts);
    c.port = await freePort();
    c.writeConfig();
    await c.launch();
    return c;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  private writeConfig(): void {
    const db = path.join(this.dir, 'db');
    const tmp = path.join(this.dir, 'tmp');
    mkdirSync(db, { recursive: true });
    mkdirSync(tmp, { recursive: true });
    const hex = Buffer.from(eicar(), 'latin1').toString('hex');
    writeFileSync(path.join(db, 'test.ndb'), `Eicar-Test-Signature:0:*:${hex}\n`);
    const lines = [
      'Foreground yes',
      `TCPSocket ${this.port}`,
      'TCPAddr 127.0.0.1',
      `LocalSocket ${this.socketPath}`,
      `DatabaseDirectory ${db}`,
      `TemporaryDirectory ${tmp}`,
      `PidFile ${path.join(this.dir, 'clamd.pid')}`,
      `LogFile ${path.join(this.dir, 'clamd.log')}`,
      'LogTime yes',
      `StreamMaxLength ${this.opts.streamMaxLength ?? '2M'}`,
      'ScanArchive yes',
      'ScanMail yes',
      'MaxRecursion 10',
      'SelfCheck 0',
      'Bytecode no',
    ];
    // As root, clamd would otherwise switch to the `clamav` user, who may not read our temp dir.
    if (process.getuid?.() === 0) lines.push('User root');
    writeFileSync(path.join(this.dir, 'clamd.conf'), lines.join('\n') + '\n');
  }

  protected spec(): DaemonSpec {
    return {
      name: 'clamd',
      command: this.opts.clamdPath ?? '/usr/sbin/clamd',
      args: ['--config-file', path.join(this.dir, 'clamd.conf')],
      ready: async () => (await command(this.port, 'PING')) === 'PONG',
      readyMs: 30_000,
    };
  }
}

/** Sends one clamd command (`PING`, `VERSION`) and returns the reply without its terminator. */
export function command(port: number, cmd: string, timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let out = '';
    const timer = setTimeout(() => (s.destroy(), reject(new Error('clamd command timed out'))), timeoutMs);
    s.on('connect', () => s.write(`z${cmd}\0`));
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('error', (e) => (clearTimeout(timer), reject(e)));
    s.on('close', () => (clearTimeout(timer), resolve(out.replace(/\0$/, '').trim())));
  });
}

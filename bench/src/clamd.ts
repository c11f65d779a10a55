/**
 * A private clamd for the benchmark's clamav config: Debian's real clamd as a child process on
 * loopback, with a generated clamd.conf and a database of one signature (the EICAR test string,
 * assembled at run time), so start-up takes seconds and nothing is downloaded. Killed by PID.
 */
import { type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Daemon, removeDir, tempDir } from '@portcullis/testkit';

export const CLAMD = '/usr/sbin/clamd';

function eicar(): string {
  return ['X5O!P%@AP[4\\PZX54(P^)7CC)7}$', 'EIC', 'AR-STANDARD-ANTIVIRUS-', 'TEST-FILE!$H+H*'].join('');
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let out = '';
    const done = (v: boolean) => (s.destroy(), resolve(v));
    s.setTimeout(1000, () => done(false));
    s.on('connect', () => s.write('zPING\0'));
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('error', () => done(false));
    s.on('close', () => resolve(out.startsWith('PONG')));
  });
}

export interface Clamd {
  readonly address: string;
  stop(): Promise<void>;
}

export async function startClamd(port: number, track: (cp: ChildProcess) => ChildProcess): Promise<Clamd> {
  if (!existsSync(CLAMD)) throw new Error(`${CLAMD} not installed (apt-get install clamav-daemon)`);
  const dir = tempDir('portcullis-bench-clamd-');
  const db = path.join(dir, 'db');
  mkdirSync(db);
  mkdirSync(path.join(dir, 'tmp'));
  writeFileSync(path.join(db, 'bench.ndb'), `Eicar-Test-Signature:0:*:${Buffer.from(eicar(), 'latin1').toString('hex')}\n`);
  const conf = [
    'Foreground yes',
    `TCPSocket ${port}`,
    'TCPAddr 127.0.0.1',
    `DatabaseDirectory ${db}`,
    `TemporaryDirectory ${path.join(dir, 'tmp')}`,
    `LogFile ${path.join(dir, 'clamd.log')}`,
    'StreamMaxLength 200M',
    'MaxScanSize 200M',
    'MaxFileSize 200M',
    'ScanArchive yes',
    'ScanMail yes',
    'SelfCheck 0',
    'Bytecode no',
    ...(process.getuid?.() === 0 ? ['User root'] : []),
  ];
  writeFileSync(path.join(dir, 'clamd.conf'), conf.join('\n') + '\n');
  const daemon = await Daemon.start({ name: 'clamd', command: CLAMD, args: ['--config-file', path.join(dir, 'clamd.conf')], ready: () => ping(port), readyMs: 60_000, pollMs: 200, onSpawn: track });
  return {
    address: `127.0.0.1:${port}`,
    async stop() {
      await daemon.stop();
      removeDir(dir);
    },
  };
}

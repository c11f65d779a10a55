/**
 * A private clamd for the benchmark's clamav config: Debian's real clamd as a child process on
 * loopback, with a generated clamd.conf and a database of one signature (the EICAR test string,
 * assembled at run time), so start-up takes seconds and nothing is downloaded. Killed by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

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
  const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-bench-clamd-'));
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
  const cp = track(spawn(CLAMD, ['--config-file', path.join(dir, 'clamd.conf')], { stdio: ['ignore', 'ignore', 'pipe'] }));
  let err = '';
  cp.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-1000)));
  const deadline = Date.now() + 60_000;
  while (!(await ping(port))) {
    if (cp.exitCode !== null) throw new Error(`clamd exited with ${cp.exitCode}: ${err}`);
    if (Date.now() > deadline) throw new Error(`clamd did not answer PING within 60 s: ${err}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    address: `127.0.0.1:${port}`,
    async stop() {
      if (cp.exitCode === null && cp.signalCode === null) {
        const exited = new Promise((r) => cp.once('exit', r));
        cp.kill('SIGTERM');
        const t = setTimeout(() => cp.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

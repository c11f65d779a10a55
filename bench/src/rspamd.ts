/**
 * A private rspamd for the benchmark's rspamd config: Debian's real rspamd as a child process on
 * loopback with the test kit's offline config (writeRspamdConfig: stock rules; modules that query
 * DNS lists, fetch maps or need Redis off; DNS pointed at a loopback port where nothing answers),
 * the same the rspamd plugin's tests run, so nothing leaves the machine. Its default number of normal
 * workers: on this 2-core machine that is one (`ps` shows one "normal process", beside the main process
 * and hs_helper); the direct and relayed rows share it. Hyperscan off: its rules compile in
 * the background for minutes after start, which would speed rspamd up in the middle of a run (the
 * relay row first, the direct row after it) and make the two rates incomparable. Killed by PID.
 */
import { type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { Daemon, removeDir, RSPAMD_BINARY, tempDir, writeRspamdConfig } from '@portcullis/testkit';

export const RSPAMD = RSPAMD_BINARY;


export interface Rspamd {
  readonly address: string;
  readonly port: number;
  /** CPU seconds (utime + stime) of rspamd's main process and its live workers so far. */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

const CLK_TCK = 100;

/** utime + stime of `pid` and of its children (rspamd's workers), from /proc. */
function treeCpuSeconds(root: number): number {
  let ticks = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'latin1');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      // fields after "(comm) ": state=0 ppid=1 ... utime=11 stime=12
      if (Number(d) === root || Number(f[1]) === root) ticks += Number(f[11]) + Number(f[12]);
    } catch {
      /* the process ended meanwhile */
    }
  }
  return ticks / CLK_TCK;
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/ping', agent: false, timeout: 1000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(body.trim() === 'pong'));
      res.on('error', () => resolve(false));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

export async function startRspamd(port: number, dnsPort: number, track: (cp: ChildProcess) => ChildProcess): Promise<Rspamd> {
  if (!existsSync(RSPAMD)) throw new Error(`${RSPAMD} not installed (apt-get install rspamd)`);
  const dir = tempDir('portcullis-bench-rspamd-');
  const args = writeRspamdConfig(dir, { port, dnsPort, logLevel: 'warning' });
  const daemon = await Daemon.start({ name: 'rspamd', command: RSPAMD, args, ready: () => ping(port), readyMs: 300_000, pollMs: 200, onSpawn: track });
  return {
    address: `127.0.0.1:${port}`,
    port,
    cpuSeconds: () => (daemon.pid ? treeCpuSeconds(daemon.pid) : NaN),
    async stop() {
      await daemon.stop();
      removeDir(dir);
    },
  };
}

/**
 * rspamd's own rate: `n` POSTs of `body` to /checkv2 at `conc` in parallel, one new connection
 * each (as the plugin does), with the envelope headers the plugin sends. Returns msgs/s.
 */
export async function directRate(port: number, message: (i: number) => Buffer, n: number, conc: number, deadline: number): Promise<{ rate: number; errors: number; seconds: number }> {
  let next = 0;
  let errors = 0;
  const one = (i: number) =>
    new Promise<void>((resolve) => {
      const body = message(i);
      const req = http.request(
        { host: '127.0.0.1', port, path: '/checkv2', method: 'POST', agent: false, headers: { IP: '127.0.0.1', Helo: 'client.example', From: 'bench@source.example', Rcpt: `${i}rcpt@hosted.example`, 'Queue-Id': `direct${i}`, 'MTA-Name': 'relay.bench.example', 'Transfer-Encoding': 'chunked' } },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode !== 200) errors++;
            resolve();
          });
          res.on('error', () => (errors++, resolve()));
        },
      );
      req.on('error', () => (errors++, resolve()));
      req.end(body);
    });
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(conc, n) }, async () => {
      while (next < n && Date.now() < deadline) await one(++next);
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return { rate: (next - errors) / seconds, errors: errors + (n - next), seconds };
}

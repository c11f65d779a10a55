/**
 * A real DNS server for tests: Debian's dnsmasq (package dnsmasq-base) on 127.0.0.1 and a high
 * port, serving records the test writes as dnsmasq config lines, e.g.
 *
 *   mx-host=example.test,mx1.example.test,10   an MX record
 *   host-record=mx1.example.test,127.0.0.21    A (and AAAA with a second address), exact name
 *   address=/nx.test/                          NXDOMAIN for nx.test and its subdomains
 *   mx-host=nullmx.test,.,0                    a null MX (RFC 7505)
 *   server=/servfail.test/127.0.0.1#<port>     forward a zone (to a ServfailUpstream for SERVFAIL)
 *
 * Zones listed in `localZones` (default `test`) get `local=/zone/`: dnsmasq then answers NODATA for
 * a record type a known name lacks (an MX query on a name with only an A record) and NXDOMAIN for
 * unknown names. Without it, dnsmasq has no upstream to ask and answers REFUSED, which a resolver
 * must treat as temporary. A `server=/sub.zone/...` line still wins for its subzone.
 *
 * The process never reads /etc/resolv.conf or /etc/hosts and caches nothing, so a `restart` with
 * new lines takes effect at once. Use with a node:dns Resolver whose servers are `[dns.server]`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Resolver } from 'node:dns/promises';
import os from 'node:os';
import path from 'node:path';

export interface DnsmasqOptions {
  /** dnsmasq config lines (records). */
  readonly lines: readonly string[];
  /** Zones answered only from the config (NODATA / NXDOMAIN, never REFUSED). Default `['test']`. */
  readonly localZones?: readonly string[];
  /** UDP/TCP port on 127.0.0.1; default a free one. */
  readonly port?: number;
}

const READY_NAME = 'ready.dnsmasq-harness.invalid';
const BINARY = process.env['DNSMASQ_BIN'] ?? '/usr/sbin/dnsmasq';

/** A free UDP port on 127.0.0.1 (dnsmasq binds TCP on it too; a clash makes `start` retry). */
async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => resolve());
  });
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export class Dnsmasq {
  private child?: ChildProcess;
  private output = '';
  private readonly dir = mkdtempSync(path.join(os.tmpdir(), 'dnsmasq-test-'));
  private readonly killOnExit = () => this.child?.kill('SIGKILL');

  private constructor(public port: number) {}

  /** Starts dnsmasq and resolves once it answers queries. */
  static async start(opts: DnsmasqOptions): Promise<Dnsmasq> {
    if (!existsSync(BINARY)) throw new Error(`dnsmasq not found at ${BINARY}: install Debian's dnsmasq-base (or set DNSMASQ_BIN)`);
    let lastError: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      const d = new Dnsmasq(opts.port ?? (await freeUdpPort()));
      try {
        await d.launch(opts);
        return d;
      } catch (err) {
        lastError = err;
        await d.stop();
        if (opts.port) break;
      }
    }
    throw lastError;
  }

  /** `127.0.0.1:<port>`, for `Resolver.setServers` or the relay's `dns.servers`. */
  get server(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** What dnsmasq wrote (queries are logged), for failure messages. */
  get log(): string {
    return this.output;
  }

  /** Stops dnsmasq and starts it again on the same port with new records. */
  async restart(opts: Omit<DnsmasqOptions, 'port'>): Promise<void> {
    await this.kill();
    await this.launch({ ...opts, port: this.port });
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async launch(opts: DnsmasqOptions): Promise<void> {
    const conf = path.join(this.dir, 'dnsmasq.conf');
    const lines = [
      ...(opts.localZones ?? ['test']).map((z) => `local=/${z}/`),
      `txt-record=${READY_NAME},ready`,
      ...opts.lines,
    ];
    writeFileSync(conf, lines.join('\n') + '\n');
    const args = [
      '--keep-in-foreground',
      '--no-daemon',
      `--conf-file=${conf}`,
      `--port=${this.port}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      '--no-resolv',
      '--no-hosts',
      '--cache-size=0',
      '--log-queries',
      '--log-facility=-',
      `--pid-file=${path.join(this.dir, 'dnsmasq.pid')}`,
      ...(process.getuid?.() === 0 ? ['--user=root'] : []),
    ];
    this.output = '';
    const child = spawn(BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    process.once('exit', this.killOnExit);
    child.stdout!.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()));
    let exited = false;
    child.once('exit', () => (exited = true));
    child.once('error', (err) => {
      exited = true;
      this.output += String(err);
    });

    const probe = new Resolver({ timeout: 200, tries: 1 });
    probe.setServers([this.server]);
    const deadline = Date.now() + 5000;
    for (;;) {
      if (exited) throw new Error(`dnsmasq exited at start-up (port ${this.port}): ${this.output.trim()}`);
      try {
        const txt = await probe.resolveTxt(READY_NAME);
        if (txt.flat().includes('ready')) return;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) throw new Error(`dnsmasq did not answer on ${this.server} within 5 s: ${this.output.trim()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    process.off('exit', this.killOnExit);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        child.kill('SIGKILL');
      }, 2000);
      child.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }
}

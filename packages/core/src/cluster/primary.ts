import cluster, { type Worker } from 'node:cluster';
import { readFileSync } from 'node:fs';
import { mkdir, rename } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { RelayConfig } from '../config/schema.js';
import { AdminServer } from '../ops/admin-server.js';
import { ControlServer, type ControlRequest, type ControlResponse } from '../ops/control-server.js';
import type { ReadinessReport } from '../ops/readiness.js';
import { fanOut } from './fan-out.js';
import { IpcChannel } from './ipc-channel.js';
import { existingShards, orphanAssignment, shardDir } from './shards.js';
import { ADOPT_ENV, HANDOFF_ENV, WORKER_ENV } from './worker-env.js';
import { ConnectionHandoff, type HandedListener } from './handoff.js';
import { pipeWorkerOutput } from './worker-logs.js';
import { clusterStatus } from './cluster-status.js';
import { ClusterMetrics } from './metrics-aggregate.js';
import { clusterReadiness } from './readiness-aggregate.js';
import { ClusterStateHost } from './state-host.js';

/**
 * The settings the primary itself uses: a plain-data part of a validated RelayConfig (see
 * `primaryConfig`), so that a config validated in another process reaches it over IPC as is, and
 * the primary never loads the config schema (or a plugin) to parse one.
 */
export interface PrimaryConfig {
  readonly workers: RelayConfig['workers'];
  readonly spool: Pick<RelayConfig['spool'], 'dir'>;
  readonly admin: RelayConfig['admin'];
  readonly log: Pick<RelayConfig['log'], 'level' | 'file'>;
  readonly shutdown: Pick<RelayConfig['shutdown'], 'drainTime'>;
  /** The listeners the primary accepts for (handoff.ts) and the limit it counts there. */
  readonly handoff: { readonly listeners: readonly HandedListener[]; readonly connectionsPerIp: number };
}

/** The primary's part of a validated config (plain data: crosses IPC unchanged). */
export function primaryConfig(c: RelayConfig): PrimaryConfig {
  return { workers: c.workers, spool: { dir: c.spool.dir }, admin: c.admin, log: { level: c.log.level, file: c.log.file }, shutdown: { drainTime: c.shutdown.drainTime }, handoff: { listeners: handedListeners(c), connectionsPerIp: c.limits.connectionsPerIp } };
}

/**
 * The listeners whose connections the primary accepts and hands over with the slot decided
 * (handoff.ts). Not those with PROXY protocol (the client's address is in a header the worker reads
 * later: the worker asks for the slot after it, as before) nor those with XCLIENT proxies (a listed
 * proxy bypasses the per-address count, which the worker decides from the connection): those stay
 * on node:cluster's accept path.
 */
export function handedListeners(c: Pick<RelayConfig, 'listen'>): HandedListener[] {
  return c.listen.flatMap((l, index) => (l.proxyProtocol.size || l.xclient.size ? [] : [{ index, host: l.host, port: l.port }]));
}

export interface PrimaryOptions {
  readonly configFile: string;
  readonly configDir: string;
  readonly config: PrimaryConfig;
  /** The file as parsed (see LoadedConfig.raw): what workers build their config from. */
  readonly raw: unknown;
  readonly workers: number;
  readonly log: Logger;
  /** The one log stream: the primary's own destination (stdout, or the log file it rotates). Worker lines are written into it whole. */
  readonly logSink: { write(line: string): unknown };
  /** Reads and validates the config file once (schema and every plugin's options); throws a ConfigError. */
  readonly validate: (file: string) => Promise<{ config: PrimaryConfig; raw: unknown }>;
  /** How connections reach workers (see packages/core/README.md, "Workers": measured; round-robin by default). */
  readonly scheduling?: 'rr' | 'none';
}

/** One worker slot: the index (and so the shard) stays, the process behind it may be replaced. */
interface Slot {
  readonly index: number;
  worker?: Worker;
  channel?: IpcChannel;
  ready: boolean;
  /** The worker said it is stopping (a SIGTERM of its own): no more connections are handed to it. */
  draining?: boolean;
  /** When the slot's current worker was forked. */
  forkedAt: number;
  /** Workers of this slot in a row that died within LOOP_WINDOW_MS of their fork: the crash-loop back-off's step. */
  quickExits: number;
  restartTimer?: NodeJS.Timeout;
}

/**
 * A worker that dies within a minute of its fork is in a crash loop: the first is replaced at once,
 * the next ones wait 0.5 s, 1 s, 2 s ... up to 30 s, and stay at 30 s until one lives a minute.
 * Counted per death in a row, not as forks in a sliding minute: the long waits themselves empty such
 * a window, so it dropped from 30 s back to 4 s and a steady loop forked about 7 times a minute.
 */
const LOOP_WINDOW_MS = 60_000;
const MAX_BACKOFF_MS = 30_000;

/**
 * The worker mode's primary (`workers` > 1): owns the listening sockets (a listener without PROXY
 * protocol or XCLIENT proxies is accepted here, its per-address slot counted and the socket handed to
 * the least busy worker: handoff.ts; node:cluster hands the others' connections), the admin HTTP server, the control socket and the log stream, and runs
 * no SMTP session itself. It forks one worker per shard index, replaces a worker that dies on the
 * same index (its successor recovers and delivers the shard), reloads all workers or none, and on
 * SIGTERM drains every worker before it exits.
 */
export class ClusterPrimary {
  private readonly slots = new Map<number, Slot>();
  private admin?: AdminServer;
  private control?: ControlServer;
  private stopping = false;
  /** True once every first worker was ready: from then on a worker that exits is replaced, not fatal. */
  private started = false;
  private raw: unknown;
  private config: PrimaryConfig;
  private reloading?: Promise<unknown>;
  private readonly spoolRoot: string;
  private readonly assignment: Map<number, number[]>;
  /** Counters, cache and connection slots of every worker, when no Redis holds them (h22s's state-host.ts). */
  private readonly state: ClusterStateHost;
  /** The accept path for listeners without PROXY protocol (handoff.ts); undefined when every listener has it. */
  private readonly handoff?: ConnectionHandoff;
  /** HANDOFF_ENV for every worker: the handed listeners and the ports the primary bound for them. */
  private handedEnv = '';

  constructor(private readonly o: PrimaryOptions) {
    this.raw = o.raw;
    this.config = o.config;
    this.spoolRoot = path.resolve(o.configDir, o.config.spool.dir);
    this.assignment = orphanAssignment(existingShards(this.spoolRoot), o.workers);
    for (let i = 1; i <= o.workers; i++) this.slots.set(i, { index: i, ready: false, forkedAt: 0, quickExits: 0 });
    this.state = new ClusterStateHost(o.log.child({ part: 'shared-state' }));
    const handed = o.config.handoff?.listeners ?? [];
    if (handed.length) {
      this.handoff = new ConnectionHandoff({ listeners: handed, state: this.state, limit: () => this.config.handoff.connectionsPerIp, targets: () => this.targets(), log: o.log.child({ part: 'handoff' }) });
    }
  }

  /** Forks every worker and waits until each has its listeners open; then the admin and control servers. */
  async start(): Promise<void> {
    cluster.schedulingPolicy = this.o.scheduling === 'none' ? cluster.SCHED_NONE : cluster.SCHED_RR;
    // Workers run the same command line (the CLI's `start`); their output comes to us (one log stream).
    cluster.setupPrimary({ exec: process.argv[1], args: process.argv.slice(2), execArgv: process.execArgv, silent: true });
    // The primary's own sockets first: a port in use fails the start before any worker is forked, and
    // a listener on port 0 gets its port here, for the workers to report.
    const ports = await this.handoff?.open();
    this.handedEnv = [...(ports ?? [])].map(([i, p]) => `${i}=${p}`).join(',');
    const orphans = [...this.assignment.entries()].filter(([, s]) => s.length);
    if (orphans.length) this.o.log.warn({ adopt: Object.fromEntries(orphans) }, 'spool shards without a worker (a change of workers): each is adopted and delivered by a live worker');
    const started = [...this.slots.values()].map((s) => this.fork(s));
    await Promise.all(started);
    this.started = true;
    await this.startOps();
    this.o.log.info({ workers: this.o.workers, pids: [...this.slots.values()].map((s) => s.worker?.process.pid), scheduling: this.o.scheduling ?? 'rr' }, 'ready: every worker is listening');
  }

  private async startOps(): Promise<void> {
    // Operator tools (a quarantine release) write into <spool>/tmp and ask for an enqueue (see answer()).
    await mkdir(path.join(this.spoolRoot, 'tmp'), { recursive: true });
    this.control = new ControlServer(path.join(this.spoolRoot, 'control.sock'), (req) => this.answer(req), this.o.log.child({ part: 'control' }));
    await this.control.start();
    const a = this.config.admin;
    if (a.enabled) {
      const token = a.token ?? (a.tokenFile ? readFileSync(path.resolve(this.o.configDir, a.tokenFile), 'utf8').split(/\r?\n/)[0]!.trim() : undefined);
      this.admin = new AdminServer({ host: a.host, port: a.port, token, registry: new ClusterMetrics({ workers: () => this.live().map((w) => ({ id: w.index, channel: w.channel })) }), readiness: () => this.readiness(), log: this.o.log.child({ part: 'admin' }) });
      await this.admin.start();
    }
  }

  /** Forks the worker of `slot`; resolves when it reports ready, rejects if it exits first. */
  private fork(slot: Slot): Promise<void> {
    const env = { [WORKER_ENV]: String(slot.index), [ADOPT_ENV]: (this.assignment.get(slot.index) ?? []).join(','), [HANDOFF_ENV]: this.handedEnv };
    const worker = cluster.fork(env);
    slot.worker = worker;
    slot.ready = false;
    slot.draining = false;
    slot.forkedAt = Date.now();
    const channel = new IpcChannel(worker, { timeoutMs: 10_000 });
    slot.channel = channel;
    // The config the primary validated, not the file as it may read now (an edit not yet reloaded, a refused reload).
    channel.handle('config', () => this.raw);
    channel.handle('draining', () => void (slot.draining = true));
    // The slot index is the worker's id: a replacement starts with no slot of its predecessor's.
    this.state.attach(channel, slot.index);
    pipeWorkerOutput(worker, slot.index, this.o.logSink);
    worker.on('error', (err) => this.o.log.warn({ err, worker: slot.index }, 'worker IPC error'));
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      channel.handle('ready', () => {
        slot.ready = true;
        if (!settled) (settled = true), resolve();
        this.handoff?.flush();
      });
      worker.once('exit', (code, signal) => {
        channel.close();
        // Sockets still queued for it are closed; then a killed worker's connections stop counting
        // against the per-address limits at once (those it had been handed included).
        this.handoff?.workerGone(slot.index);
        this.state.detach(slot.index);
        slot.ready = false;
        if (slot.worker === worker) slot.worker = undefined;
        if (!settled) {
          settled = true;
          // At start a worker that cannot open its listeners (port in use...) fails the whole start.
          if (!this.started) return reject(new Error(`worker ${slot.index} exited (${signal ?? `code ${code}`}) before it was ready; its log lines above say why`));
          resolve();
        }
        if (!this.stopping && this.started) this.replace(slot, code, signal);
      });
    });
  }

  private replace(slot: Slot, code: number | null, signal: string | null): void {
    const lived = Date.now() - slot.forkedAt;
    slot.quickExits = lived < LOOP_WINDOW_MS ? slot.quickExits + 1 : 1;
    const delay = slot.quickExits <= 1 ? 0 : Math.min(MAX_BACKOFF_MS, 500 * 2 ** (slot.quickExits - 2));
    this.o.log.error({ worker: slot.index, code, signal, livedMs: lived, quickExitsInARow: slot.quickExits, restartInMs: delay }, `worker ${slot.index} exited: a new worker takes over its spool shard${delay ? ` in ${delay} ms (crash loop back-off)` : ''}`);
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      if (this.stopping) return;
      void this.fork(slot).then(
        () => this.o.log.info({ worker: slot.index, pid: slot.worker?.process.pid }, `worker ${slot.index} replaced: its shard is recovered and delivered`),
        () => undefined,
      );
    }, delay);
  }

  /** Workers that may be handed a connection now, in index order. */
  private targets(): Array<{ index: number; worker: Worker }> {
    return [...this.slots.values()].flatMap((s) => (s.ready && !s.draining && s.worker?.isConnected() ? [{ index: s.index, worker: s.worker }] : []));
  }

  /** Workers that are up and answering, in index order. */
  private live(): Array<{ index: number; channel: IpcChannel }> {
    return [...this.slots.values()].filter((s) => s.ready && s.channel && !s.channel.isClosed).map((s) => ({ index: s.index, channel: s.channel! }));
  }

  /** Control socket requests (`portcullis queue`, `status`, `reload`, quarantine releases). */
  private async answer(req: ControlRequest): Promise<ControlResponse> {
    switch (req.cmd) {
      case 'reload':
        return { ok: true, result: await this.reload() };
      case 'status':
        return { ok: true, result: await this.status() };
      case 'enqueue': {
        // The operator tool wrote into <spool>/tmp; the message is committed into one worker's shard.
        const target = this.live()[0];
        if (!target) return { ok: false, error: 'no worker is running; try again in a moment' };
        const moved = path.join(shardDir(this.spoolRoot, target.index), 'tmp', path.basename(req.file));
        await rename(path.resolve(req.file), moved);
        return target.channel.request<ControlResponse>('control', { ...req, file: moved }, 30_000);
      }
      default: {
        const down = [...this.slots.values()].filter((s) => !s.ready).map((s) => s.index);
        // A shard whose worker is being replaced cannot answer: a list without it would look complete.
        if (down.length && req.cmd === 'list') return { ok: false, error: `worker ${down.join(', ')} is restarting; try again in a moment` };
        return fanOut(req, this.live().map((w) => ({ answer: (r: ControlRequest) => w.channel.request<ControlResponse>('control', r, 30_000) })));
      }
    }
  }

  /** `/readyz`: ready when every configured worker is up and each one's own checks pass (readiness-aggregate.ts). */
  readiness(): Promise<ReadinessReport> {
    const stopping = async (): Promise<ReadinessReport> => ({ ready: !this.stopping, checks: [{ name: 'primary', ready: !this.stopping, detail: this.stopping ? 'stopping' : 'running', ms: 0 }] });
    return clusterReadiness({ workers: () => this.live().map((w) => ({ id: w.index, channel: w.channel })), expected: () => this.o.workers, own: stopping, timeoutMs: this.config.admin.readyTimeout + 500 });
  }

  status(): Promise<Record<string, unknown>> {
    const logFile = this.config.log.file ? path.resolve(this.o.configDir, this.config.log.file.path) : 'stdout';
    return clusterStatus(this.o.workers, this.live(), { configFile: this.o.configFile, logFile, admin: this.admin ? { host: this.config.admin.host, port: this.admin.address().port } : undefined, readiness: () => this.readiness() });
  }

  /**
   * SIGHUP / `portcullis reload`: the file is validated once, here; then every worker applies it.
   * All or none: when one worker fails to apply it (a plugin's setup fails there), the workers that
   * had applied it go back to the running configuration and the reload is refused with that
   * worker's error. A reload while a worker is being replaced is refused (try again).
   */
  reload(): Promise<{ plugins: string[] }> {
    const run = (this.reloading ?? Promise.resolve()).catch(() => undefined).then(() => this.reloadAll());
    this.reloading = run;
    return run;
  }

  private async reloadAll(): Promise<{ plugins: string[] }> {
    const next = await this.o.validate(this.o.configFile);
    if (JSON.stringify(next.config.workers) !== JSON.stringify(this.config.workers)) throw new Error(`${this.o.configFile}: workers: cannot change while the relay runs; restart it to apply this change (the running configuration is kept)`);
    const live = this.live();
    if (live.length !== this.o.workers) throw new Error('a worker is being replaced right now: the reload is refused (the running configuration is kept); try again in a moment');
    const results = await Promise.allSettled(live.map((w) => w.channel.request<{ plugins: string[] }>('reload', next.raw, 120_000)));
    const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [{ index: live[i]!.index, err: r.reason as Error }] : []));
    if (!failed.length) {
      this.raw = next.raw;
      this.config = next.config;
      const plugins = (results[0] as PromiseFulfilledResult<{ plugins: string[] }>).value.plugins;
      this.o.log.info({ workers: live.length, plugins }, 'configuration reloaded in every worker');
      return { plugins };
    }
    const applied = live.filter((_, i) => results[i]!.status === 'fulfilled');
    const back = await Promise.allSettled(applied.map((w) => w.channel.request('reload', this.raw, 120_000)));
    const stuck = applied.filter((_, i) => back[i]!.status === 'rejected').map((w) => w.index);
    this.o.log.error({ failed: failed.map((f) => ({ worker: f.index, error: f.err.message })), rolledBack: applied.map((w) => w.index), stuck }, 'reload refused: a worker could not apply it; the others went back to the running configuration');
    if (stuck.length) this.o.log.fatal({ workers: stuck }, 'a worker could not go back to the running configuration: it keeps the new one until the next reload or restart');
    throw new Error(`worker ${failed[0]!.index} could not apply the new configuration, so no worker runs it (the running configuration is kept):\n${failed[0]!.err.message}`);
  }

  /**
   * Graceful stop: every worker gets SIGTERM and drains as a single relay does (listeners close,
   * transactions in DATA finish, deliveries in progress finish); the primary waits for all of them,
   * at most the drain time and 15 s more (then SIGKILL: nothing acknowledged is lost, it is on disk).
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    // New clients are refused from now on (as when the workers closed their listeners); open ones drain in the workers.
    this.handoff?.close();
    for (const s of this.slots.values()) if (s.restartTimer) clearTimeout(s.restartTimer);
    const workers = [...this.slots.values()].flatMap((s) => (s.worker && s.worker.process.exitCode === null && s.worker.process.signalCode === null ? [s.worker] : []));
    const exits = workers.map((w) => new Promise<void>((resolve) => w.process.once('exit', () => resolve())));
    for (const w of workers) w.process.kill('SIGTERM');
    const limit = setTimeout(() => {
      for (const w of workers) if (w.process.exitCode === null && w.process.signalCode === null) w.process.kill('SIGKILL');
    }, this.config.shutdown.drainTime + 15_000);
    await Promise.all(exits);
    clearTimeout(limit);
    await this.control?.stop();
    await this.admin?.stop();
  }

  /** SIGINT/SIGTERM a second time: the workers go now (see runRelay's second signal). */
  killAll(): void {
    for (const s of this.slots.values()) s.worker?.process.kill('SIGKILL');
  }
}

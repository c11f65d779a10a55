import { Socket } from 'node:net';
import path from 'node:path';
import { parseConfig } from '../config/load.js';
import type { RelayConfig } from '../config/schema.js';
import { answerControl, type ControlRequest } from '../ops/control-server.js';
import type { Relay } from '../relay.js';
import { AdoptedShards } from './adopted-shards.js';
import { fanOut } from './fan-out.js';
import type { IpcChannel } from './ipc-channel.js';
import { answerMetrics } from './metrics-aggregate.js';
import { answerReadiness } from './readiness-aggregate.js';
import { shardDir } from './shards.js';
import { isHandoff } from './worker-env.js';
import { ReleaseBatch, StateMessages } from '../services/ipc-state.js';

/**
 * The configuration a worker runs: the file's, with the worker's own spool shard and no log file
 * (a worker's log lines go to the primary, which owns the one log stream and its rotation). The
 * same function turns a reloaded file into the worker's config, so a reload compares like with like.
 */
export function workerConfig(config: RelayConfig, configDir: string, index: number): RelayConfig {
  const root = path.resolve(configDir, config.spool.dir);
  return { ...config, spool: { ...config.spool, dir: shardDir(root, index) }, log: { ...config.log, file: undefined } };
}

/**
 * A worker's side of the worker mode: answers the primary's requests over IPC (queue commands over
 * its own shard and the shards it adopted, status, readiness, reload of a config the primary
 * validated) and says `ready` once its listeners are open.
 */
export class WorkerSide {
  /** Releases of handed slots, sent as one notice at the end of the event-loop turn (as IpcState's own). */
  private readonly releases: ReleaseBatch;
  private readonly onMessage = (m: unknown, handle: unknown) => this.handoff(m, handle);

  constructor(
    private readonly relay: Relay,
    readonly index: number,
    private readonly adopted: AdoptedShards,
    private readonly channel: IpcChannel,
  ) {
    this.releases = new ReleaseBatch((tokens) => channel.notify(StateMessages.release, { tokens }));
    channel.handle('control', (req) => this.control(req as ControlRequest));
    channel.handle('status', async () => ({ worker: index, ...(await relay.status()), adopted: adopted.stats() }));
    // The primary's /readyz and /metrics ask every worker (readiness-aggregate.ts, metrics-aggregate.ts).
    answerReadiness(channel, () => relay.readiness());
    answerMetrics(channel, () => relay.metrics.registry);
    channel.handle('reload', (raw) => this.reload(raw));
    // Connections the primary accepted (cluster/handoff.ts): they come with node:cluster's pipe's handle.
    process.on('message', this.onMessage);
  }

  private handoff(m: unknown, handle: unknown): void {
    if (!isHandoff(m)) return;
    const { token, listener } = m;
    let held = token !== 0;
    const release = () => {
      if (!held) return;
      held = false;
      this.releases.add(token);
    };
    // No socket (closed between the primary's send and here): the slot goes back at once.
    if (!handle) return release();
    // A raw TCP handle (the primary's accept hook) becomes a socket here, as node:cluster's worker side does it.
    try {
      const socket = handle instanceof Socket ? handle : new Socket({ handle, readable: true, writable: true } as ConstructorParameters<typeof Socket>[0]);
      this.relay.listeners.take(listener, socket, { admitted: token !== 0, release });
    } catch (err) {
      // Never out of a 'message' listener (that would end the worker): the connection is closed, its slot given back.
      this.relay.log.warn({ err }, 'a connection handed by the primary could not be served: closed');
      // A net.Socket is destroyed; a raw TCP handle (no socket made of it yet) is closed.
      if (handle instanceof Socket) handle.destroy();
      else (handle as { close?(): void }).close?.();
      release();
    }
  }

  /** Opens the orphan shards this worker adopts (before `ready`: their messages count from the start). */
  static async adopt(relay: Relay, index: number, shards: readonly number[]): Promise<AdoptedShards> {
    const root = path.resolve(relay.configDir, relay.config.spool.dir, '..');
    const adopted = await AdoptedShards.open(index === 0 ? path.resolve(relay.configDir, relay.config.spool.dir) : root, shards, relay.config, relay.driver, relay.log.child({ part: 'adopted' }), relay.metrics, () => ({ driver: relay.driver, config: relay.config }));
    // The relay's own control socket (`<shard>/control.sock`; with workers: 1 the one operators use) sees the adopted shards too.
    if (adopted.count) relay.controlRoute = (req, own) => (req.cmd === 'enqueue' || req.cmd === 'reload' || req.cmd === 'status' ? own(req) : fanOut(req, [{ shard: index, answer: own }, ...adopted.targets()]));
    return adopted;
  }

  /** This worker stops (SIGTERM): the primary hands it no more connections (those in flight get 421 4.3.2). */
  draining(): void {
    this.channel.notify('draining');
  }

  ready(): void {
    this.channel.notify('ready', { worker: this.index, pid: process.pid, listeners: this.relay.addresses() });
  }

  private control(req: ControlRequest) {
    // An operator's enqueue (a quarantine release) is written once, into this worker's own shard.
    if (req.cmd === 'enqueue') return answerControl(this.relay.queue, req, this.relay.log);
    const own = { shard: this.index, answer: (r: ControlRequest) => answerControl(this.relay.queue, r, this.relay.log) };
    return fanOut(req, [own, ...this.adopted.targets()]);
  }

  /** `raw`: the file as the primary read and validated it (a validated config does not cross IPC: it holds class instances). */
  private async reload(raw: unknown): Promise<{ plugins: string[] }> {
    const result = await this.relay.reload(workerConfig(parseConfig(raw, this.relay.configFile), this.relay.configDir, this.index));
    this.adopted.setDriver(this.relay.driver, this.relay.config);
    return result;
  }

  async close(): Promise<void> {
    process.off('message', this.onMessage);
    await this.adopted.close();
    this.channel.close();
  }
}

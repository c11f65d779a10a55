import net, { type Socket } from 'node:net';
import type { Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { interceptAccept } from '../adapter/node-accept.js';
import type { ClusterStateHost } from './state-host.js';
import type { HandoffMessage } from './worker-env.js';

/** A listener whose connections the primary accepts itself (no PROXY protocol, no XCLIENT proxy: see `handedListeners`). */
export interface HandedListener {
  /** Index in the config's `listen`. */
  readonly index: number;
  readonly host: string;
  readonly port: number;
}

/** The slot name the core's check counts in (services/container.ts): the worker's IpcState and this primary count in the same table. */
export const CORE_SLOTS = 'core:connectionsPerIp';

/** A worker that may take connections now. */
export interface HandoffTarget {
  readonly index: number;
  readonly worker: Pick<Worker, 'send'>;
}

export interface HandoffOptions {
  readonly listeners: readonly HandedListener[];
  readonly state: ClusterStateHost;
  /** `limits.connectionsPerIp` of the running configuration (a reload may change it). */
  readonly limit: () => number;
  /** Ready workers, in index order. */
  readonly targets: () => HandoffTarget[];
  readonly log: Logger;
  /**
   * false: never take Node's private accept hook, so every connection goes the public path (a paused
   * `net.Socket`), as it does on a Node line without the hook. Default true; the tests set it to
   * cover that path (packages/core/test/handoff.test.ts).
   */
  readonly rawAccept?: boolean;
}

/**
 * An accepted connection as the primary holds it: the peer's address, what `worker.send` passes
 * (a raw handle, or a `net.Socket` on the fallback path) and how to close it here.
 */
interface Accepted {
  readonly address: string | undefined;
  readonly handle: unknown;
  destroy(): void;
  /** The send went out: the worker holds its own descriptor now. */
  sent(): void;
}

/**
 * A worker with fewer handed connections open than this takes the next one before the workers after
 * it (see "Which worker" on `ConnectionHandoff`). 2, not 1: at one connection at a time the previous
 * connection's release notice is often still on its way when the next is accepted.
 */
export const FILL = 2;

/** Connections accepted while no worker is ready (at start, or every worker being replaced) wait here, at most this many. */
const MAX_WAITING = 1024;

/**
 * The worker mode's accept path for listeners without PROXY protocol (packages/core/README.md,
 * "Workers: the primary decides the slot when it accepts"). The primary owns one `net.Server` per
 * such listener (`pauseOnConnect`: not a byte is read here), reads the peer address, counts the
 * core's per-address slot in its own store (the one the workers' IpcState asks, so counts stay one
 * per machine) and hands the socket to a worker with the verdict in the same message. The worker
 * writes the greeting, or the refusal (the same 421, log line and metric as before: replies, logs and
 * metrics stay in the worker), and sends the release at close as it does for its own leases.
 *
 * Against node:cluster's round-robin (the handle, NODE_HANDLE_ACK and `accepted` back, then the
 * slot request and its answer) this is one message out and the ACK back, plus the release: no round
 * trip before the greeting.
 *
 * Which worker: the first (in index order) with fewer than `FILL` handed connections open (leases
 * out); when every worker has that many, the one with the fewest open, ties to the first. Measured
 * (packages/core/README.md, "Which worker"): with short connections one after another, spreading
 * them over the workers doubled the CPU per message (each worker idles between its turns and wakes
 * cold), and the release notice of the last connection often arrives after the next accept, so
 * "fewest open" alone alternates. Filling the first worker keeps a light load on one warm process;
 * past `FILL` each new connection goes where the fewest are open, so a burst, and any load that
 * keeps connections open, reaches every worker, and long sessions do not pile up on one.
 */
export class ConnectionHandoff {
  private readonly servers: net.Server[] = [];
  private readonly waiting: Array<{ listener: number; socket: Accepted }> = [];
  /** Connections given to `send` and not yet sent, per worker: closed if that worker dies first (nothing leaks). */
  private readonly inFlight = new Map<number, Set<Accepted>>();
  private closed = false;

  constructor(private readonly o: HandoffOptions) {}

  /** Opens every listener; resolves with the bound ports (index → port) for the workers' environment. */
  async open(): Promise<Map<number, number>> {
    const ports = new Map<number, number>();
    for (const l of this.o.listeners) {
      const server = net.createServer({ pauseOnConnect: true }, (socket) => this.accept(l.index, fromSocket(socket)));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(l.port, l.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      if (this.o.rawAccept !== false) this.acceptRaw(server, l.index);
      server.on('error', (err) => this.o.log.warn({ err, listener: l.index }, 'listener error'));
      this.servers.push(server);
      ports.set(l.index, (server.address() as net.AddressInfo).port);
    }
    return ports;
  }

  /**
   * Takes the listener's accepted TCP handles before Node wraps each in a `net.Socket` (a stream
   * object and its state, and `getpeername` through a getter: measured, the wrapping made this
   * primary busier per connection than node:cluster's round-robin, which passes raw handles too;
   * README, "Workers: the primary decides the slot when it accepts"). Node's private hook, in the
   * adapter (adapter/node-accept.ts); where it is missing the public path (a paused socket) serves.
   */
  private acceptRaw(server: net.Server, listener: number): void {
    interceptAccept(server, (client) => {
      const peer: { address?: string } = {};
      client.getpeername(peer);
      let open = true;
      const close = () => void (open && ((open = false), client.close()));
      // Node closes a sent `net.Socket` itself (after the worker's ACK), not a raw handle: node:cluster
      // closes its own once the worker answers; ours once the message (the descriptor with it) is written.
      this.accept(listener, { address: peer.address, handle: client, destroy: close, sent: close });
    });
  }

  private accept(listener: number, socket: Accepted): void {
    if (this.closed) return void socket.destroy();
    const target = this.pick();
    if (!target) {
      if (this.waiting.length >= MAX_WAITING) return void socket.destroy();
      this.waiting.push({ listener, socket });
      return;
    }
    this.hand(target, listener, socket);
  }

  private pick(): HandoffTarget | undefined {
    const targets = this.o.targets();
    if (!targets.length) return undefined;
    let best: HandoffTarget | undefined;
    let bestOpen = Infinity;
    for (const t of targets) {
      const open = this.o.state.handedTo(t.index);
      if (open < FILL) return t;
      if (open < bestOpen) (best = t), (bestOpen = open);
    }
    return best;
  }

  private hand(target: HandoffTarget, listener: number, socket: Accepted): void {
    const address = socket.address;
    if (!address) return void socket.destroy();
    const token = this.o.state.grant(target.index, CORE_SLOTS, this.o.limit(), address) ?? 0;
    let pending = this.inFlight.get(target.index);
    if (!pending) this.inFlight.set(target.index, (pending = new Set()));
    pending.add(socket);
    const failed = (err: Error) => {
      pending!.delete(socket);
      if (token) this.o.state.giveBack(target.index, token);
      socket.destroy();
      this.o.log.warn({ err, worker: target.index }, 'a connection could not be handed to a worker: closed (the client retries)');
    };
    const msg: HandoffMessage = { portcullisHandoff: 1, listener, token };
    try {
      // keepOpen false: once sent, Node closes the primary's copy of the descriptor.
      target.worker.send(msg, socket.handle as Socket, { keepOpen: false }, (err) => {
        if (err) return failed(err);
        pending!.delete(socket);
        socket.sent();
      });
    } catch (err) {
      failed(err as Error);
    }
  }

  /** A worker became ready: connections that waited for one go now. */
  flush(): void {
    while (this.waiting.length) {
      const target = this.pick();
      if (!target) return;
      const { listener, socket } = this.waiting.shift()!;
      this.hand(target, listener, socket);
    }
  }

  /**
   * Worker `index` exited: the sockets still queued for it are closed (a socket it had received died
   * with it; its leases are freed by the state host's `detach`).
   */
  workerGone(index: number): void {
    const pending = this.inFlight.get(index);
    this.inFlight.delete(index);
    for (const s of pending ?? []) s.destroy();
  }

  /** Stops accepting (a stop): new clients are refused by the kernel; connections waiting for a worker are closed. */
  close(): void {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w.socket.destroy();
    for (const s of this.servers) s.close();
  }
}

/** The public path's accepted connection (a paused `net.Socket`). */
function fromSocket(socket: Socket): Accepted {
  // A reset before it is handed must not become an uncaught 'error' in the primary.
  socket.on('error', () => undefined);
  return { address: socket.remoteAddress, handle: socket, destroy: () => void socket.destroy(), sent: () => undefined };
}

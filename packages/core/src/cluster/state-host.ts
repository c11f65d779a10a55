import type { Logger } from 'pino';
import { StateMessages } from '../services/ipc-state.js';
import { MemoryState, type SharedCounter, type SlotLease } from '../services/shared-state.js';
import type { IpcChannel } from './ipc-channel.js';

interface Payload {
  name: string;
  limit: number;
  windowMs: number;
  key: string;
  points?: number;
  token: number;
  tokens: number[];
  /** Releases an acquire carries (IpcState's takeReleases): applied before it. */
  releases?: number[];
  value: string;
  ttlMs: number;
}

/**
 * The primary's half of the workers' shared state (services/ipc-state.ts is the workers' half):
 * one memory store answering counters, the cache and concurrency slots for every worker, so that
 * the relay's limits give the same answers with N workers as with one process.
 *
 * Slots are held per worker: `detach(workerId)` (the worker exited, by crash or by plan) gives back
 * every lease it held, so a killed worker's connections stop counting at once, not after a timeout.
 * A release names the lease's token, so a release for a request the primary refused, or for one it
 * never saw, changes nothing.
 *
 * Every handler answers synchronously (the memory store's counters resolve at once, slots are
 * synchronous): the primary does no I/O for a worker's question.
 */
export class ClusterStateHost {
  readonly state = new MemoryState();
  private readonly leases = new Map<number, Map<number, SlotLease>>();
  /** One counter per name, limit and window: the same counter in every worker is one count here. */
  private readonly counters = new Map<string, SharedCounter>();
  /** Leases this primary took itself when it accepted a connection and handed it to a worker (handoff.ts), per worker. */
  private readonly handed = new Map<number, number>();
  /** Tokens of those leases: negative, so they never meet the positive tokens a worker's IpcState numbers its own with. */
  private nextHanded = -1;

  constructor(private readonly log?: Logger) {}

  private counter(name: string, limit: number, windowMs: number): SharedCounter {
    const id = `${name}\u0000${limit}\u0000${windowMs}`;
    let c = this.counters.get(id);
    if (!c) this.counters.set(id, (c = this.state.counter(name, limit, windowMs)));
    return c;
  }

  /** Answers `channel`'s state requests on behalf of worker `workerId` (any stable id: cluster's worker.id). */
  attach(channel: Pick<IpcChannel, 'handle'>, workerId: number): void {
    const held = new Map<number, SlotLease>();
    this.leases.get(workerId)?.forEach((l) => l.release()); // a reused id starts clean
    this.leases.set(workerId, held);
    this.handed.delete(workerId);
    const st = this.state;
    const p = (x: unknown) => x as Payload;
    channel.handle(StateMessages.consume, (x) => {
      const { name, limit, windowMs, key, points } = p(x);
      // Counters come back shared: true (one count for every worker).
      return this.counter(name, limit, windowMs)
        .consume(key, points)
        .then((r) => ({ ...r, shared: true }));
    });
    channel.handle(StateMessages.peek, (x) => {
      const { name, limit, windowMs, key } = p(x);
      return this.counter(name, limit, windowMs).peek(key);
    });
    channel.handle(StateMessages.get, async (x) => (await st.get(p(x).key)) ?? null);
    channel.handle(StateMessages.set, async (x) => {
      const { key, value, ttlMs } = p(x);
      await st.set(key, value, ttlMs);
      return true;
    });
    const release = (tokens: readonly number[] | undefined) => {
      for (const token of tokens ?? []) this.free(workerId, held, token);
    };
    channel.handle(StateMessages.acquire, (x) => {
      const { name, limit, key, token, releases } = p(x);
      release(releases);
      const lease = st.slots(name, limit).acquire(key);
      if (!lease) return false;
      held.set(token, lease);
      return true;
    });
    channel.handle(StateMessages.release, (x) => release((x as { tokens?: number[] }).tokens));
    channel.handle(StateMessages.held, (x) => {
      const { name, limit, key } = p(x);
      return st.slots(name, limit).held(key);
    });
  }

  private free(workerId: number, held: Map<number, SlotLease>, token: number): void {
    const lease = held.get(token);
    if (!lease) return;
    lease.release();
    held.delete(token);
    if (token < 0) this.handed.set(workerId, (this.handed.get(workerId) ?? 1) - 1);
  }

  /**
   * The primary's own acquire, for a connection it accepted and hands to worker `workerId`: the
   * lease is held as that worker's (its release notice names the token; its exit frees it). Returns
   * the lease's token, or undefined when `limit` leases for `key` are out (or the worker is not attached).
   */
  grant(workerId: number, name: string, limit: number, key: string): number | undefined {
    const held = this.leases.get(workerId);
    const lease = held && this.state.slots(name, limit).acquire(key);
    if (!lease) return undefined;
    const token = this.nextHanded--;
    held!.set(token, lease);
    this.handed.set(workerId, (this.handed.get(workerId) ?? 0) + 1);
    return token;
  }

  /** Gives back a granted lease whose connection never reached the worker (a failed send). */
  giveBack(workerId: number, token: number): void {
    const held = this.leases.get(workerId);
    if (held) this.free(workerId, held, token);
  }

  /** Connections handed to worker `workerId` whose lease is still out: what least-connections balancing compares. */
  handedTo(workerId: number): number {
    return this.handed.get(workerId) ?? 0;
  }

  /** Worker `workerId` is gone: every slot it held is free again. Returns how many were. */
  detach(workerId: number): number {
    const held = this.leases.get(workerId);
    if (!held) return 0;
    this.leases.delete(workerId);
    this.handed.delete(workerId);
    for (const l of held.values()) l.release();
    if (held.size) this.log?.info({ worker: workerId, slots: held.size }, 'worker gone: its connection slots are free again');
    return held.size;
  }

  /** Slots held by worker `workerId` right now (tests, status). */
  heldBy(workerId: number): number {
    return this.leases.get(workerId)?.size ?? 0;
  }
}

import type { Server } from 'node:net';

/** An accepted TCP connection as Node's accept hook gives it: a raw handle, no `net.Socket` around it. */
export interface TcpHandle {
  /** Fills `out.address` (and port, family); returns 0 or a negative errno. */
  getpeername(out: { address?: string }): number;
  close(): void;
}

/**
 * Node's private accept hook of a listening `net.Server` (`server._handle.onconnection`): the one
 * node:cluster's round-robin primary sets (lib/internal/cluster/round_robin_handle.js) to pass each
 * accepted handle to a worker without wrapping it in a `net.Socket`. The worker mode's primary does
 * the same (cluster/handoff.ts): the wrapping, measured, cost it more per connection than the IPC it
 * saves. The same on Node 20 and 24 (test/workers-handoff.test.ts runs on both); returns false, and
 * changes nothing, where the hook is missing, and the caller keeps the public path (its
 * 'connection' event with a paused socket).
 */
export function interceptAccept(server: Server, onHandle: (handle: TcpHandle) => void): boolean {
  const h = (server as unknown as { _handle?: { onconnection?: unknown } })._handle;
  if (!h || typeof h.onconnection !== 'function') return false;
  h.onconnection = (err: number, client?: TcpHandle) => {
    if (!err && client) onHandle(client);
  };
  return true;
}

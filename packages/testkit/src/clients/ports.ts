import { readFileSync } from 'node:fs';
import net from 'node:net';

/**
 * The kernel's range for the local ports of outgoing connections (`ip_local_port_range`; Linux's
 * default 32768-60999 when it cannot be read).
 */
function ephemeralRange(): readonly [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(lo) && Number.isInteger(hi) && lo! > 0 && hi! >= lo!) return [lo!, hi!];
  } catch {
    // not Linux, or no /proc: the default
  }
  return [32768, 60999];
}

/** Lowest port freePort hands out (above the usual fixed service ports). */
const LOWEST = 10_000;
/** Ports this process handed out lately: not handed out again while the test that asked may not be listening yet. */
const handedOut = new Set<number>();

function listenable(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

/** The kernel's choice of a free port, then closed (the fallback). */
function kernelPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/**
 * A port nothing listens on right now on `host`, for a server the test starts next.
 *
 * Taken below the kernel's ephemeral range, not from it: a port from that range (what `listen(0)`
 * gives) is also where the kernel picks the local port of every outgoing connection, so between
 * this check and the server's `listen` any connection on the machine (the test's own probes, a
 * client, a daemon) could take it, and the server then fails with EADDRINUSE. A CI run lost that
 * race once (examples/edge-relay, Node 24, 2026-12-08). Below the range only another listener can
 * take the port, and each candidate is checked by listening on it; a port is not handed out twice by
 * one process within a minute. Falls back to the kernel's choice when no candidate is free.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const [lo] = ephemeralRange();
  const top = Math.min(lo, 65536);
  if (top - LOWEST >= 1000) {
    for (let i = 0; i < 50; i++) {
      const port = LOWEST + Math.floor(Math.random() * (top - LOWEST));
      if (handedOut.has(port) || !(await listenable(port, host))) continue;
      handedOut.add(port);
      setTimeout(() => handedOut.delete(port), 60_000).unref();
      return port;
    }
  }
  return kernelPort(host);
}

/** Resolves once something accepts TCP connections on host:port; rejects after `ms`. */
export async function waitForPort(port: number, host = '127.0.0.1', ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Polls `check` every 100 ms until it holds; fails naming `what` after `ms`. */
export async function waitUntil(check: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Polls `cond` every 100 ms for at most `ms`; resolves with whether it held (a last check at the
 * deadline). For tests that assert with their own message; `waitUntil` throws instead.
 */
export async function pollUntil(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return cond();
}

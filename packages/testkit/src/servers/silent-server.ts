import net from 'node:net';

/**
 * A server on 127.0.0.1 that accepts connections, reads whatever is sent and never answers: the
 * hang of a backend (clamd, spamd, ...) that the real daemon cannot be made to produce on demand,
 * so this one fault is simulated. `close()` drops every connection it holds.
 */
export async function startSilentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('data', () => undefined);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        srv.close(() => resolve());
      }),
  };
}

import type { Duplex } from 'node:stream';

/**
 * Gives any duplex stream the parts of `net.Socket` smtp-server uses (idle `setTimeout` with a
 * 'timeout' event, `setNoDelay`, `setKeepAlive`, `readyState`), so a connection can be served over
 * an in-memory stream pair exactly as over TCP. The idle timer behaves as the socket's: any byte
 * read or written restarts it.
 */
export function asSocket<T extends Duplex>(stream: T, addresses: { remoteAddress: string; remotePort: number; localAddress: string; localPort: number }): T {
  const s = stream as unknown as Record<string, unknown>;
  let ms = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (ms > 0 && !stream.destroyed) {
      timer = setTimeout(() => stream.emit('timeout'), ms);
      timer.unref();
    }
  };
  stream.on('data', arm);
  const write = stream.write.bind(stream) as (...a: unknown[]) => boolean;
  s['write'] = (...args: unknown[]) => {
    arm();
    return write(...args);
  };
  stream.once('close', () => {
    if (timer) clearTimeout(timer);
    ms = 0;
  });
  s['setTimeout'] = (timeout: number, cb?: () => void) => {
    ms = timeout;
    if (cb) stream.once('timeout', cb);
    arm();
    return stream;
  };
  s['setNoDelay'] = () => stream;
  s['setKeepAlive'] = () => stream;
  Object.defineProperty(s, 'readyState', { get: () => (stream.destroyed ? 'closed' : stream.writable ? 'open' : 'readOnly'), configurable: true });
  for (const [k, v] of Object.entries(addresses)) Object.defineProperty(s, k, { value: v, configurable: true });
  return stream;
}

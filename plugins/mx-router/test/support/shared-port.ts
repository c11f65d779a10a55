import net from 'node:net';
import { CaptureServer, type CaptureServerOptions } from '@portcullis/testkit';

async function freeTcpPort(host: string): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, host, () => resolve());
  });
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/**
 * Starts one CaptureServer per 127.x host, all on the same port (MX hosts share the SMTP port, as
 * on the Internet). Also checks that `reserve` hosts (e.g. the relay's own 127.0.0.1) can bind it.
 * Retries with another port when one is taken.
 */
export async function startCapturesOnSharedPort(
  hosts: readonly string[],
  options: (host: string) => Omit<CaptureServerOptions, 'host' | 'port'> = () => ({}),
  reserve: readonly string[] = [],
): Promise<{ port: number; servers: Map<string, CaptureServer> }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = await freeTcpPort(hosts[0]!);
    const servers = new Map<string, CaptureServer>();
    try {
      for (const host of hosts) servers.set(host, await CaptureServer.start({ ...options(host), host, port }));
      for (const host of reserve) await freeTcpPortCheck(host, port);
      return { port, servers };
    } catch (err) {
      lastError = err;
      await Promise.all([...servers.values()].map((s) => s.close()));
    }
  }
  throw lastError;
}

async function freeTcpPortCheck(host: string, port: number): Promise<void> {
  const s = net.createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(port, host, () => resolve());
  });
  await new Promise<void>((resolve) => s.close(() => resolve()));
}

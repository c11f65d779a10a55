import net from 'node:net';

/**
 * A deliberately open SMTP server on loopback: a raw line server that answers 2xx to everything
 * (no address parsing at all), so every relay trick "succeeds". It records the RCPT TO lines.
 */
export class OpenServer {
  readonly rcpts: string[] = [];
  port = 0;
  private readonly sockets = new Set<net.Socket>();
  private readonly server = net.createServer((s) => this.serve(s));

  static async start(): Promise<OpenServer> {
    const o = new OpenServer();
    await new Promise<void>((resolve, reject) => {
      o.server.once('error', reject);
      o.server.listen(0, '127.0.0.1', () => resolve());
    });
    o.port = (o.server.address() as net.AddressInfo).port;
    return o;
  }

  private serve(s: net.Socket): void {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', () => undefined);
    let buf = '';
    let inData = false;
    s.write('220 open.test ESMTP wide open\r\n');
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let i: number;
      while ((i = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (inData) {
          if (line === '.') {
            inData = false;
            s.write('250 2.0.0 queued\r\n');
          }
          continue;
        }
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') s.write('250-open.test\r\n250 8BITMIME\r\n');
        else if (verb === 'RCPT') {
          this.rcpts.push(line.slice('RCPT TO:'.length));
          s.write('250 2.1.5 ok\r\n');
        } else if (verb === 'DATA') {
          inData = true;
          s.write('354 go ahead\r\n');
        } else if (verb === 'QUIT') s.end('221 bye\r\n');
        else s.write('250 ok\r\n');
      }
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

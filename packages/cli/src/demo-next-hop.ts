import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

/** How many lines of each message the demo prints before cutting it short. */
const MAX_LINES = 60;

/**
 * The demo's "internal mail server": a small smtp-server on loopback that accepts everything and
 * prints each message to stdout for a person to read (envelope, then the text as it arrived,
 * including the Received header the relay added).
 */
export class DemoNextHop {
  private server?: SMTPServer;
  private count = 0;

  constructor(
    readonly host: string,
    /** The port asked for; 0 takes a free one, and `start()` sets the one in use. */
    public port: number,
    private readonly out: NodeJS.WritableStream = process.stdout,
  ) {}

  async start(): Promise<number> {
    this.server = new SMTPServer({
      name: 'nexthop.demo.example',
      banner: 'demo next hop',
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      disableReverseLookup: true,
      logger: false,
      onData: (stream, session, cb) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const raw = Buffer.concat(chunks);
          this.print(session.envelope.mailFrom ? session.envelope.mailFrom.address : '', session.envelope.rcptTo.map((r) => r.address), raw);
          cb(null, 'Ok: printed by the demo next hop');
        });
      },
    });
    const server = this.server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, this.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', () => undefined);
    this.port = (server as unknown as { server: { address(): AddressInfo } }).server.address().port;
    return this.port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      setTimeout(resolve, 1000).unref();
    });
  }

  private print(from: string, to: string[], raw: Buffer): void {
    this.count++;
    const lines = raw.toString('utf8').replace(/(\r?\n)+$/, '').split(/\r?\n/);
    const shown = lines.slice(0, MAX_LINES);
    const rule = '-'.repeat(72);
    const out = [
      '',
      `${rule}`,
      `Message ${this.count} delivered to the next hop (${this.host}:${this.port}) at ${new Date().toISOString()}`,
      `  MAIL FROM: <${from}>`,
      `  RCPT TO:   ${to.map((t) => `<${t}>`).join(', ')}`,
      `  size:      ${raw.length} bytes`,
      '',
      ...shown.map((l) => `  | ${l}`),
      ...(lines.length > shown.length ? [`  | ... (${lines.length - shown.length} more lines not shown)`] : []),
      rule,
      '',
    ];
    this.out.write(out.join('\n') + '\n');
  }
}

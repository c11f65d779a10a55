import dgram from 'node:dgram';

/**
 * A UDP "name server" on 127.0.0.1 that answers every query with SERVFAIL. Point a dnsmasq zone at
 * it (`server=/servfail.test/127.0.0.1#<port>`) and dnsmasq passes the SERVFAIL on to its client;
 * a closed port instead makes dnsmasq stay silent (the client sees a timeout).
 */
export class ServfailUpstream {
  private constructor(private readonly socket: dgram.Socket) {}
  queries = 0;

  static async start(): Promise<ServfailUpstream> {
    const socket = dgram.createSocket('udp4');
    const s = new ServfailUpstream(socket);
    socket.on('message', (msg, rinfo) => {
      if (msg.length < 12) return;
      s.queries++;
      const reply = Buffer.from(msg);
      reply[2] = (msg[2]! | 0x80) & ~0x04; // QR=1 (a response), AA=0
      reply[3] = 0x80 | 2; // RA=1, RCODE=2 (SERVFAIL)
      socket.send(reply, rinfo.port, rinfo.address);
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, '127.0.0.1', () => resolve());
    });
    return s;
  }

  /** `127.0.0.1#<port>`, as a dnsmasq `server=` target. */
  get target(): string {
    return `127.0.0.1#${this.socket.address().port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}

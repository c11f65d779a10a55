import assert from 'node:assert/strict';
import net from 'node:net';
import { Readable } from 'node:stream';
import { scan } from '../src/spamd-client.js';

/*
 * Answers the real spamd never gives (garbage, a truncated answer, an endless one, a reset): a
 * scripted TCP server stands in for it, since these faults cannot be produced on demand. Each
 * must end as an `error` result (the plugin's onError), never a throw, a hang or a score.
 */
describe('spamd client: broken answers end as errors', () => {
  const servers: net.Server[] = [];
  async function fake(onData: (s: net.Socket, got: Buffer) => void): Promise<number> {
    const srv = net.createServer((s) => {
      let got = Buffer.alloc(0);
      s.on('error', () => undefined);
      s.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        onData(s, got);
      });
    });
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    return (srv.address() as net.AddressInfo).port;
  }
  after(() => {
    for (const s of servers) s.close();
  });
  const message = Buffer.from('Subject: x\r\n\r\nhello\r\n');
  const req = { command: 'SYMBOLS' as const, size: message.length, open: () => Readable.from([message], { objectMode: false }) };
  const limits = { connectTimeout: 1_000, timeout: 2_000 };
  /** Answers once the whole request (head and the announced bytes) has arrived. */
  const whenComplete = (answer: (s: net.Socket) => void) => (s: net.Socket, got: Buffer) => {
    const head = got.indexOf('\r\n\r\n');
    if (head >= 0 && got.length >= head + 4 + message.length && !(s as { answered?: boolean }).answered) {
      (s as { answered?: boolean }).answered = true;
      answer(s);
    }
  };

  it('sends the request line, Content-length and the exact bytes, and reads score and rules', async () => {
    let request = '';
    const port = await fake(whenComplete((s) => s.end('SPAMD/1.1 0 EX_OK\r\nContent-length: 9\r\nSpam: True ; 7.5 / 5.0\r\n\r\nRULE_A,B_')));
    servers.at(-1)!.on('connection', (s) => s.on('data', (d: Buffer) => (request += d.toString('latin1'))));
    const r = await scan({ ...req, user: 'bob\r\nX: y' }, [{ host: '127.0.0.1', port }], limits);
    assert.deepEqual(r, { kind: 'scanned', server: `127.0.0.1:${port}`, isSpam: true, score: 7.5, required: 5, symbols: ['RULE_A', 'B_'] });
    assert.equal(request, `SYMBOLS SPAMC/1.5\r\nContent-length: ${message.length}\r\nUser: bobX:y\r\n\r\n${message.toString('latin1')}`);
  });

  const cases: Array<[string, (s: net.Socket) => void, RegExp]> = [
    ['garbage instead of a status line', (s) => s.end('HTTP/1.1 200 OK\r\n\r\n'), /not a spamd answer/],
    ['an error status', (s) => s.end('SPAMD/1.0 76 Bad header line: (Content-length mismatch)\r\n'), /spamd answered 76 Bad header line/],
    ['no Spam header', (s) => s.end('SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n'), /without a Spam header/],
    ['a connection closed without an answer', (s) => s.destroy(), /without a Spam header|not a spamd answer/],
    ['an answer larger than the cap', (s) => s.write(Buffer.alloc(2 * 1024 * 1024, 0x41)), /answer too large/],
  ];
  for (const [what, answer, detail] of cases) {
    it(`gives an error result for ${what}`, async () => {
      const port = await fake(whenComplete(answer));
      const r = await scan(req, [{ host: '127.0.0.1', port }], limits);
      assert.equal(r.kind, 'error');
      assert.match(r.kind === 'error' ? r.detail : '', detail);
    });
  }

  it('gives unavailable when no server accepts, and scans on the next server in order (failover)', async () => {
    const port = await fake(whenComplete((s) => s.end('SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.1 / 5.0\r\n\r\n')));
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const closedPort = (closed.address() as net.AddressInfo).port;
    closed.close();
    const down = await scan(req, [{ host: '127.0.0.1', port: closedPort }], limits);
    assert.equal(down.kind, 'error');
    assert.equal(down.kind === 'error' && down.reason, 'unavailable');
    const next = await scan(req, [{ host: '127.0.0.1', port: closedPort }, { host: '127.0.0.1', port }], limits);
    assert.equal(next.kind === 'scanned' && next.server, `127.0.0.1:${port}`);
  });

  it('gives an error, not a hang, when the spooled stream fails while being sent', async () => {
    const port = await fake(() => undefined);
    const failing = { command: 'CHECK' as const, size: 1000, open: () => new Readable({ read() { this.destroy(new Error('disk read failed')); } }) };
    const r = await scan(failing, [{ host: '127.0.0.1', port }], limits);
    assert.equal(r.kind, 'error');
    assert.match(r.kind === 'error' ? r.detail : '', /disk read failed/);
  });
});

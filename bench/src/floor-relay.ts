/**
 * The floor under Portcullis: what smtp-server and nodemailer cost alone, measured the same way
 * as the relay (`node bench/dist/floor-relay.js --listen 127.0.0.1:PORT --upstream HOST:PORT`).
 *
 * A relay with nothing of ours in it: smtp-server receives, the message is appended to one file
 * with one fdatasync per batch of messages that arrived meanwhile (group commit, as Portcullis's
 * segment spool), the 250 goes out after the fdatasync, and nodemailer's SMTP client forwards it
 * over a pool of reused connections. No policy, no MIME pass, no logging, no metrics, no limits.
 * Like Portcullis's bench listener it greets at once: smtp-server's hard-coded 100 ms early-talker
 * pause is replaced with the core's `setGreetingDelay(conn, 0)` (the only piece of Portcullis here).
 * It is a yardstick, not a relay: it keeps nothing after delivery and retries nothing.
 *
 * On exit (SIGTERM) it prints one JSON line: messages, CPU ms per message between the first and
 * the last reply, like relay-main --stats.
 */
import { closeSync, fdatasync, mkdtempSync, openSync, rmSync, writev } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import { setGreetingDelay } from '@portcullis/core/internal';

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const listen = opt('--listen') ?? '127.0.0.1:2652';
const upstream = opt('--upstream') ?? '127.0.0.1:2651';
const [lhost, lport] = [listen.slice(0, listen.lastIndexOf(':')), Number(listen.slice(listen.lastIndexOf(':') + 1))];
const [uhost, uport] = [upstream.slice(0, upstream.lastIndexOf(':')), Number(upstream.slice(upstream.lastIndexOf(':') + 1))];

const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-floor-'));
const fd = openSync(path.join(dir, 'spool.seg'), 'a');

/** Group commit: writes queued while a batch is on its way form the next batch. */
let pending: Array<{ buf: Buffer; done: () => void }> = [];
let writing = false;
function commit(buf: Buffer): Promise<void> {
  return new Promise((resolve) => {
    pending.push({ buf, done: resolve });
    if (!writing) flush();
  });
}
function flush(): void {
  const batch = pending;
  pending = [];
  if (!batch.length) {
    writing = false;
    return;
  }
  writing = true;
  writev(fd, batch.map((b) => b.buf), (err) => {
    if (err) throw err;
    fdatasync(fd, (err2) => {
      if (err2) throw err2;
      for (const b of batch) b.done();
      flush();
    });
  });
}

/** Idle connections to the upstream, reused. */
const idle: Array<InstanceType<typeof SMTPConnection>> = [];
async function connection(): Promise<InstanceType<typeof SMTPConnection>> {
  const c = idle.pop();
  if (c) return c;
  const conn = new SMTPConnection({ host: uhost, port: uport, name: 'floor.bench.example', ignoreTLS: true, logger: false } as ConstructorParameters<typeof SMTPConnection>[0]);
  conn.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    conn.once('error', reject);
    conn.connect(() => resolve());
  });
  return conn;
}
async function forward(from: string, to: string[], body: Buffer): Promise<void> {
  const conn = await connection();
  await new Promise<void>((resolve, reject) => conn.send({ from, to }, body, (err) => (err ? reject(err) : resolve())));
  idle.push(conn);
}

let first = 0;
let last = 0;
let cpuFirst = 0;
let cpuLast = 0;
let replies = 0;
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

const server = new SMTPServer({
  authOptional: true,
  disabledCommands: ['AUTH', 'STARTTLS'],
  logger: false,
  size: 25 * 1024 * 1024,
  // As Portcullis does: no reverse lookup of the client, and replies sent at once (no Nagle delay).
  disableReverseLookup: true,
  onConnect(session, cb) {
    cb();
  },
  onData(stream, session, cb) {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', () => undefined);
    stream.on('end', () => {
      const body = Buffer.concat(chunks);
      const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
      const to = session.envelope.rcptTo.map((r) => r.address);
      commit(body).then(() => {
        cb(null, 'Ok: queued');
        const t = performance.now();
        if (!replies++) (first = t), (cpuFirst = cpu());
        last = t;
        if (replies % 32 === 0) cpuLast = cpu();
        forward(from, to, body).catch(() => undefined);
      });
    });
  },
});
server.on('error', () => undefined);
server.server.on('connection', (socket) => socket.setNoDelay(true));
// smtp-server adds each new connection to this Set right before init(): greet without the pause.
const conns = (server as unknown as { connections: Set<unknown> }).connections;
const add = conns.add.bind(conns);
conns.add = (c: unknown) => {
  setGreetingDelay(c, 0);
  return add(c);
};
server.listen(lport, lhost, () => process.stderr.write(`floor-relay: pid ${process.pid} listening on ${listen}, upstream ${upstream}\n`));

process.on('SIGUSR2', () => {
  replies = 0;
});
process.on('SIGTERM', () => {
  const n = Math.floor((replies - 1) / 32) * 32;
  process.stdout.write(JSON.stringify({ messages: replies, seconds: Math.round(last - first) / 1000, cpuMsPerMsg: n > 0 ? Math.round(((cpuLast - cpuFirst) / n) * 1000) / 1000 : null }) + '\n');
  closeSync(fd);
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
});

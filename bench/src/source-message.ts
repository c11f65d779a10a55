/**
 * The exact message smtp-source sends for a given `-l BYTES`, captured once from one run of it
 * against a one-shot SMTP listener here: the rspamd rows POST these bytes straight to rspamd, so
 * "rspamd's own rate" is measured on the message the relay passes on (the bytes as received,
 * dot-unstuffed, without the end-of-data dot), not on a look-alike. Loopback only, bounded in time.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';

export function captureSourceMessage(smtpSource: string, size: number, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let data: Buffer | undefined;
    const server = net.createServer((s) => {
      s.on('error', () => undefined);
      let buf = Buffer.alloc(0);
      let inData = false;
      s.write('220 capture ESMTP\r\n');
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          if (inData) {
            const end = buf.indexOf('\r\n.\r\n');
            if (end < 0) return;
            data = Buffer.from(buf.subarray(0, end + 2).toString('latin1').replace(/\r\n\.\./g, '\r\n.').replace(/^\.\./, '.'), 'latin1');
            buf = buf.subarray(end + 5);
            inData = false;
            s.write('250 ok\r\n');
            continue;
          }
          const eol = buf.indexOf('\r\n');
          if (eol < 0) return;
          const cmd = buf.subarray(0, eol).toString('latin1').toUpperCase();
          buf = buf.subarray(eol + 2);
          if (cmd.startsWith('DATA')) {
            inData = true;
            s.write('354 go\r\n');
          } else if (cmd.startsWith('QUIT')) s.end('221 bye\r\n');
          else s.write('250 ok\r\n');
        }
      });
    });
    const timer = setTimeout(() => done(new Error('capturing smtp-source\'s message timed out')), timeoutMs);
    const done = (err?: Error) => {
      clearTimeout(timer);
      server.close();
      if (err || !data) reject(err ?? new Error('smtp-source sent no message'));
      else resolve(data);
    };
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      const args = ['-s', '1', '-m', '1', '-l', String(size), '-f', 'bench@source.example', '-t', 'rcpt@hosted.example', '-N', '-M', 'client.example', `127.0.0.1:${port}`];
      const cp = spawn(smtpSource, args, { stdio: 'ignore' });
      cp.on('error', (e) => done(e));
      cp.on('exit', (code) => done(code === 0 ? undefined : new Error(`smtp-source exited ${code}`)));
    });
  });
}

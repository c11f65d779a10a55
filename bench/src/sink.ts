/**
 * Minimal counting SMTP sink (fallback when Postfix's smtp-sink is not installed), run as a
 * child process: `node sink.js HOST:PORT`. Accepts everything, counts messages (at the final
 * "."), and reports the count to the parent over IPC every 10 ms when it changed.
 */
import net from 'node:net';

const [host, portText] = (process.argv[2] ?? '127.0.0.1:2621').split(':');
let count = 0;
let reported = -1;

const server = net.createServer((sock) => {
  sock.setNoDelay(true);
  let buf = '';
  let inData = false;
  sock.write('220 sink.bench.example ESMTP\r\n');
  sock.on('data', (chunk: Buffer) => {
    buf += chunk.toString('latin1');
    let out = '';
    for (;;) {
      if (inData) {
        const end = buf.indexOf('\r\n.\r\n');
        if (end === -1) {
          // keep a tail long enough to hold a split terminator
          if (buf.length > 8) buf = buf.slice(-8);
          break;
        }
        buf = buf.slice(end + 5);
        inData = false;
        count++;
        out += '250 2.0.0 Ok: queued\r\n';
        continue;
      }
      const nl = buf.indexOf('\r\n');
      if (nl === -1) break;
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 2);
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'EHLO') out += '250-sink.bench.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n';
      else if (verb === 'DATA') {
        out += '354 End data with <CR><LF>.<CR><LF>\r\n';
        inData = true;
        buf = '\r\n' + buf; // so a body that starts with "." + CRLF is found by the same search
      } else if (verb === 'QUIT') {
        out += '221 2.0.0 Bye\r\n';
        sock.end(out);
        return;
      } else out += '250 2.0.0 Ok\r\n';
    }
    if (out) sock.write(out);
  });
  sock.on('error', () => sock.destroy());
});
server.maxConnections = 2048;
server.listen(Number(portText), host, 1024, () => process.send?.({ ready: true }));
setInterval(() => {
  if (count !== reported) {
    reported = count;
    process.send?.({ count });
  }
}, 10);
process.on('disconnect', () => process.exit(0));

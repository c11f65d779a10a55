#!/usr/bin/env node
// "The Internet" for this example: the relay's smart host. Outbound mail that would go to the
// recipients' MX hosts comes here instead and is printed, so nothing ever leaves the machine.
//
//   node internet-sink.mjs              # 127.0.0.1:2727
//   SINK_PORT=2727 SINK_HOST=127.0.0.1 node internet-sink.mjs
import { SMTPServer } from 'smtp-server';
import { loopbackOnly, readAll, summary } from './mail-summary.mjs';

const host = process.env.SINK_HOST ?? '127.0.0.1';
const port = Number(process.env.SINK_PORT ?? 2727);
loopbackOnly(host);

const server = new SMTPServer({
  name: 'internet.example.test',
  banner: 'internet sink (Portcullis edge-relay example): nothing goes further',
  disabledCommands: ['AUTH', 'STARTTLS'],
  authOptional: true,
  disableReverseLookup: true,
  logger: false,
  async onData(stream, session, callback) {
    const raw = await readAll(stream);
    console.log(`internet got ${summary(session, raw)}`);
    callback(null, 'Taken by the internet sink');
  },
});

server.on('error', (err) => console.error(`internet sink: ${err.message}`));
server.listen(port, host, () => {
  console.log(`internet sink listening on ${host}:${server.server.address().port}`);
});
// Stop at once on Ctrl-C / SIGTERM; close() alone would wait for the relay's pooled connection.
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 500).unref();
  });
}

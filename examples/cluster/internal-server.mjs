#!/usr/bin/env node
// The internal mail server both relay nodes deliver to: prints one line per message, with the
// node that delivered it (its HELO name).
//
//   INTERNAL_PORT=2610 node internal-server.mjs
import { SMTPServer } from 'smtp-server';

const port = Number(process.env.INTERNAL_PORT ?? 2610);
const server = new SMTPServer({
  name: 'internal.example.test',
  disabledCommands: ['AUTH', 'STARTTLS'],
  authOptional: true,
  disableReverseLookup: true,
  logger: false,
  onData(stream, session, callback) {
    let size = 0;
    stream.on('data', (c) => (size += c.length));
    stream.on('error', () => undefined);
    stream.on('end', () => {
      console.log(`internal got ${size} bytes from ${session.hostNameAppearsAs} for ${session.envelope.rcptTo.map((r) => r.address).join(',')}`);
      callback(null, 'Stored');
    });
  },
});
server.on('error', (err) => console.error(`internal server: ${err.message}`));
server.listen(port, '127.0.0.1', () => console.log(`internal mail server listening on 127.0.0.1:${port}`));
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => (server.close(() => process.exit(0)), setTimeout(() => process.exit(0), 500).unref()));

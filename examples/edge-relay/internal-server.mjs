#!/usr/bin/env node
// The internal mail server behind the relay: a small smtp-server that stores every message it
// receives as an .eml file and prints one line per message. Loopback only.
//
//   node internal-server.mjs            # 127.0.0.1:2626, stores into ./mailstore/
//   INTERNAL_PORT=2626 MAILSTORE=./mailstore INTERNAL_HOST=127.0.0.1 node internal-server.mjs
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import { loopbackOnly, readAll, summary } from './mail-summary.mjs';

const host = process.env.INTERNAL_HOST ?? '127.0.0.1';
const port = Number(process.env.INTERNAL_PORT ?? 2626);
const store = path.resolve(process.env.MAILSTORE ?? 'mailstore');
loopbackOnly(host);
mkdirSync(store, { recursive: true });

let count = 0;
const server = new SMTPServer({
  name: 'internal.example.test',
  banner: 'internal mail server (Portcullis edge-relay example)',
  // Plain SMTP, no login: only the relay talks to it, over loopback.
  disabledCommands: ['AUTH', 'STARTTLS'],
  authOptional: true,
  disableReverseLookup: true,
  logger: false,
  async onData(stream, session, callback) {
    try {
      const raw = await readAll(stream);
      // Sortable and unique: time, then a counter for messages in the same millisecond.
      const name = `${new Date().toISOString().replace(/[:.]/g, '-')}-${String(++count).padStart(4, '0')}.eml`;
      writeFileSync(path.join(store, name), raw);
      console.log(`stored ${name} ${summary(session, raw)}`);
      callback(null, `Stored as ${name}`);
    } catch {
      callback(Object.assign(new Error('Could not store the message, try again later'), { responseCode: 451 }));
    }
  },
});

server.on('error', (err) => console.error(`internal server: ${err.message}`));
server.listen(port, host, () => {
  console.log(`internal mail server listening on ${host}:${server.server.address().port}, storing into ${store}`);
});
// Stop at once on Ctrl-C / SIGTERM; close() alone would wait for the relay's pooled connection.
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 500).unref();
  });
}

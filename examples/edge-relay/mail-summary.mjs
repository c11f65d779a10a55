// Shared by internal-server.mjs and internet-sink.mjs: one printable line per received message.

/** The unfolded Subject of a raw message (as sent: encoded words are left as they are). */
export function subjectOf(raw) {
  const end = raw.indexOf('\r\n\r\n');
  const head = raw.subarray(0, end === -1 ? raw.length : end).toString('latin1').replace(/\r\n[ \t]+/g, ' ');
  const m = /^subject:[ \t]*(.*)$/im.exec(head);
  return m ? m[1].trim() : '';
}

/** `from=<a@b> to=<c@d>,<e@f> client=127.0.0.2 subject="..."`: the envelope and the subject. */
export function summary(session, raw) {
  const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
  const to = session.envelope.rcptTo.map((r) => `<${r.address}>`).join(',');
  return `from=<${from}> to=${to} client=${session.remoteAddress} subject=${JSON.stringify(subjectOf(raw))}`;
}

/** Collects a DATA stream into one Buffer. */
export function readAll(stream) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    stream.on('data', (c) => chunks.push(c));
    stream.once('error', reject);
    stream.once('end', () => resolve(Buffer.concat(chunks)));
  });
}

/** Refuses to bind anything but a loopback address: these servers are for trying things out. */
export function loopbackOnly(host) {
  if (!/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) && host !== '::1') {
    console.error(`refusing to listen on ${host}: this example listens on loopback addresses only (127.0.0.0/8, ::1)`);
    process.exit(64);
  }
}

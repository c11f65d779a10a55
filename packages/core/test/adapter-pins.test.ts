import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import net, { type AddressInfo } from 'node:net';
import { Splitter, type MimeNode, type SplitterChunk } from 'mailsplit';
import { SMTPServer } from 'smtp-server';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import { container } from 'tsyringe';
import { FIELDS, hookConnections, libraryFields, libraryHashes, PINS } from '../src/adapter/smtp-server.js';
import { NODEMAILER_FIELDS, NODEMAILER_PINS, nodemailerFields, nodemailerHashes } from '../src/adapter/nodemailer.js';
import { installedMailsplitVersion, MAILSPLIT_FIELDS, MAILSPLIT_PINS, mailsplitFields } from '../src/adapter/mailsplit.js';
import { hasReplaceableRegistry, TSYRINGE_PINS } from '../src/adapter/tsyringe.js';
import { interceptAccept, type TcpHandle } from '../src/adapter/node-accept.js';

// The one pin test: every library internal the core wraps, replaces, calls or reads is listed beside
// its pin in an adapter's table (adapter/smtp-server.ts, adapter/nodemailer.ts, adapter/mailsplit.ts,
// adapter/tsyringe.ts): methods by the hash of their source, fields by their type on a real object
// of the library (a connection on loopback, a parsed MIME part). An upgrade of any of these
// libraries fails here first, naming the member that changed.
describe('library pins (adapter/)', () => {
  let server: SMTPServer;
  let port = 0;
  const accepted: unknown[] = [];

  before(async () => {
    server = new SMTPServer({ authOptional: true, logger: false, disabledCommands: ['STARTTLS'] });
    hookConnections<unknown>(server, { added: (c, add) => { accepted.push(c); add(); }, deleted: () => undefined });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = ((server as unknown as { server: { address(): AddressInfo } }).server.address()).port;
  });

  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** A nodemailer client connected to the loopback server (greeting read, EHLO done). */
  async function client(): Promise<InstanceType<typeof SMTPConnection>> {
    const conn = new SMTPConnection({ host: '127.0.0.1', port, ignoreTLS: true, logger: false } as ConstructorParameters<typeof SMTPConnection>[0]);
    conn.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      conn.once('error', reject);
      conn.connect(() => resolve());
    });
    return conn;
  }

  it('smtp-server: the installed version and the source hash of every wrapped, replaced or called method match PINS', () => {
    const installed = libraryHashes();
    for (const [key, pinned] of Object.entries(PINS)) assert.equal(installed[key as keyof typeof PINS], pinned, `smtp-server ${key} differs from its pin`);
    assert.deepEqual(Object.keys(installed).sort(), Object.keys(PINS).sort());
    assert.deepEqual(Object.keys(PINS).sort(), [
      'SMTPConnection#_createParser', 'SMTPConnection#_isSupported', 'SMTPConnection#_onCommand', 'SMTPConnection#_proxyCommandAllowed',
      'SMTPConnection#_setListeners', 'SMTPConnection#init', 'SMTPConnection#send', 'SMTPServer#_expectsProxyHeader', 'SMTPStream#_write', 'version',
    ]);
  });

  it('smtp-server: every field the adapter reads has the pinned type on a real connection after its greeting', async () => {
    const conn = await client();
    try {
      assert.equal(accepted.length >= 1, true, 'the server saw the connection');
      const fields = libraryFields(accepted[accepted.length - 1]);
      assert.deepEqual(fields, { ...FIELDS });
      assert.equal(Object.keys(FIELDS).length, 13);
    } finally {
      conn.close();
    }
  });

  it('nodemailer: the installed version and the source hash of every wrapped or replaced method match NODEMAILER_PINS', () => {
    const installed = nodemailerHashes();
    assert.equal(installed.version, NODEMAILER_PINS.version);
    assert.ok(NODEMAILER_PINS['SMTPConnection#_sendCommand'].includes(installed['SMTPConnection#_sendCommand'] as never), `nodemailer _sendCommand ${installed['SMTPConnection#_sendCommand']} differs from its pin`);
    assert.ok(NODEMAILER_PINS['SMTPConnection#_createSendStream'].includes(installed['SMTPConnection#_createSendStream'] as never), `nodemailer _createSendStream ${installed['SMTPConnection#_createSendStream']} differs from its pin`);
  });

  it('nodemailer: every field the adapter reads or writes has the pinned type on a connected client', async () => {
    const conn = await client();
    try {
      assert.deepEqual(nodemailerFields(conn), { ...NODEMAILER_FIELDS });
    } finally {
      conn.close();
    }
  });

  it('mailsplit: the installed version matches MAILSPLIT_PINS and a parsed part has the fields the adapter reads', async () => {
    assert.equal(installedMailsplitVersion(), MAILSPLIT_PINS.version);
    const splitter = new Splitter();
    const nodes: MimeNode[] = [];
    splitter.on('data', (chunk: SplitterChunk) => {
      if (chunk.type === 'node') nodes.push(chunk);
    });
    const done = new Promise((resolve, reject) => splitter.on('end', resolve).on('error', reject));
    splitter.end('Content-Type: text/plain; name="a.txt"\r\nContent-Disposition: attachment; filename="a.txt"\r\n\r\nhello\r\n');
    await done;
    assert.equal(nodes.length, 1);
    assert.deepEqual(mailsplitFields(nodes[0]), { ...MAILSPLIT_FIELDS });
  });

  it('tsyringe: the installed version matches TSYRINGE_PINS and a child container has the registry the adapter replaces entries in', () => {
    const version = (createRequire(import.meta.url)('tsyringe/package.json') as { version: string }).version;
    assert.equal(version, TSYRINGE_PINS.version);
    assert.equal(hasReplaceableRegistry(container.createChildContainer()), true);
  });

  it('node:net: a listening server has the private accept hook the worker-mode primary takes, and it hands over a raw handle with the peer address', async () => {
    // adapter/node-accept.ts falls back to the public path when the hook is missing; this pin says when
    // a Node line changes it, so that the fallback (slower, see the core README) is never taken unnoticed.
    const srv = net.createServer();
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    try {
      const got = new Promise<TcpHandle>((resolve) => assert.equal(interceptAccept(srv, resolve), true));
      const client = net.connect((srv.address() as AddressInfo).port, '127.0.0.1');
      client.on('error', () => undefined);
      const handle = await got;
      const peer: { address?: string } = {};
      assert.equal(handle.getpeername(peer), 0);
      assert.equal(peer.address, '127.0.0.1');
      const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
      handle.close();
      await closed;
    } finally {
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    }
  });
});

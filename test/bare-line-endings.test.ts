import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '@portcullis/core';
import { hostedRelay, RawSmtp, type CaptureServer, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';

const LEGACY = '127.0.0.9';
const OTHER = '127.0.0.7';

/** Sends `body` as written (no dot-stuffing, no line-ending fixes) and returns the final reply. */
async function sendAsIs(port: number, localAddress: string, body: string): Promise<string> {
  const c = await RawSmtp.connect(port, '127.0.0.1', localAddress);
  await c.read();
  await c.cmd('EHLO legacy.test');
  await c.cmd('MAIL FROM:<app@legacy.test>');
  assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250/);
  assert.match(await c.cmd('DATA'), /^354/);
  c.write(body);
  const reply = await c.read();
  c.close();
  return reply;
}

describe('bare line endings', () => {
  let sink: CaptureServer;
  let relay: HostedRelay;
  before(async () => {
    relay = await hostedRelay({ builtins: { 'relay-policy': relayPolicy }, domain: 'example.com', config: { bareLineEndings: { normalize: [`${LEGACY}/32`] } } });
    sink = relay.sink;
  });
  after(() => relay?.close());

  it('normalises bare LF and bare CR to CRLF for a client in bareLineEndings.normalize, and delivers one message', async () => {
    const reply = await sendAsIs(relay.port, LEGACY, 'Subject: legacy\nX-A: 1\r\n\nline one\nline\rtwo\r\n\n.\nMAIL FROM:<x@evil.test>\r\n.\r\n');
    assert.match(reply, /^250 2\.0\.0 Ok: queued as /);
    const [m] = await sink.waitFor(1);
    const text = m!.raw.toString('latin1');
    const body = text.slice(text.indexOf('Subject: legacy'));
    // The "\n.\n" became a dot line inside the one message: the next hop sees it dot-stuffed, not as an end.
    assert.equal(body, 'Subject: legacy\r\nX-A: 1\r\n\r\nline one\r\nline\r\ntwo\r\n\r\n.\r\nMAIL FROM:<x@evil.test>\r\n');
    assert.equal(sink.messages.length, 1);
  });

  it('still rejects bare line endings from every other client with 550 5.6.0', async () => {
    const reply = await sendAsIs(relay.port, OTHER, 'Subject: other\nline one\r\n.\r\n');
    assert.equal(reply, '550 5.6.0 Message contains bare CR, bare LF or NUL; lines must end with CRLF');
  });

  it('still rejects NUL from a listed client', async () => {
    const reply = await sendAsIs(relay.port, LEGACY, 'Subject: nul\r\n\r\na\0b\r\n.\r\n');
    assert.equal(reply, '550 5.6.0 Message contains bare CR, bare LF or NUL; lines must end with CRLF');
  });

  it('refuses shorthand and host bits in bareLineEndings.normalize, naming the key', () => {
    for (const [net, hint] of [
      ['192.168.1/24', /relay\.yaml: bareLineEndings\.normalize\[0\]: "192\.168\.1\/24" is shorthand.*192\.168\.1\.0\/24/],
      ['10.0.0.5/8', /relay\.yaml: bareLineEndings\.normalize\[0\]: "10\.0\.0\.5\/8" has host bits set: write the network 10\.0\.0\.0\/8/],
    ] as const) {
      assert.throws(
        () => parseConfig({ listen: [{ port: 25 }], bareLineEndings: { normalize: [net] } }, 'relay.yaml'),
        (err: unknown) => err instanceof ConfigError && hint.test(err.message),
      );
    }
  });
});

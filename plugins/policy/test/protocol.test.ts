import assert from 'node:assert/strict';
import net from 'node:net';
import { encodeRequest, parseAction, parseAnswer, PolicyClient, PolicyRequestError, type ActionSettings } from '../src/index.js';
import { AnswerEnd } from '../src/protocol.js';

const postfix: ActionSettings = { rejectCode: 554, deferCode: 450, postfixReplyText: true };

describe('policy protocol framing', () => {
  it('writes name=value lines and an empty line, turning CR, LF, NUL and other controls in values into ?, so no attribute can be injected', () => {
    const out = encodeRequest([['request', 'smtpd_access_policy'], ['helo_name', 'evil\nrecipient=postmaster@example.com\r\n\nx\0y\ttab']]).toString();
    assert.equal(out, 'request=smtpd_access_policy\nhelo_name=evil?recipient=postmaster@example.com???x?y?tab\n\n');
    assert.equal(out.split('\n').filter((l) => l.startsWith('recipient=')).length, 0);
  });

  it('reads an answer only once its empty line arrived, with LF or CRLF line ends, and says how many bytes it used', () => {
    assert.equal(parseAnswer(Buffer.from('action=DUNNO\n')), undefined);
    const a = parseAnswer(Buffer.from('action=REJECT no\nextra=1\n\n'))!;
    assert.equal(a.attrs.get('action'), 'REJECT no');
    assert.equal(a.attrs.get('extra'), '1');
    assert.equal(a.used, 'action=REJECT no\nextra=1\n\n'.length);
    assert.equal(parseAnswer(Buffer.from('action=OK\r\n\r\n'))!.attrs.get('action'), 'OK');
    assert.equal(parseAnswer(Buffer.from('\n'))!.attrs.size, 0);
  });

  it('refuses a line that is not name=value and an answer longer than 16 KB', () => {
    assert.throws(() => parseAnswer(Buffer.from('garbage\n\n')), /not name=value/);
    assert.throws(() => parseAnswer(Buffer.from('action=' + 'x'.repeat(17_000))), /longer than/);
  });
});

describe('policy answers read as they arrive', () => {
  const answers = ['action=DUNNO\n\n', 'action=OK\r\n\r\n', '\n', '\r\n', 'a=1\r\nb=2\n\r\n', 'a=1\n\rb=2\n\n', 'a=\r\r\n\n', 'action=REJECT x\nextra=\n\n'];

  it('finds the end where parseAnswer does, however the answer is cut (at every byte, and a byte a piece)', () => {
    for (const text of answers) {
      const buf = Buffer.from(text);
      const want = parseAnswer(buf)!.used - 1;
      for (let i = 0; i <= buf.length; i++) {
        const end = new AnswerEnd();
        const a = end.scan(buf.subarray(0, i));
        const at = a >= 0 ? a : end.scan(buf.subarray(i));
        assert.equal(at, want, `${JSON.stringify(text)} cut at ${i}`);
      }
      const end = new AnswerEnd();
      let at = -1;
      for (let i = 0; i < buf.length && at < 0; i++) at = end.scan(buf.subarray(i, i + 1));
      assert.equal(at, want, `${JSON.stringify(text)} a byte a piece`);
    }
    const open = new AnswerEnd();
    assert.equal(open.scan(Buffer.from('action=DUNNO\n\r')), -1);
    assert.equal(open.scan(Buffer.from('x\n')), -1, 'CR then x is no empty line');
  });

  it('the client reads an answer trickled a byte per write, and fails an unending one at 16 KB (no join per byte)', async function () {
    this.timeout(20_000);
    let reply = 'action=REJECT slow\nextra=1\n\n';
    const server = net.createServer((socket) => {
      socket.setNoDelay(true);
      socket.on('error', () => undefined);
      socket.once('data', () => {
        let i = 0;
        const next = () => {
          if (i >= reply.length || socket.destroyed) return;
          socket.write(reply[i++]!, () => setImmediate(next));
        };
        next();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const limits = { connectTimeout: 2000, timeout: 15_000, maxIdle: 1000, maxTtl: 60_000, maxConnections: 1 };
    try {
      const client = new PolicyClient({ host: '127.0.0.1', port }, limits);
      const attrs = await client.request([['request', 'smtpd_access_policy']]);
      assert.equal(attrs.get('action'), 'REJECT slow');
      assert.equal(attrs.get('extra'), '1');
      await client.close();
      reply = 'action=' + 'x'.repeat(17_000);
      const broken = new PolicyClient({ host: '127.0.0.1', port }, limits);
      await assert.rejects(broken.request([['request', 'smtpd_access_policy']]), (err: unknown) => err instanceof PolicyRequestError && err.reason === 'protocol' && /longer than 16384 bytes/.test(err.message));
      await broken.close();
    } finally {
      server.close();
    }
  });
});

describe('policy actions (access(5) as Postfix reads them)', () => {
  const rcpt = { name: 'bob@example.com', class: 'Recipient address' };
  const reply = (action: string, ctx = rcpt) => {
    const a = parseAction(action, ctx, postfix);
    assert.equal(a.kind, 'verdict', action);
    const v = (a as { verdict: { kind: string; reply: { code: number; enhanced: string; text: string }; when?: string } }).verdict;
    return `${v.kind}${v.when ? `(${v.when})` : ''} ${v.reply.code} ${v.reply.enhanced} ${v.reply.text}`;
  };

  it('maps address statuses to the thing rejected, as smtpd_dsn_fix does', () => {
    assert.equal(reply('550 5.1.1 unknown', { name: 'a@b', class: 'Sender address' }), 'reject 550 5.1.0 <a@b>: Sender address rejected: unknown');
    assert.equal(reply('550 5.1.7 bad sender syntax', rcpt), 'reject 550 5.1.3 <bob@example.com>: Recipient address rejected: bad sender syntax');
    assert.equal(reply('REJECT 5.1.1 no', { name: 'host.test', class: 'Helo command' }), 'reject 554 5.0.0 <host.test>: Helo command rejected: no');
    assert.equal(reply('DEFER_IF_PERMIT 4.2.0 Greylisted'), 'tempfail(permit) 450 4.2.0 <bob@example.com>: Recipient address rejected: Greylisted');
    assert.equal(reply('DEFER_IF_REJECT'), 'tempfail(reject) 450 4.7.1 <bob@example.com>: Recipient address rejected: Service unavailable');
    assert.equal(reply('521 5.7.0 bye'), 'disconnect 521 5.7.0 <bob@example.com>: Recipient address rejected: bye');
  });

  it('reads OK, RELAY, DUNNO and all-numerical as no opinion; a bare 550 is all-numerical; 250 text is no action', () => {
    for (const a of ['OK', 'ok whatever', 'RELAY', 'DUNNO', '1733500000', '550']) assert.equal(parseAction(a, rcpt, postfix).kind, 'dunno', a);
    assert.equal(parseAction('250 fine', rcpt, postfix).kind, 'invalid');
    assert.equal(parseAction('PREPEND no colon here', rcpt, postfix).kind, 'invalid');
    assert.deepEqual(parseAction('PREPEND X-A:b ', rcpt, postfix), { kind: 'prepend', name: 'X-A', value: 'b ' });
    assert.deepEqual(parseAction('redirect other@example.com', rcpt, postfix), { kind: 'unsupported', word: 'REDIRECT', text: 'other@example.com' });
    assert.deepEqual(parseAction('HOLD look at this', rcpt, postfix), { kind: 'hold', text: 'look at this' });
    assert.deepEqual(parseAction('DISCARD', rcpt, postfix), { kind: 'discard', text: '' });
  });
});

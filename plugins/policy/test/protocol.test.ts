import assert from 'node:assert/strict';
import { encodeRequest, parseAction, parseAnswer, type ActionSettings } from '../src/index.js';

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

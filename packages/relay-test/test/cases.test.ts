import assert from 'node:assert/strict';
import { buildCases, judge, parseTarget, replyCell, type CaseResult, type RelayCase } from '../src/index.js';

const cases = buildCases({ domain: 'hosted.test', thirdParty: 'third.test', serverIp: '192.0.2.7' });
const byId = (id: string) => cases.find((c) => c.id === id)!;

describe('case list', () => {
  it('has at least 20 relay cases plus one control, with unique ids', () => {
    const relay = cases.filter((c) => c.kind === 'relay');
    assert.ok(relay.length >= 20, `only ${relay.length} relay cases`);
    assert.deepEqual(cases.filter((c) => c.kind === 'control').map((c) => c.rcptTo), ['postmaster@hosted.test']);
    assert.equal(new Set(cases.map((c) => c.id)).size, cases.length);
  });

  it('covers every trick of the spec, sent exactly as written', () => {
    const rcpts = cases.map((c) => c.rcptTo);
    for (const want of [
      'relaytest@third.test',
      'relaytest%third.test@hosted.test',
      'third.test!relaytest@hosted.test',
      'third.test!relaytest',
      '"relaytest@third.test"@hosted.test',
      '"relaytest%third.test"@hosted.test',
      '@hosted.test:relaytest@third.test',
      'relaytest@[192.0.2.7]',
      'relaytest@[127.0.0.1]',
      'relaytest@192.0.2.7',
      'relaytest@hosted.test.third.test',
      'relaytest@evilhosted.test',
      'relaytest@third.test.',
      'relaytest%third.test@hosted.test.',
      'relaytest@THIRD.Test',
      'postmaster@third.test',
      'abuse@third.test',
    ])
      assert.ok(rcpts.includes(want), `missing ${want}`);
    assert.equal(byId('from-hosted').mailFrom, 'postmaster@hosted.test');
    assert.equal(byId('null-sender').mailFrom, '');
    assert.equal(byId('helo-hosted').helo, 'hosted.test');
    assert.equal(byId('helo-ip').helo, '[192.0.2.7]');
    assert.equal(byId('helo-localhost').helo, 'localhost');
    // The plain cases come from outside: sender and EHLO in the third-party domain.
    assert.equal(byId('plain').mailFrom, 'tester@third.test');
    assert.equal(byId('plain').helo, 'client.third.test');
  });

  it('uses IPv6 literal syntax for an IPv6 server and does not repeat 127.0.0.1', () => {
    const v6 = buildCases({ domain: 'hosted.test', thirdParty: 'third.test', serverIp: '::1' });
    assert.equal(v6.find((c) => c.id === 'literal')!.rcptTo, 'relaytest@[IPv6:::1]');
    assert.equal(v6.find((c) => c.id === 'helo-ip')!.helo, '[IPv6:::1]');
    const lo = buildCases({ domain: 'hosted.test', thirdParty: 'third.test', serverIp: '127.0.0.1' });
    assert.equal(lo.filter((c) => c.rcptTo === 'relaytest@[127.0.0.1]').length, 1);
  });
});

describe('parseTarget', () => {
  it('reads host:port, [v6]:port and a bare host (port 25)', () => {
    assert.deepEqual(parseTarget('127.0.0.1:2525'), { host: '127.0.0.1', port: 2525 });
    assert.deepEqual(parseTarget('[::1]:26'), { host: '::1', port: 26 });
    assert.deepEqual(parseTarget('mx.example'), { host: 'mx.example', port: 25 });
    assert.throws(() => parseTarget('127.0.0.1:0'), /port out of range/);
    assert.throws(() => parseTarget('::1:25'), /expected HOST:PORT/);
  });
});

describe('judgement rules', () => {
  const relay: RelayCase = byId('percent');
  const control: RelayCase = byId('control');
  const reply = (code: number) => ({ code, lines: [`${code} x`] });
  it('RCPT: 2xx FAIL, 5xx PASS, 4xx WARN', () => {
    assert.equal(judge(relay, { stage: 'rcpt', reply: reply(250) }, false).verdict, 'FAIL');
    assert.equal(judge(relay, { stage: 'rcpt', reply: reply(550) }, false).verdict, 'PASS');
    assert.equal(judge(relay, { stage: 'rcpt', reply: reply(501) }, false).verdict, 'PASS');
    assert.equal(judge(relay, { stage: 'rcpt', reply: reply(451) }, false).verdict, 'WARN');
  });
  it('with DATA: accepted FAIL, refused WARN', () => {
    assert.equal(judge(relay, { stage: 'data', reply: reply(250) }, true).verdict, 'FAIL');
    assert.equal(judge(relay, { stage: 'data', reply: reply(554) }, true).verdict, 'WARN');
  });
  it('refused before RCPT: WARN (the recipient was never tried); no answer: ERROR', () => {
    for (const stage of ['greeting', 'ehlo', 'mail'] as const) assert.equal(judge(relay, { stage, reply: reply(554) }, false).verdict, 'WARN');
    assert.equal(judge(relay, { stage: 'rcpt', error: Object.assign(new Error('no reply'), { kind: 'timeout' as const }) }, false).verdict, 'ERROR');
  });
  it('control: accepted PASS, refused WARN', () => {
    assert.equal(judge(control, { stage: 'rcpt', reply: reply(250) }, false).verdict, 'PASS');
    assert.equal(judge(control, { stage: 'rcpt', reply: reply(550) }, false).verdict, 'WARN');
    assert.equal(judge(control, { stage: 'mail', reply: reply(550) }, false).verdict, 'WARN');
  });
  it('shows the stage in the reply column when it was not RCPT', () => {
    const base = { n: 1, id: 'x', title: 'x', kind: 'relay', helo: 'h', mailFrom: '', rcptTo: 'a@b', code: 553, verdict: 'WARN', note: '' } as const;
    assert.equal(replyCell({ ...base, stage: 'mail', reply: '553 5.1.8 bad  sender ' } as CaseResult), 'MAIL: 553 5.1.8 bad sender');
    assert.equal(replyCell({ ...base, stage: 'rcpt', reply: '550 no' } as CaseResult), '550 no');
  });
});

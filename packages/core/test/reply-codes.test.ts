import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { canRewriteReplies, isMapped, librarySendHash, ourReply, PINNED_SEND_SHA256 } from '../src/adapter/smtp-server-replies.js';
import { canGuardPipelining } from '../src/session/pipelining-guard.js';
import { libraryHashes, PINS } from '../src/adapter/smtp-server.js';
import { installedSmtpServerVersion, PINNED_SMTP_SERVER_VERSION } from '../src/adapter/smtp-server.js';

const require = createRequire(import.meta.url);
const libDir = path.join(path.dirname(require.resolve('smtp-server/package.json')), 'dist', 'esm');

/** Every reply text smtp-server writes from a literal: `send(501, 'Error: ...')`, `this.name + '...'`, validation objects. */
function libraryReplies(): Array<{ code: number; text: string; where: string }> {
  const out: Array<{ code: number; text: string; where: string }> = [];
  for (const file of ['smtp-connection.js', 'sasl.js', 'smtp-server.js']) {
    const src = readFileSync(path.join(libDir, file), 'utf8');
    for (const m of src.matchAll(/send\((\d{3}),\s*(this\.name \+ )?'([^']*)'(\s*\+\s*[^,)]+)?/g)) {
      const name = m[2] ? 'relay.test' : '';
      const line = src.slice(m.index!, src.indexOf('\n', m.index!));
      // A dynamic part (a name, a size): stand-in value, then any literal tail on the same line.
      const dynamic = m[4] ? (/size/.test(m[4]) ? '26214400' : 'X') + (/\+ \w[\w.]* \+ '([^']*)'/.exec(line)?.[1] ?? '') : '';
      let text = (name ? `${name}` : '') + m[3] + dynamic;
      // `'Error: syntax: ' + (lmtp ? 'LHLO' : 'EHLO') + ' hostname'` and friends: both readings.
      if (/\(this\._server\.options\.lmtp \? 'LHLO' : '(HELO\/EHLO|EHLO)'\)/.test(src.slice(m.index!, m.index! + 200)) && m[4]) {
        const tail = /\) \+ '([^']*)'/.exec(src.slice(m.index!, m.index! + 200))?.[1] ?? '';
        const alt = /'LHLO' : '([^']+)'/.exec(src.slice(m.index!, m.index! + 200))![1]!;
        text = m[3] + alt + tail;
      }
      out.push({ code: Number(m[1]), text, where: `${file}:${src.slice(0, m.index).split('\n').length}` });
    }
    for (const m of src.matchAll(/code: (\d{3}),\s*message: '([^']*)'( \+ [^,\n]+)?/g)) out.push({ code: Number(m[1]), text: m[2]! + (m[3] ? '26214400' : ''), where: `${file} (validation)` });
  }
  return out;
}

describe('enhanced status codes on smtp-server\'s own replies (pinned to the library)', () => {
  it('runs against the smtp-server version the rewriting was written for', () => {
    assert.equal(installedSmtpServerVersion(), PINNED_SMTP_SERVER_VERSION);
    assert.equal(librarySendHash(), PINNED_SEND_SHA256);
    assert.equal(canRewriteReplies(), true);
  });

  it('maps every reply text the library writes to our wording (fails when the library adds or changes one)', () => {
    const replies = libraryReplies();
    assert.ok(replies.length >= 80, `the scan found only ${replies.length} replies: did the library layout change?`);
    const unmapped = replies.filter((r) => !isMapped(r.code, r.text, 'relay.test', r.text === 'Accepted' ? 'RCPT_TO_OK' : undefined));
    assert.deepEqual(unmapped.map((r) => `${r.where}: ${r.code} ${r.text}`), []);
  });

  it('gives each rewritten reply exactly one enhanced code whose class matches the reply code', () => {
    for (const r of libraryReplies()) {
      const mapped = ourReply(r.code, r.text, undefined, 'relay.test');
      if (!mapped) continue;
      assert.match(mapped.enhanced, /^[245]\.\d{1,3}\.\d{1,3}$/, `${r.where}`);
      assert.equal(mapped.enhanced[0], String(mapped.code)[0], `${r.where}: ${mapped.code} ${mapped.enhanced}`);
      assert.doesNotMatch(mapped.text, /^[245]\.\d/, `${r.where}: doubled code`);
      assert.doesNotMatch(mapped.text, /^Error:/, `${r.where}: library wording kept`);
      if (r.code === 421) assert.equal(mapped.code, 421, `${r.where}: a 421 must stay 421 (the library closes on it)`);
    }
  });

  it('leaves replies that already carry a code, the greeting, EHLO/HELO and 3xx alone', () => {
    assert.equal(ourReply(550, '5.7.1 Unable to relay', undefined, 'relay.test'), undefined);
    assert.equal(ourReply(220, 'relay.test ESMTP Portcullis', false, 'relay.test'), undefined);
    assert.equal(ourReply(250, ['relay.test Nice to meet you', 'PIPELINING'], false, 'relay.test'), undefined);
    assert.equal(ourReply(250, 'relay.test Nice to meet you, [127.0.0.1]', false, 'relay.test'), undefined);
    assert.equal(ourReply(354, 'End data with <CR><LF>.<CR><LF>', undefined, 'relay.test'), undefined);
    assert.equal(ourReply(334, 'VXNlcm5hbWU6', undefined, 'relay.test'), undefined);
    assert.deepEqual(ourReply(250, 'Accepted', 'MAIL_FROM_OK', 'relay.test'), { code: 250, enhanced: '2.1.0', text: 'Sender OK' });
    assert.deepEqual(ourReply(250, 'Accepted', 'RCPT_TO_OK', 'relay.test'), { code: 250, enhanced: '2.1.5', text: 'Recipient OK' });
  });

  it('still gives an unknown library text a class code, without its "Error:" prefix', () => {
    assert.deepEqual(ourReply(554, 'Error: something new', undefined, 'relay.test'), { code: 554, enhanced: '5.0.0', text: 'something new' });
  });
});

describe('improper-pipelining guard (pinned to the library)', () => {
  it('wraps exactly the smtp-server methods it was written against', () => {
    // The wrappers live in adapter/smtp-server.ts (installConnectionTaps); their pins in its PINS table.
    const h = libraryHashes();
    assert.deepEqual([h['SMTPConnection#_onCommand'], h['SMTPConnection#_createParser']], [PINS['SMTPConnection#_onCommand'], PINS['SMTPConnection#_createParser']]);
    assert.equal(canGuardPipelining(), true);
  });
});
